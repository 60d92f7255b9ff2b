package kube_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/kube"
	"github.com/spectroauth/spectroauth/host/kube/internal/kubetest"
	"github.com/spectroauth/spectroauth/host/kube/kubecli"
	"github.com/spectroauth/spectroauth/sdk"
)

// backstageSignIn signs the test browser in as Backstage's app does (popup
// flow, then /refresh from the app's origin) and returns the Backstage user
// token /refresh hands the app.
func backstageSignIn(t *testing.T, d *kubetest.Daemon) string {
	t.Helper()
	const app = "http://localhost:3000"
	q := url.Values{"scope": {"openid profile email"}, "origin": {app}, "flow": {"popup"}, "env": {"development"}}
	res, err := d.Browser.Get(d.URL + "/api/auth/spectrocloud/start?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, d.URL+"/api/auth/spectrocloud/refresh?env=development", nil)
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	req.Header.Set("Origin", app)
	res, err = d.Browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		BackstageIdentity struct {
			Token string `json:"token"`
		} `json:"backstageIdentity"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != http.StatusOK || body.BackstageIdentity.Token == "" {
		t.Fatalf("/refresh: %d %v", res.StatusCode, err)
	}
	return body.BackstageIdentity.Token
}

func brokerCall(t *testing.T, d *kubetest.Daemon, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, d.URL+kube.RoutePrefix+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &m)
	return res.StatusCode, m
}

type handsIDTokenStrategy struct{}

func (handsIDTokenStrategy) Credential(_ context.Context, req sdk.CredentialRequest) (sdk.Credential, error) {
	return sdk.Credential{Token: req.Session.IDToken, ExpiresAt: req.Session.IDTokenExpiresAt}, nil
}

// The user's Backstage token, as /refresh hands it to the app (and the app
// to every backend plugin), buys no cluster credential; kubectl's own
// command-line token does.
func TestBrokerRefusesBackstageUserToken(t *testing.T) {
	d := kubetest.Start(t, kubetest.Options{Clusters: func(d *kubetest.Daemon) []kube.Cluster {
		return []kube.Cluster{{
			Cluster:  sdk.Cluster{Name: "prod", Server: "https://prod.k8s.example.com:6443", CAData: d.OPCAPEM},
			Strategy: &kube.StrategyBinding{Plugin: "test", Strategy: "oidc", Impl: handsIDTokenStrategy{}},
		}}
	}})
	token := backstageSignIn(t, d)

	status, body := brokerCall(t, d, http.MethodPost, "credential", token, `{"cluster":"prod"}`)
	e, _ := body["error"].(map[string]any)
	if status != http.StatusUnauthorized || e["message"] != kube.WrongTokenMessage {
		t.Fatalf("credential with the Backstage user token: %d %v", status, body)
	}
	if !strings.Contains(d.Audit.String(), `"reason":"`+kube.ReasonWrongToken+`"`) {
		t.Errorf("the refusal was not audited as %s: %s", kube.ReasonWrongToken, d.Audit.String())
	}
	// The cluster list reveals no secret: the app may read it.
	if status, body := brokerCall(t, d, http.MethodGet, "clusters", token, ""); status != http.StatusOK {
		t.Errorf("clusters with the Backstage user token: %d %v", status, body)
	}

	var stderr bytes.Buffer
	c := &kubecli.Client{Server: d.URL, CacheDir: t.TempDir(), Interactive: true, OpenBrowser: d.OpenBrowser, Stderr: &stderr, LoginTimeout: 20 * time.Second}
	cred, err := c.Credential(context.Background(), "prod")
	if err != nil || cred.Token == "" {
		t.Fatalf("kubectl's credential: %v, %v\n%s", cred, err, stderr.String())
	}
}

// Backstage's Kubernetes plugin gets a cluster credential in the user's
// browser, as /refresh is called: allowed origin, X-Requested-With, the
// HttpOnly session cookie. Another origin, a request without the header or
// without the cookie gets nothing.
func TestBrokerServesBackstageAppWithSessionCookie(t *testing.T) {
	d := kubetest.Start(t, kubetest.Options{Clusters: func(d *kubetest.Daemon) []kube.Cluster {
		return []kube.Cluster{{
			Cluster:  sdk.Cluster{Name: "prod", Server: "https://prod.k8s.example.com:6443", CAData: d.OPCAPEM},
			Strategy: &kube.StrategyBinding{Plugin: "test", Strategy: "oidc", Impl: handsIDTokenStrategy{}},
		}}
	}})
	_ = backstageSignIn(t, d)
	const app = "http://localhost:3000"
	call := func(c *http.Client, method, origin string, xrw bool) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, d.URL+kube.RoutePrefix+"credential?env=development", strings.NewReader(`{"cluster":"prod"}`))
		req.Header.Set("Content-Type", "application/json")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if xrw {
			req.Header.Set("X-Requested-With", "XMLHttpRequest")
		}
		if method == http.MethodOptions {
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "content-type,x-requested-with")
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(res.Body).Decode(&m)
		return res, m
	}
	res, _ := call(d.Browser, http.MethodOptions, app, false)
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != app || res.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("preflight from the app: %d %v", res.StatusCode, res.Header)
	}
	res, body := call(d.Browser, http.MethodPost, app, true)
	if res.StatusCode != http.StatusOK || body["token"] == "" || res.Header.Get("Access-Control-Allow-Origin") != app {
		t.Fatalf("credential from the app with the cookie: %d %v", res.StatusCode, body)
	}
	for _, tc := range []struct {
		name   string
		c      *http.Client
		origin string
		xrw    bool
	}{
		{"another origin", d.Browser, "https://evil.example.com", true},
		{"no origin", d.Browser, "", true},
		{"no X-Requested-With", d.Browser, app, false},
		{"no cookie", http.DefaultClient, app, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := call(tc.c, http.MethodPost, tc.origin, tc.xrw)
			if res.StatusCode != http.StatusUnauthorized || body["token"] != nil {
				t.Errorf("%d %v", res.StatusCode, body)
			}
			if tc.origin != app && res.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("CORS headers for %q: %v", tc.origin, res.Header)
			}
		})
	}
	if res, _ := call(d.Browser, http.MethodOptions, "https://evil.example.com", false); res.StatusCode != http.StatusForbidden {
		t.Errorf("preflight from another origin: %d", res.StatusCode)
	}
}
