package server_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestPopupSignInRefreshLogout(t *testing.T) {
	f := newFixture(t, fixtureOptions{RefreshTokens: true})
	b := newBrowser(t)

	res := signIn(t, f, b)
	profile := res["profile"].(map[string]any)
	if profile["email"] != "alice@example.com" || profile["displayName"] != "Alice Liddell" {
		t.Errorf("profile = %v", profile)
	}
	pi := res["providerInfo"].(map[string]any)
	if pi["idToken"] == "" || pi["accessToken"] == "" {
		t.Errorf("providerInfo lacks tokens: %v", pi)
	}
	if !strings.Contains(pi["scope"].(string), "openid") {
		t.Errorf("scope = %v", pi["scope"])
	}
	idClaims := jwtClaims(t, pi["idToken"].(string))
	if idClaims["email"] != "alice@example.com" {
		t.Errorf("ID token email = %v", idClaims["email"])
	}
	bi := res["backstageIdentity"].(map[string]any)
	if exp := bi["expiresInSeconds"].(float64); exp < 3500 || exp > 3600 {
		t.Errorf("backstageIdentity.expiresInSeconds = %v", exp)
	}
	ident := bi["identity"].(map[string]any)
	if ident["type"] != "user" || ident["userEntityRef"] != "user:default/alice" {
		t.Errorf("identity = %v", ident)
	}
	claims := jwtClaims(t, bi["token"].(string))
	if claims["sub"] != "user:default/alice" || claims["aud"] != "backstage" || claims["iss"] != f.URL("/api/auth") {
		t.Errorf("backstage token claims = %v", claims)
	}
	if _, ok := claims["ent"]; ok {
		t.Errorf("ent is in the token by default: %v", claims)
	}

	// The refresh cookie is an opaque handle, HttpOnly, on the provider path.
	u, _ := url.Parse(f.URL("/api/auth/spectrocloud/refresh"))
	var handle string
	for _, c := range b.Client.Jar.Cookies(u) {
		if c.Name == "spectrocloud-refresh-token" {
			handle = c.Value
		}
	}
	if handle == "" || strings.Count(handle, ".") == 2 {
		t.Fatalf("refresh cookie holds %q, want an opaque handle", handle)
	}

	// Refresh serves the same session without calling the provider.
	f.OP.ResetCounters()
	r := refresh(b, f)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d", r.StatusCode)
	}
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != appOrigin {
		t.Errorf("refresh ACAO = %q", got)
	}
	rr := decodeJSON(t, r)
	if rr["backstageIdentity"].(map[string]any)["token"] != bi["token"] {
		t.Errorf("refresh re-issued a fresh Backstage token without need")
	}
	if c := f.OP.Counters(); c.Token != 0 || c.JWKS != 0 || c.Userinfo != 0 {
		t.Errorf("refresh called the provider: %+v", c)
	}

	// Ownership is served from /v1/userinfo.
	req, _ := http.NewRequest(http.MethodGet, f.URL("/api/auth/v1/userinfo"), nil)
	req.Header.Set("Authorization", "Bearer "+bi["token"].(string))
	ui, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	info := decodeJSON(t, ui)
	if c := info["claims"].(map[string]any); c["sub"] != "user:default/alice" || len(c["ent"].([]any)) != 1 {
		t.Errorf("userinfo = %v", info)
	}

	// Logout ends the session and clears the cookie.
	lo := b.Do(http.MethodPost, f.URL("/api/auth/spectrocloud/logout?env=development"), false,
		"X-Requested-With", "XMLHttpRequest", "Origin", appOrigin)
	if lo.StatusCode != http.StatusOK {
		t.Fatalf("logout: %d", lo.StatusCode)
	}
	if got := refresh(b, f); got.StatusCode != http.StatusUnauthorized {
		t.Fatalf("refresh after logout: %d", got.StatusCode)
	}
	// Even with the old cookie value replayed, the session is gone.
	nb := newBrowser(t)
	nb.Client.Jar.SetCookies(u, []*http.Cookie{{Name: "spectrocloud-refresh-token", Value: handle}})
	if got := refresh(nb, f); got.StatusCode != http.StatusUnauthorized {
		t.Fatalf("refresh with a logged-out handle: %d", got.StatusCode)
	}
}

func TestRefreshRenewsUpstreamNearExpiry(t *testing.T) {
	f := newFixture(t, fixtureOptions{RefreshTokens: true, IDTokenTTL: time.Hour})
	b := newBrowser(t)
	first := signIn(t, f, b)
	firstID := first["providerInfo"].(map[string]any)["idToken"]

	// Within the margin of the ID token's expiry, refresh goes upstream once.
	f.Advance(56 * time.Minute)
	f.OP.ResetCounters()
	r := refresh(b, f)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.StatusCode, mustRead(r))
	}
	got := decodeJSON(t, r)
	if got["providerInfo"].(map[string]any)["idToken"] == firstID {
		t.Errorf("ID token was not renewed near expiry")
	}
	if c := f.OP.Counters(); c.Refresh != 1 {
		t.Errorf("provider refreshes = %d, want 1 (%+v)", c.Refresh, c)
	}
}

func TestSessionSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, fixtureOptions{RefreshTokens: true, DataDir: dir})
	b := newBrowser(t)
	first := signIn(t, f, b)
	token := first["backstageIdentity"].(map[string]any)["token"]
	f.Srv.Close()
	_ = f.Sessions.Close()

	// A new daemon on the same address and data directory.
	g := newFixture(t, fixtureOptions{DataDir: dir, OP: f, Addr: f.Srv.Listener.Addr().String()})
	r := refresh(b, g)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("refresh after restart: %d %s", r.StatusCode, mustRead(r))
	}
	// The token issued before the restart still verifies against the new JWKS.
	req, _ := http.NewRequest(http.MethodGet, g.URL("/api/auth/v1/userinfo"), nil)
	req.Header.Set("Authorization", "Bearer "+token.(string))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("userinfo with a pre-restart token: %d %s", res.StatusCode, mustRead(res))
	}
}

func TestRedirectFlow(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	b := newBrowser(t)
	q := url.Values{"scope": {scope}, "origin": {appOrigin}, "redirectUrl": {appOrigin + "/catalog?x=1"}, "flow": {"redirect"}, "env": {"development"}}
	// Follow everything up to the daemon's final redirect back to the app.
	b.Client.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), appOrigin) {
			return http.ErrUseLastResponse
		}
		return nil
	}
	res := b.Get(startURL(f, q))
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != appOrigin+"/catalog?x=1" {
		t.Fatalf("redirect flow ended with %d to %q: %s", res.StatusCode, res.Header.Get("Location"), mustRead(res))
	}
	if r := refresh(b, f); r.StatusCode != http.StatusOK {
		t.Fatalf("refresh after redirect flow: %d", r.StatusCode)
	}
}

func TestSignInWithUnverifiedEmailIsRefused(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	if err := f.OP.SetSelectedUser("bob"); err != nil {
		t.Fatal(err)
	}
	msg, _ := frameMessage(t, newBrowser(t).Get(startURL(f, popupQuery())))
	e, ok := msg["error"].(map[string]any)
	if !ok || e["name"] != "NotAllowedError" {
		t.Fatalf("want an in-band NotAllowedError, got %v", msg)
	}
}

func TestTamperedIDTokenIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(claims map[string]any, tok string) string
	}{
		{"flipped signature", func(_ map[string]any, tok string) string {
			i := strings.LastIndex(tok, ".") + 5
			c := byte('A')
			if tok[i] == 'A' {
				c = 'B'
			}
			return tok[:i] + string(c) + tok[i+1:]
		}},
		{"alg none", func(claims map[string]any, _ string) string {
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`))
			p, _ := json.Marshal(claims)
			return h + "." + base64.RawURLEncoding.EncodeToString(p) + "."
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{WrapOP: tamperIDToken(t, tc.tamper)})
			msg, _ := frameMessage(t, newBrowser(t).Get(startURL(f, popupQuery())))
			if msg["error"] == nil {
				t.Fatalf("sign-in with a tampered ID token succeeded: %v", msg)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		var op *fixture
		f := newFixture(t, fixtureOptions{WrapOP: func(h http.Handler) http.Handler {
			return tamperIDToken(t, func(claims map[string]any, _ string) string {
				claims["exp"] = time.Now().Add(-time.Hour).Unix()
				claims["iat"] = time.Now().Add(-2 * time.Hour).Unix()
				tok, err := op.OP.SignClaims(claims)
				if err != nil {
					t.Fatal(err)
				}
				return tok
			})(h)
		}})
		op = f
		msg, _ := frameMessage(t, newBrowser(t).Get(startURL(f, popupQuery())))
		if msg["error"] == nil {
			t.Fatalf("sign-in with an expired ID token succeeded: %v", msg)
		}
	})
}

// tamperIDToken rewrites the id_token of the provider's token responses.
func tamperIDToken(t *testing.T, fn func(claims map[string]any, tok string) string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, "/token") {
				next.ServeHTTP(w, r)
				return
			}
			rec := &recorder{header: http.Header{}}
			next.ServeHTTP(rec, r)
			var body map[string]any
			if err := json.Unmarshal(rec.body.Bytes(), &body); err == nil {
				if tok, ok := body["id_token"].(string); ok {
					body["id_token"] = fn(jwtClaims(t, tok), tok)
				}
				b, _ := json.Marshal(body)
				rec.body = *bytes.NewBuffer(b)
			}
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.status)
			_, _ = w.Write(rec.body.Bytes())
		})
	}
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(s int)   { r.status = s }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

func mustRead(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}
