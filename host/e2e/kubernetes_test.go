package e2e

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestKubernetesPlugin proves the path examples/backstage gives Backstage's
// own Kubernetes plugin to a cluster of any strategy, with the real
// packages: in headless Chromium, the real KubernetesAuthProviders of
// @backstage/plugin-kubernetes-react, given the example's
// kubernetesAuthProvidersApiFactory, fetch the signed-in user's credential
// for a token-exchange cluster from the daemon with the session cookie; the
// real KubernetesBackendClient sends it through the real
// @backstage/plugin-kubernetes-backend (in node/backend.cjs) to a test API
// server that authenticates with kube-apiserver's own authenticator, which
// sees the user. The daemon's token-exchange plugin gets that credential
// from a company STS. Refused: the Backstage user token, a forged or an
// expired credential (by the cluster), another origin with the same cookie,
// the credential after sign-out, and a credential request with a forged
// session cookie (by the daemon).
func TestKubernetesPlugin(t *testing.T) {
	p := locate(t)
	node := needNode(t, p)
	chromium := needChromium(t)
	if !nativeSQLiteBuilt(p) {
		skipf(t, "better-sqlite3's native module is not built: run `npm run build-native` in host/e2e/testdata/node")
	}
	art := artifactDir(t, p)
	dist := bundleApp(t, p, node, art)

	// The cluster trusts the STS; the daemon exchanges the user's ID token
	// there (the STS trusts the test provider's ID tokens for our client).
	sts := newSTS(t)
	api := newCluster(t, clusterAuthenticator(t, sts.srv.URL, sts.caPEM()))
	plugin, digest := buildPlugin(t, p, "./plugins/token-exchange")
	allowed, disallowed := newServer(t, nil), newServer(t, nil)
	e := startEnv(t, p, art, envOptions{appBaseURL: allowed.URL, extraConfig: fmt.Sprintf(`plugins:
  sts:
    command: %q
    sha256: %q
    config:
      tokenEndpoint: %q
      clientId: %q
      clientSecret: %q
      caData: %q
kubernetes:
  clusters:
    - name: staging
      url: %q
      caData: %q
      strategy:
        plugin: sts
        strategy: exchange
        options:
          audience: %q
`, plugin, digest, sts.srv.URL+"/token", stsClientID, stsClientSecret, sts.caPEM(),
		api.srv.URL, base64.StdEncoding.EncodeToString(api.caPEM()), stsAudience)})
	sts.trust(t, e.issuer, clientID)

	be := startBackend(t, p, art, node, e.daemonURL, kubernetesBackendConfig(t, p, e, allowed.URL, api))
	// The kubernetes backend serves only entities of the catalog: wait for
	// the test's component to be there.
	session, _ := e.signIn(t, allowed.URL)
	waitEntity(t, be, session.BackstageIdentity.Token, "component/default/e2e")
	for _, s := range []*testServer{allowed, disallowed} {
		cfgs := e.appConfigs(t, s.URL)
		for _, c := range cfgs {
			c["backend"] = map[string]any{"baseUrl": be.url}
		}
		s.setHandler(appHandler(t, dist, cfgs))
	}

	// What the cluster must refuse: the STS's claims signed by another key
	// under the STS's key id, and signed by the STS but expired.
	now := time.Now()
	claims := func(exp time.Time) map[string]any {
		return map[string]any{"iss": sts.srv.URL, "sub": alice.ID, "aud": stsAudience, "iat": exp.Add(-10 * time.Minute).Unix(), "exp": exp.Unix()}
	}
	forged, err := signJWT(jose.RS256, rsaKey(t), sts.kid, "JWT", claims(now.Add(10*time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	expired, err := sts.sign(claims(now.Add(-time.Hour)))
	if err != nil {
		t.Fatal(err)
	}

	runBrowser(t, p, node, art, map[string]any{
		"groups":            []string{"kubernetes"},
		"chromium":          chromium,
		"artifacts":         art,
		"daemon":            e.daemonURL,
		"totalTimeoutMs":    150_000,
		"scenarioTimeoutMs": 30_000,
		"stepTimeoutMs":     15_000,
		"apps":              map[string]string{"allowed": allowed.URL, "disallowed": disallowed.URL},
		"expect":            map[string]any{"userEntityRef": aliceRef, "ownershipEntityRefs": []string{aliceRef}},
		"kubernetes": map[string]any{
			"cluster":           "staging",
			"oidcTokenProvider": "spectroauth-staging",
			"authProvider":      "oidc.spectroauth-staging",
			"issuer":            sts.srv.URL,
			"audience":          stsAudience,
			"subject":           alice.ID,
			"backend":           be.url,
			"forged":            forged,
			"expired":           expired,
		},
	})

	t.Run("the cluster saw the user, and refused the rest", func(t *testing.T) {
		if sts.count() == 0 {
			t.Error("the STS exchanged no token")
		}
		var users, refused []string
		events := false
		for _, r := range api.requests() {
			if r.Authenticated {
				users = append(users, r.User)
				events = events || r.Path == "/api/v1/namespaces/default/events"
			} else {
				refused = append(refused, r.Error)
			}
		}
		if !events {
			t.Error("KubernetesProxyClient's events request did not reach the cluster authenticated")
		}
		// The proxied SelfSubjectReview and events, and the plugin's fan-out.
		if len(users) < 3 {
			t.Errorf("%d requests reached the cluster authenticated, want the review and the plugin's reads: %+v", len(users), api.requests())
		}
		for _, u := range users {
			if u != alice.ID {
				t.Errorf("the cluster authenticated %q, want only %q", u, alice.ID)
			}
		}
		// The Backstage token (another issuer), the forged (signature) and
		// the expired credential, each refused for its own reason; the
		// request without a credential never left the kubernetes backend.
		want := []string{"not a token of the cluster's issuer", "signature", "expired"}
		if len(refused) != len(want) {
			t.Errorf("the cluster refused %d requests, want %d: %q", len(refused), len(want), refused)
		}
		for _, w := range want {
			if !slices.ContainsFunc(refused, func(r string) bool { return strings.Contains(r, w) }) {
				t.Errorf("no refusal for %q among %q", w, refused)
			}
		}
		t.Logf("cluster: authenticated %d, refused %v", len(users), refused)
	})

	t.Run("refused: a credential request with a forged session cookie", func(t *testing.T) {
		_, jar := e.signIn(t, allowed.URL)
		route := e.daemonURL + "/api/auth/" + provider + "/kubernetes/credential?env=" + envName
		u, _ := url.Parse(route)
		cookies := jar.Cookies(u)
		if len(cookies) == 0 {
			t.Fatal("no session cookie after sign-in")
		}
		post := func(cookieHeader string) (int, string) {
			req, _ := http.NewRequest(http.MethodPost, route, strings.NewReader(`{"cluster":"staging"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Origin", allowed.URL)
			req.Header.Set("X-Requested-With", "XMLHttpRequest")
			req.Header.Set("Cookie", cookieHeader)
			res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return res.StatusCode, string(b)
		}
		header := func(mod func(string) string) string {
			parts := make([]string, len(cookies))
			for i, c := range cookies {
				parts[i] = c.Name + "=" + mod(c.Value)
			}
			return strings.Join(parts, "; ")
		}
		if status, body := post(header(func(v string) string { return v })); status != http.StatusOK || !strings.Contains(body, `"token"`) {
			t.Fatalf("control, the real cookie: %d %s", status, body)
		}
		flip := func(v string) string {
			b := []byte(v)
			i := len(b) / 2
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			return string(b)
		}
		if status, body := post(header(flip)); status != http.StatusUnauthorized || strings.Contains(body, `"token"`) {
			t.Errorf("forged cookie: %d %s, want 401", status, body)
		}
	})
}

// e2eComponent is the catalog entity whose Kubernetes objects the plugin
// reads (browser.mjs sends the same).
const e2eComponent = `apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: e2e
  namespace: default
  annotations:
    backstage.io/kubernetes-id: e2e
spec:
  type: service
  owner: user:default/alice
  lifecycle: production
`

// waitEntity polls the catalog until it serves the entity (kind/namespace/name).
func waitEntity(t *testing.T, be *backend, token, ref string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, body := be.get(t, "/api/catalog/entities/by-name/"+ref, bearer(token))
		if status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the catalog did not serve %s within 30s: %d %s\n%s", ref, status, body, be.proc.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kubernetesBackendConfig writes the Backstage backend's configuration for
// this test: the example's `staging` cluster (authProvider oidc,
// oidcTokenProvider spectroauth-staging) pointed at the test API server,
// the test's component in the catalog, and CORS for the app.
func kubernetesBackendConfig(t *testing.T, p paths, e *env, app string, api *cluster) string {
	t.Helper()
	k8s, _ := exampleAppConfig(t, p, e.daemonURL)["kubernetes"].(map[string]any)
	var staging map[string]any
	for _, m := range k8s["clusterLocatorMethods"].([]any) {
		clusters, _ := m.(map[string]any)["clusters"].([]any)
		for _, c := range clusters {
			if c := c.(map[string]any); c["name"] == "staging" {
				staging = c
			}
		}
	}
	if staging == nil {
		t.Fatal("examples/backstage/app-config.yaml has no kubernetes cluster named staging")
	}
	staging["url"] = api.srv.URL
	staging["caData"] = base64.StdEncoding.EncodeToString(api.caPEM())
	k8s["clusterLocatorMethods"] = []any{map[string]any{"type": "config", "clusters": []any{staging}}}
	entity := filepath.Join(t.TempDir(), "e2e-component.yaml")
	if err := os.WriteFile(entity, []byte(e2eComponent), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"kubernetes": k8s,
		"catalog":    map[string]any{"locations": []any{map[string]any{"type": "file", "target": entity}}},
		"backend": map[string]any{"cors": map[string]any{
			"origin":      app,
			"methods":     []string{"GET", "HEAD", "PATCH", "POST", "PUT", "DELETE"},
			"credentials": true,
		}},
	}
	path := filepath.Join(t.TempDir(), "app-config.kubernetes.json")
	writeJSON(t, path, cfg)
	return path
}
