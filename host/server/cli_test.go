package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/server"
)

// loopback is the command-line program's redirect listener.
type loopback struct {
	srv  *httptest.Server
	mu   sync.Mutex
	last url.Values
}

func newLoopback(t *testing.T) *loopback {
	l := &loopback{}
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.last = r.URL.Query()
		l.mu.Unlock()
		_, _ = io.WriteString(w, "you may close this window")
	}))
	t.Cleanup(l.srv.Close)
	return l
}

func (l *loopback) redirectURI() string { return l.srv.URL + "/callback" }

func (l *loopback) query() url.Values {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

type pkce struct{ verifier, challenge string }

func newPKCE(seed string) pkce {
	v := strings.Repeat(seed, 64)[:64]
	sum := sha256.Sum256([]byte(v))
	return pkce{verifier: v, challenge: base64.RawURLEncoding.EncodeToString(sum[:])}
}

func cliStartURL(f *fixture, redirect, state string, p pkce) string {
	return f.url("/api/auth/spectrocloud/cli/start?" + url.Values{
		"redirect_uri": {redirect}, "state": {state}, "code_challenge": {p.challenge}, "code_challenge_method": {"S256"},
	}.Encode())
}

// cliSignIn runs the browser side and returns what reached the loopback.
func cliSignIn(t *testing.T, f *fixture, b *browser, l *loopback, state string, p pkce) url.Values {
	t.Helper()
	res := b.get(cliStartURL(f, l.redirectURI(), state, p))
	if res.StatusCode != http.StatusOK || res.Request.URL.Host != l.srv.Listener.Addr().String() {
		body, _ := io.ReadAll(res.Body)
		t.Fatalf("the browser ended at %s with %d, not at the loopback: %s", res.Request.URL, res.StatusCode, body)
	}
	return l.query()
}

func tokenRequest(t *testing.T, f *fixture, form url.Values) (int, map[string]any) {
	t.Helper()
	res, err := http.PostForm(f.url("/api/auth/spectrocloud/cli/token"), form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("token response Cache-Control = %q", cc)
	}
	var m map[string]any
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, m
}

func TestCLISignIn(t *testing.T) {
	f := newFixture(t, fixtureOptions{refreshTokens: true})
	b := newBrowser(t)
	l := newLoopback(t)
	p := newPKCE("a")
	q := cliSignIn(t, f, b, l, "cli-state-1", p)
	if q.Get("state") != "cli-state-1" || q.Get("code") == "" || q.Get("error") != "" {
		t.Fatalf("loopback got %v", q)
	}
	u, _ := url.Parse(f.srv.URL)
	for _, c := range b.client.Jar.Cookies(&url.URL{Scheme: "http", Host: u.Host, Path: "/api/auth/spectrocloud/refresh"}) {
		if strings.HasPrefix(c.Name, "spectrocloud-refresh-token") {
			t.Errorf("a command-line sign-in signed the browser in too (%s)", c.Name)
		}
	}

	redeem := url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "code_verifier": {p.verifier}, "redirect_uri": {l.redirectURI()}}
	for name, form := range map[string]url.Values{
		"wrong verifier":     {"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "code_verifier": {newPKCE("b").verifier}, "redirect_uri": {l.redirectURI()}},
		"wrong redirect_uri": {"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "code_verifier": {p.verifier}, "redirect_uri": {l.srv.URL + "/other"}},
		"forged code":        {"grant_type": {"authorization_code"}, "code": {q.Get("code")[:20] + "AAAA" + q.Get("code")[24:]}, "code_verifier": {p.verifier}, "redirect_uri": {l.redirectURI()}},
	} {
		if status, body := tokenRequest(t, f, form); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
	status, tok := tokenRequest(t, f, redeem)
	if status != http.StatusOK {
		t.Fatalf("redeeming the code: %d %v", status, tok)
	}
	access, handle := tok["access_token"].(string), tok["refresh_token"].(string)
	if tok["token_type"] != "Bearer" || tok["user"] != "user:default/alice" || tok["env"] != "development" || tok["expires_in"].(float64) < 3000 || handle == "" {
		t.Errorf("token response = %v", tok)
	}
	if status, body := tokenRequest(t, f, redeem); status != http.StatusBadRequest || !strings.Contains(body["error_description"].(string), "already used") {
		t.Errorf("a code redeemed twice: %d %v", status, body)
	}

	ctx := context.Background()
	us, err := f.server.UserSession(ctx, access)
	if err != nil || us.Session.UserEntityRef != "user:default/alice" || us.Tokens.IDToken == "" {
		t.Fatalf("UserSession(access_token) = %v, %v", us, err)
	}

	// The handle renews the Backstage token, as the refresh cookie does.
	f.advance(40 * time.Minute)
	status, again := tokenRequest(t, f, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {handle}})
	if status != http.StatusOK || again["access_token"] == access || again["refresh_token"] != nil {
		t.Errorf("refresh grant: %d %v", status, again)
	}
	if _, err := f.server.UserSession(ctx, again["access_token"].(string)); err != nil {
		t.Errorf("UserSession(refreshed token): %v", err)
	}
	for name, form := range map[string]url.Values{
		"garbage handle": {"grant_type": {"refresh_token"}, "refresh_token": {"nope"}},
		"unknown handle": {"grant_type": {"refresh_token"}, "refresh_token": {strings.Repeat("A", 43)}},
	} {
		if status, body := tokenRequest(t, f, form); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
	if status, body := tokenRequest(t, f, url.Values{"grant_type": {"password"}}); status != http.StatusBadRequest || body["error"] != "unsupported_grant_type" {
		t.Errorf("password grant: %d %v", status, body)
	}

	// Sign out from the command line ends the session everywhere.
	res, err := http.PostForm(f.url("/api/auth/spectrocloud/cli/logout"), url.Values{"refresh_token": {handle}})
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("logout: %v %v", res, err)
	}
	res.Body.Close()
	if status, body := tokenRequest(t, f, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {handle}}); status != http.StatusBadRequest || !strings.Contains(body["error_description"].(string), "sign in again") {
		t.Errorf("refresh after logout: %d %v", status, body)
	}
	if _, err := f.server.UserSession(ctx, access); !errors.Is(err, server.ErrSessionEnded) {
		t.Errorf("UserSession after logout = %v, want ErrSessionEnded", err)
	}
}

func TestCLICodeExpires(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	l := newLoopback(t)
	p := newPKCE("c")
	q := cliSignIn(t, f, newBrowser(t), l, "s", p)
	f.advance(server.CLICodeLifetime + time.Second)
	status, body := tokenRequest(t, f, url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "code_verifier": {p.verifier}, "redirect_uri": {l.redirectURI()}})
	if status != http.StatusBadRequest || !strings.Contains(body["error_description"].(string), "expired") {
		t.Errorf("an expired code: %d %v", status, body)
	}
}

func TestCLISignInRefusals(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	l := newLoopback(t)
	p := newPKCE("d")
	for name, tc := range map[string]struct {
		redirect, state string
		p               pkce
		method          string
		want            string
	}{
		"https redirect":    {strings.Replace(l.redirectURI(), "http:", "https:", 1), "s", p, "S256", "redirect_uri must be"},
		"localhost":         {strings.Replace(l.redirectURI(), "127.0.0.1", "localhost", 1), "s", p, "S256", "loopback IP"},
		"remote host":       {"http://198.51.100.7:8080/callback", "s", p, "S256", "loopback IP"},
		"no port":           {"http://127.0.0.1/callback", "s", p, "S256", "port"},
		"no state":          {l.redirectURI(), "", p, "S256", "state is required"},
		"plain PKCE":        {l.redirectURI(), "s", p, "plain", "PKCE is required"},
		"no challenge":      {l.redirectURI(), "s", pkce{}, "S256", "PKCE is required"},
		"huge state":        {l.redirectURI(), strings.Repeat("s", 300), p, "S256", "state is required"},
		"fragment redirect": {l.redirectURI() + "#x", "s", p, "S256", "redirect_uri must be"},
	} {
		t.Run(name, func(t *testing.T) {
			u := f.url("/api/auth/spectrocloud/cli/start?" + url.Values{
				"redirect_uri": {tc.redirect}, "state": {tc.state}, "code_challenge": {tc.p.challenge}, "code_challenge_method": {tc.method},
			}.Encode())
			res := newBrowser(t).do(http.MethodGet, u, true)
			body := decodeJSON(t, res)
			if res.StatusCode != http.StatusBadRequest || !strings.Contains(body["error"].(map[string]any)["message"].(string), tc.want) {
				t.Errorf("%d %v, want 400 saying %q", res.StatusCode, body, tc.want)
			}
		})
	}
	if res := newBrowser(t).do(http.MethodGet, f.url("/api/auth/spectrocloud/cli/start?env=staging"), true); res.StatusCode != http.StatusNotFound {
		t.Errorf("unknown env: %d", res.StatusCode)
	}

	t.Run("callback in another browser", func(t *testing.T) {
		start := newBrowser(t)
		res := start.do(http.MethodGet, cliStartURL(f, l.redirectURI(), "s", p), true)
		authorize := res.Header.Get("Location")
		// The provider's side runs in the first browser; the callback lands
		// in a second one that never started a sign-in.
		res = start.do(http.MethodGet, authorize, true)
		callback := resolve(res)
		for res.StatusCode/100 == 3 && !strings.HasSuffix(strings.SplitN(callback, "?", 2)[0], "/handler/frame") {
			res = start.do(http.MethodGet, callback, true)
			callback = resolve(res)
		}
		res = newBrowser(t).do(http.MethodGet, callback, true)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "not started in this browser") {
			t.Errorf("callback without the nonce cookie: %d %s", res.StatusCode, body)
		}
	})

	t.Run("user without identity", func(t *testing.T) {
		if err := f.op.SetSelectedUser("bob"); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = f.op.SetSelectedUser("alice") }()
		q := cliSignIn(t, f, newBrowser(t), l, "s2", p)
		if q.Get("code") != "" || q.Get("error") != "access_denied" || q.Get("state") != "s2" ||
			!strings.Contains(q.Get("error_description"), "unable to resolve user identity") {
			t.Errorf("loopback got %v", q)
		}
	})
}

// resolve returns a redirect's absolute target.
func resolve(res *http.Response) string {
	loc, _ := res.Request.URL.Parse(res.Header.Get("Location"))
	return loc.String()
}
