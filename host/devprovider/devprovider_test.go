package devprovider_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/spectroauth/spectroauth/host/devprovider"
)

const (
	clientID     = "backstage"
	clientSecret = "s3cret-value"
	callbackPath = "/api/auth/spectrocloud/handler/frame"
)

var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func ptr[T any](v T) *T { return &v }

func testUsers() []devprovider.User {
	return []devprovider.User{
		{
			ID: "u-alice", Username: "alice", Email: "alice@example.com", EmailVerified: ptr(true),
			GivenName: "Alice", FamilyName: "Liddell", Name: "Alice Liddell",
			Picture: "https://example.com/alice.png", Groups: []string{"dev", "ops"},
			ExtraClaims: map[string]any{"tenant": "t-1", "email": "must-not-override@example.com"},
		},
		{ID: "u-bob", Username: "bob", Email: "bob@example.com", EmailVerified: ptr(false)},
		{Username: "carol", Email: "carol@example.com"},
	}
}

type env struct {
	t        *testing.T
	srv      *httptest.Server
	op       *devprovider.Provider
	issuer   string
	redirect string
}

type envOpt func(*devprovider.Config)

// newEnv starts a provider on a loopback httptest server, mounted under
// prefix (which may be empty), over https when tls is set.
func newEnv(t *testing.T, prefix string, tls bool, opts ...envOpt) *env {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	scheme := "http"
	if tls {
		scheme = "https"
	}
	base := scheme + "://" + srv.Listener.Addr().String()
	e := &env{t: t, srv: srv, issuer: base + prefix, redirect: base + callbackPath}
	cfg := devprovider.Config{
		Issuer:        e.issuer,
		Clients:       []devprovider.Client{{ID: clientID, Secret: clientSecret, RedirectURIs: []string{e.redirect}, PostLogoutRedirectURIs: []string{base + "/bye"}}},
		Users:         testUsers(),
		AllowInsecure: !tls,
		AutoApprove:   "alice",
		Key:           testKey(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	p, err := devprovider.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.op = p
	mux := http.NewServeMux()
	if prefix == "" {
		mux.Handle("/", p)
	} else {
		mux.Handle(prefix+"/", p)
	}
	mux.HandleFunc(callbackPath, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the redirect_uri must never be dialled by the test browser")
	})
	srv.Config.Handler = mux
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return e
}

func (e *env) ctx() context.Context {
	return oidc.ClientContext(context.Background(), e.srv.Client())
}

func (e *env) oauth2Config(scopes ...string) *oauth2.Config {
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "profile", "email"}
	}
	return &oauth2.Config{
		ClientID: clientID, ClientSecret: clientSecret, RedirectURL: e.redirect, Scopes: scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   e.issuer + "/authorize",
			TokenURL:  e.issuer + "/oauth/token",
			AuthStyle: oauth2.AuthStyleInHeader,
		},
	}
}

// browser is a cookie-jar client that stops at the redirect_uri.
func (e *env) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:       jar,
		Transport: e.srv.Client().Transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), e.redirect) {
				return http.ErrUseLastResponse
			}
			if len(via) > 10 {
				return errors.New("too many redirects")
			}
			return nil
		},
	}
}

// authorize runs the front channel and returns the redirect_uri query.
func (e *env) authorize(authURL string) url.Values {
	e.t.Helper()
	resp, err := e.browser().Get(authURL)
	if err != nil {
		e.t.Fatalf("authorize: %v", err)
	}
	defer resp.Body.Close()
	return e.callbackQuery(resp)
}

func (e *env) callbackQuery(resp *http.Response) url.Values {
	e.t.Helper()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, e.redirect) {
		body, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("expected redirect to %s, got %d Location=%q body=%s", e.redirect, resp.StatusCode, loc, body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		e.t.Fatal(err)
	}
	return u.Query()
}

type flowResult struct {
	token   *oauth2.Token
	idToken *oidc.IDToken
	claims  map[string]any
}

func (e *env) codeFlow(scopes ...string) flowResult {
	e.t.Helper()
	cfg := e.oauth2Config(scopes...)
	verifier := oauth2.GenerateVerifier()
	q := e.authorize(cfg.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier), oidc.Nonce("n-1")))
	if q.Get("state") != "st-1" {
		e.t.Fatalf("state = %q", q.Get("state"))
	}
	tok, err := cfg.Exchange(e.ctx(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		e.t.Fatalf("exchange: %v", err)
	}
	return e.verify(tok, "n-1")
}

func (e *env) verify(tok *oauth2.Token, nonce string) flowResult {
	e.t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	prov, err := oidc.NewProvider(e.ctx(), e.issuer)
	if err != nil {
		e.t.Fatalf("discovery: %v", err)
	}
	idt, err := prov.Verifier(&oidc.Config{ClientID: clientID}).Verify(e.ctx(), raw)
	if err != nil {
		e.t.Fatalf("verify ID token: %v", err)
	}
	if idt.Nonce != nonce {
		e.t.Fatalf("nonce = %q, want %q", idt.Nonce, nonce)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		e.t.Fatalf("at_hash: %v", err)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		e.t.Fatal(err)
	}
	return flowResult{token: tok, idToken: idt, claims: claims}
}

func (e *env) getJSON(u string, into any) int {
	e.t.Helper()
	resp, err := e.srv.Client().Get(u)
	if err != nil {
		e.t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	if into != nil {
		_ = json.NewDecoder(resp.Body).Decode(into)
	}
	return resp.StatusCode
}

func TestDiscovery(t *testing.T) {
	for _, tc := range []struct {
		name, prefix string
		tls, iss     bool
	}{
		{"root http", "", false, false},
		{"prefixed http", "/dev/oidc", false, false},
		{"prefixed https", "/dev/oidc", true, false},
		{"rfc9207", "/dev/oidc", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.prefix, tc.tls, func(c *devprovider.Config) { c.AuthorizationResponseIssuer = tc.iss })
			var doc map[string]any
			if code := e.getJSON(e.issuer+"/.well-known/openid-configuration", &doc); code != 200 {
				t.Fatalf("status %d", code)
			}
			if doc["issuer"] != e.issuer {
				t.Errorf("issuer = %v, want %v", doc["issuer"], e.issuer)
			}
			for _, k := range []string{"authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint", "revocation_endpoint", "end_session_endpoint"} {
				v, _ := doc[k].(string)
				if !strings.HasPrefix(v, e.issuer+"/") {
					t.Errorf("%s = %q, not below the issuer", k, v)
				}
			}
			if got := doc["code_challenge_methods_supported"]; !containsAny(got, "S256") {
				t.Errorf("code_challenge_methods_supported = %v", got)
			}
			if got := doc["id_token_signing_alg_values_supported"]; !containsAny(got, "RS256") {
				t.Errorf("id_token_signing_alg_values_supported = %v", got)
			}
			if got, _ := doc["authorization_response_iss_parameter_supported"].(bool); got != tc.iss {
				t.Errorf("authorization_response_iss_parameter_supported = %v, want %v", got, tc.iss)
			}
			if _, err := oidc.NewProvider(e.ctx(), e.issuer); err != nil {
				t.Errorf("go-oidc discovery: %v", err)
			}
			if c := e.op.Counters().Discovery; c != 2 {
				t.Errorf("discovery counter = %d, want 2", c)
			}
		})
	}
}

func containsAny(v any, want string) bool {
	list, _ := v.([]any)
	for _, x := range list {
		if x == want {
			return true
		}
	}
	return false
}

func TestCodeFlowClaims(t *testing.T) {
	for _, tc := range []struct {
		name, prefix string
		tls          bool
	}{
		{"root http", "", false},
		{"prefixed http", "/dev/oidc", false},
		{"prefixed https", "/dev/oidc", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.prefix, tc.tls)
			res := e.codeFlow()
			c := res.claims
			want := map[string]any{
				"iss": e.issuer, "sub": "u-alice", "email": "alice@example.com", "email_verified": true,
				"given_name": "Alice", "family_name": "Liddell", "name": "Alice Liddell",
				"picture": "https://example.com/alice.png", "preferred_username": "alice", "tenant": "t-1",
				"azp": clientID,
			}
			for k, v := range want {
				if c[k] != v {
					t.Errorf("claim %s = %#v, want %#v", k, c[k], v)
				}
			}
			if g, _ := c["groups"].([]any); len(g) != 2 || g[0] != "dev" || g[1] != "ops" {
				t.Errorf("groups = %#v", c["groups"])
			}
			if c["at_hash"] == nil || c["iat"] == nil || c["exp"] == nil {
				t.Errorf("registered claims missing: %v", c)
			}
			if res.token.RefreshToken != "" {
				t.Errorf("refresh token issued although RefreshTokens is off")
			}
			// userinfo answers the same claims for the access token.
			req, _ := http.NewRequest("GET", e.issuer+"/userinfo", nil)
			req.Header.Set("Authorization", "Bearer "+res.token.AccessToken)
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var ui map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&ui)
			resp.Body.Close()
			if ui["sub"] != "u-alice" || ui["email"] != "alice@example.com" {
				t.Errorf("userinfo = %v", ui)
			}
		})
	}
}

func TestEmailVerifiedVariants(t *testing.T) {
	for _, tc := range []struct {
		user    string
		want    any
		present bool
	}{
		{"bob", false, true},
		{"carol", nil, false},
	} {
		t.Run(tc.user, func(t *testing.T) {
			e := newEnv(t, "", false, func(c *devprovider.Config) { c.AutoApprove = tc.user })
			c := e.codeFlow().claims
			v, ok := c["email_verified"]
			if ok != tc.present || v != tc.want {
				t.Errorf("email_verified = %#v (present %v), want %#v (present %v)", v, ok, tc.want, tc.present)
			}
		})
	}
}

func TestMinimalIDToken(t *testing.T) {
	e := newEnv(t, "", false, func(c *devprovider.Config) { c.MinimalIDToken = true })
	res := e.codeFlow()
	if _, ok := res.claims["email"]; ok {
		t.Errorf("email in a minimal ID token: %v", res.claims)
	}
	if res.claims["groups"] == nil {
		t.Errorf("groups should stay in the ID token")
	}
	prov, _ := oidc.NewProvider(e.ctx(), e.issuer)
	ui, err := prov.UserInfo(e.ctx(), oauth2.StaticTokenSource(res.token))
	if err != nil {
		t.Fatal(err)
	}
	if ui.Email != "alice@example.com" || !ui.EmailVerified {
		t.Errorf("userinfo email = %q verified %v", ui.Email, ui.EmailVerified)
	}
}

func TestWrongPKCEVerifier(t *testing.T) {
	e := newEnv(t, "", false)
	cfg := e.oauth2Config()
	q := e.authorize(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oidc.Nonce("n")))
	_, err := cfg.Exchange(e.ctx(), q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("exchange with wrong verifier: %v", err)
	}
}

func TestPKCERequired(t *testing.T) {
	e := newEnv(t, "", false)
	q := e.authorize(e.oauth2Config().AuthCodeURL("s", oidc.Nonce("n")))
	if q.Get("error") != "invalid_request" || q.Get("code") != "" {
		t.Fatalf("authorize without PKCE: %v", q)
	}
}

func TestCodeIsSingleUse(t *testing.T) {
	e := newEnv(t, "", false)
	cfg := e.oauth2Config()
	v := oauth2.GenerateVerifier()
	q := e.authorize(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(v), oidc.Nonce("n")))
	if _, err := cfg.Exchange(e.ctx(), q.Get("code"), oauth2.VerifierOption(v)); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Exchange(e.ctx(), q.Get("code"), oauth2.VerifierOption(v)); err == nil {
		t.Fatal("second exchange of the same code succeeded")
	}
}

func TestRefresh(t *testing.T) {
	e := newEnv(t, "/dev/oidc", false, func(c *devprovider.Config) { c.RefreshTokens = true })
	res := e.codeFlow(oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess)
	rt1 := res.token.RefreshToken
	if rt1 == "" {
		t.Fatal("no refresh token")
	}
	cfg := e.oauth2Config()
	refresh := func(rt string) (*oauth2.Token, error) {
		return cfg.TokenSource(e.ctx(), &oauth2.Token{RefreshToken: rt}).Token()
	}
	tok2, err := refresh(rt1)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok2.RefreshToken == rt1 || tok2.RefreshToken == "" {
		t.Fatalf("refresh token not rotated")
	}
	res2 := e.verify(tok2, "")
	if res2.claims["sub"] != "u-alice" || res2.claims["email"] != "alice@example.com" || res2.claims["groups"] == nil {
		t.Errorf("refreshed ID token lost claims: %v", res2.claims)
	}
	if got := e.op.Counters().Refresh; got != 1 {
		t.Errorf("refresh counter = %d", got)
	}
	// Replaying the rotated token fails and revokes the chain.
	if _, err := refresh(rt1); err == nil {
		t.Fatal("replayed refresh token accepted")
	}
	if _, err := refresh(tok2.RefreshToken); err == nil {
		t.Fatal("refresh token of a replayed chain still works")
	}
	if got := e.op.Counters().RefreshChainsRevoked; got != 1 {
		t.Errorf("chains revoked = %d, want 1", got)
	}
}

// With StableRefreshTokens (SpectroCloud's documented behaviour) the grant
// answers the same refresh token, which keeps working: a client that lost
// the answer (killed before storing it) still holds a valid token.
func TestStableRefreshTokens(t *testing.T) {
	e := newEnv(t, "", false, func(c *devprovider.Config) { c.RefreshTokens, c.StableRefreshTokens = true, true })
	rt := e.codeFlow(oidc.ScopeOpenID, "email", oidc.ScopeOfflineAccess).token.RefreshToken
	if rt == "" {
		t.Fatal("no refresh token")
	}
	cfg := e.oauth2Config()
	for i := range 3 {
		tok, err := cfg.TokenSource(e.ctx(), &oauth2.Token{RefreshToken: rt}).Token()
		if err != nil {
			t.Fatalf("refresh %d with the same token: %v", i+1, err)
		}
		if tok.RefreshToken != rt {
			t.Fatalf("refresh %d rotated the refresh token", i+1)
		}
	}
	if got := e.op.Counters().RefreshChainsRevoked; got != 0 {
		t.Errorf("chains revoked = %d, want 0", got)
	}
}

// With RefreshReuseGrace a rotated token works once more within the grace
// (a client killed before storing the rotated one recovers), and the
// token it was first rotated to stays valid; after the grace, a replay
// revokes the chain.
func TestRefreshReuseGrace(t *testing.T) {
	const grace = 300 * time.Millisecond
	e := newEnv(t, "", false, func(c *devprovider.Config) { c.RefreshTokens, c.RefreshReuseGrace = true, grace })
	rt1 := e.codeFlow(oidc.ScopeOpenID, "email", oidc.ScopeOfflineAccess).token.RefreshToken
	cfg := e.oauth2Config()
	refresh := func(rt string) (*oauth2.Token, error) {
		return cfg.TokenSource(e.ctx(), &oauth2.Token{RefreshToken: rt}).Token()
	}
	lost, err := refresh(rt1) // the answer a killed client never stored
	if err != nil {
		t.Fatal(err)
	}
	again, err := refresh(rt1)
	if err != nil {
		t.Fatalf("the rotated token within the grace: %v", err)
	}
	if again.RefreshToken == rt1 || again.RefreshToken == lost.RefreshToken {
		t.Fatal("the reuse did not rotate")
	}
	if _, err := refresh(lost.RefreshToken); err != nil {
		t.Fatalf("the token of the first rotation: %v", err)
	}
	if _, err := refresh(rt1); err == nil {
		t.Fatal("a rotated token was accepted twice within the grace")
	}
	if got := e.op.Counters().RefreshChainsRevoked; got != 1 {
		t.Errorf("chains revoked = %d, want 1", got)
	}

	rt2 := e.codeFlow(oidc.ScopeOpenID, "email", oidc.ScopeOfflineAccess).token.RefreshToken
	tok2, err := refresh(rt2)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(grace + 50*time.Millisecond)
	if _, err := refresh(rt2); err == nil {
		t.Fatal("a rotated token was accepted after the grace")
	}
	// The replay after the grace revoked the chain: the token rt2 was
	// rotated to is gone too.
	if _, err := refresh(tok2.RefreshToken); err == nil {
		t.Fatal("the chain of a token replayed after the grace still works")
	}
	if got := e.op.Counters().RefreshChainsRevoked; got != 2 {
		t.Errorf("chains revoked = %d, want 2", got)
	}
}

func TestNoRefreshTokenWithoutOfflineAccess(t *testing.T) {
	e := newEnv(t, "", false, func(c *devprovider.Config) { c.RefreshTokens = true })
	if rt := e.codeFlow().token.RefreshToken; rt != "" {
		t.Fatal("refresh token without offline_access")
	}
}

func TestLoginPage(t *testing.T) {
	e := newEnv(t, "/dev/oidc", false, func(c *devprovider.Config) { c.AutoApprove = "" })
	cfg := e.oauth2Config()
	v := oauth2.GenerateVerifier()
	b := e.browser()
	resp, err := b.Get(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(v), oidc.Nonce("n")))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	if resp.StatusCode != 200 || !strings.Contains(page, "Development OpenID provider — not for production") {
		t.Fatalf("login page: %d %s", resp.StatusCode, page)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		if !strings.Contains(page, `value="`+u+`"`) {
			t.Errorf("user %s not offered", u)
		}
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("login page can be framed")
	}
	field := func(name string) string {
		m := regexp.MustCompile(`name="` + name + `" value="([^"]*)"`).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no %s field", name)
		}
		return m[1]
	}
	id, csrf := field("authRequestID"), field("csrf")
	post := func(form url.Values, origin string) *http.Response {
		req, _ := http.NewRequest("POST", e.issuer+"/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := post(url.Values{"authRequestID": {id}, "csrf": {"forged"}, "username": {"bob"}}, ""); r.StatusCode != http.StatusForbidden {
		t.Errorf("forged CSRF token: status %d", r.StatusCode)
	}
	if r := post(url.Values{"authRequestID": {id}, "csrf": {csrf}, "username": {"bob"}}, "https://evil.example"); r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin POST: status %d", r.StatusCode)
	}
	origin := strings.TrimSuffix(e.issuer, "/dev/oidc")
	q := e.callbackQuery(post(url.Values{"authRequestID": {id}, "csrf": {csrf}, "username": {"bob"}}, origin))
	tok, err := cfg.Exchange(e.ctx(), q.Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	if sub := e.verify(tok, "n").claims["sub"]; sub != "u-bob" {
		t.Errorf("signed in as %v, want u-bob", sub)
	}
}

func TestSetSelectedUser(t *testing.T) {
	e := newEnv(t, "", false)
	if err := e.op.SetSelectedUser("nobody"); err == nil {
		t.Error("unknown user accepted")
	}
	if err := e.op.SetSelectedUser("bob"); err != nil {
		t.Fatal(err)
	}
	if sub := e.codeFlow().claims["sub"]; sub != "u-bob" {
		t.Errorf("sub = %v", sub)
	}
}

func TestRotateKey(t *testing.T) {
	e := newEnv(t, "", false)
	old := e.op.SigningKey().KeyID
	kid, err := e.op.RotateKey()
	if err != nil {
		t.Fatal(err)
	}
	if kid == old || e.op.SigningKey().KeyID != kid {
		t.Fatalf("kid not rotated")
	}
	var jwks struct {
		Keys []struct {
			Kid string `json:"kid"`
			Alg string `json:"alg"`
		} `json:"keys"`
	}
	e.getJSON(e.issuer+"/keys", &jwks)
	var kids []string
	for _, k := range jwks.Keys {
		kids = append(kids, k.Kid)
	}
	if !slices.Contains(kids, old) || !slices.Contains(kids, kid) {
		t.Errorf("JWKS kids = %v, want both %s and %s", kids, old, kid)
	}
	res := e.codeFlow()
	hdr := strings.SplitN(res.token.Extra("id_token").(string), ".", 2)[0]
	if !strings.Contains(decodeSegment(t, hdr), kid) {
		t.Errorf("ID token not signed with the new key")
	}
}

func TestSignClaims(t *testing.T) {
	e := newEnv(t, "", false)
	raw, err := e.op.SignClaims(map[string]any{"iss": e.issuer, "sub": "x", "aud": clientID, "exp": 4102444800, "iat": 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	prov, _ := oidc.NewProvider(e.ctx(), e.issuer)
	if _, err := prov.Verifier(&oidc.Config{ClientID: clientID}).Verify(e.ctx(), raw); err != nil {
		t.Fatalf("token signed with SigningKey does not verify: %v", err)
	}
}

func decodeSegment(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestClientAuthMethods(t *testing.T) {
	e := newEnv(t, "", false, func(c *devprovider.Config) {
		c.Clients = append(c.Clients, devprovider.Client{
			ID: "poster", Secret: "post-secret", RedirectURIs: c.Clients[0].RedirectURIs, AuthMethod: devprovider.AuthMethodPost,
		})
	})
	run := func(id, secret string, style oauth2.AuthStyle) error {
		cfg := e.oauth2Config()
		cfg.ClientID, cfg.ClientSecret, cfg.Endpoint.AuthStyle = id, secret, style
		v := oauth2.GenerateVerifier()
		q := e.authorize(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(v), oidc.Nonce("n")))
		_, err := cfg.Exchange(e.ctx(), q.Get("code"), oauth2.VerifierOption(v))
		return err
	}
	for _, tc := range []struct {
		name, id, secret string
		style            oauth2.AuthStyle
		ok               bool
	}{
		{"basic client, basic", clientID, clientSecret, oauth2.AuthStyleInHeader, true},
		{"basic client, post", clientID, clientSecret, oauth2.AuthStyleInParams, false},
		{"post client, post", "poster", "post-secret", oauth2.AuthStyleInParams, true},
		{"post client, basic", "poster", "post-secret", oauth2.AuthStyleInHeader, false},
		{"wrong secret", clientID, "nope", oauth2.AuthStyleInHeader, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(tc.id, tc.secret, tc.style)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			var re *oauth2.RetrieveError
			if err != nil && (!errors.As(err, &re) || re.ErrorCode != "invalid_client") {
				t.Errorf("error %v, want invalid_client", err)
			}
		})
	}
}

func TestRevocation(t *testing.T) {
	e := newEnv(t, "", false, func(c *devprovider.Config) { c.RefreshTokens = true })
	res := e.codeFlow(oidc.ScopeOpenID, "email", oidc.ScopeOfflineAccess)
	form := url.Values{"token": {res.token.RefreshToken}, "token_type_hint": {"refresh_token"}}
	req, _ := http.NewRequest("POST", e.issuer+"/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, clientSecret)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if _, err := e.oauth2Config().TokenSource(e.ctx(), &oauth2.Token{RefreshToken: res.token.RefreshToken}).Token(); err == nil {
		t.Fatal("revoked refresh token still works")
	}
	// Revoking the refresh token took its access token along.
	req, _ = http.NewRequest("GET", e.issuer+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+res.token.AccessToken)
	resp, err = e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Fatal("access token of a revoked refresh token still works at userinfo")
	}
	if c := e.op.Counters().Revocation; c != 1 {
		t.Errorf("revocation counter = %d", c)
	}
}

func TestEndSession(t *testing.T) {
	e := newEnv(t, "/dev/oidc", false)
	res := e.codeFlow()
	base := strings.TrimSuffix(e.issuer, "/dev/oidc")
	q := url.Values{
		"id_token_hint":            {res.token.Extra("id_token").(string)},
		"post_logout_redirect_uri": {base + "/bye"},
		"state":                    {"xyz"},
	}
	c := e.browser()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(e.issuer + "/end_session?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); loc != base+"/bye?state=xyz" {
		t.Fatalf("end_session redirect = %d %q", resp.StatusCode, loc)
	}
	// An unregistered post_logout_redirect_uri is refused.
	q.Set("post_logout_redirect_uri", "https://evil.example/")
	resp, err = c.Get(e.issuer + "/end_session?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Location"), "https://evil.example") {
		t.Fatal("redirected to an unregistered post_logout_redirect_uri")
	}
}

func TestAuthorizationResponseIss(t *testing.T) {
	e := newEnv(t, "/dev/oidc", false, func(c *devprovider.Config) { c.AuthorizationResponseIssuer = true })
	cfg := e.oauth2Config()
	q := e.authorize(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oidc.Nonce("n")))
	if q.Get("iss") != e.issuer || q.Get("code") == "" {
		t.Fatalf("authorization response = %v", q)
	}
	// Error responses carry iss too.
	q = e.authorize(cfg.AuthCodeURL("s", oidc.Nonce("n")))
	if q.Get("iss") != e.issuer || q.Get("error") == "" {
		t.Fatalf("error response = %v", q)
	}
}

func TestCounters(t *testing.T) {
	e := newEnv(t, "", false)
	e.codeFlow()
	c := e.op.Counters()
	if c.Authorize != 1 || c.Token != 1 || c.Refresh != 0 || c.JWKS != 1 || c.Discovery != 1 {
		t.Errorf("counters = %+v", c)
	}
	e.op.ResetCounters()
	if c := e.op.Counters(); c != (devprovider.Counters{}) {
		t.Errorf("after reset = %+v", c)
	}
}

func TestConfigValidation(t *testing.T) {
	good := func() devprovider.Config {
		return devprovider.Config{
			Issuer:  "https://localhost:7007/dev/oidc",
			Clients: []devprovider.Client{{ID: "c", Secret: "s", RedirectURIs: []string{"http://localhost/cb"}}},
			Users:   []devprovider.User{{Username: "u"}},
			Key:     testKey(),
		}
	}
	if _, err := devprovider.New(good()); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, mutate := range map[string]func(*devprovider.Config){
		"no issuer":          func(c *devprovider.Config) { c.Issuer = "" },
		"http not allowed":   func(c *devprovider.Config) { c.Issuer = "http://localhost:7007/dev/oidc" },
		"trailing slash":     func(c *devprovider.Config) { c.Issuer += "/" },
		"query":              func(c *devprovider.Config) { c.Issuer += "?x=1" },
		"no clients":         func(c *devprovider.Config) { c.Clients = nil },
		"no secret":          func(c *devprovider.Config) { c.Clients[0].Secret = "" },
		"no redirect":        func(c *devprovider.Config) { c.Clients[0].RedirectURIs = nil },
		"bad auth method":    func(c *devprovider.Config) { c.Clients[0].AuthMethod = "none" },
		"no users":           func(c *devprovider.Config) { c.Users = nil },
		"duplicate username": func(c *devprovider.Config) { c.Users = append(c.Users, devprovider.User{ID: "x", Username: "u"}) },
		"unknown autoapprove": func(c *devprovider.Config) {
			c.AutoApprove = "zed"
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := good()
			mutate(&c)
			if _, err := devprovider.New(c); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestRequireLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:7007", true},
		{"127.8.9.10:7007", true},
		{"[::1]:7007", true},
		{"localhost:7007", true},
		{"LOCALHOST:0", true},
		{"[::ffff:127.0.0.1]:7007", true},
		{":7007", false},
		{"0.0.0.0:7007", false},
		{"[::]:7007", false},
		{"10.0.0.1:7007", false},
		{"192.168.1.2:80", false},
		{"example.com:7007", false},
		{"localhost.example.com:7007", false},
		{"[fe80::1%eth0]:7007", false},
		{"127.0.0.1", false}, // no port
	} {
		t.Run(tc.addr, func(t *testing.T) {
			err := devprovider.RequireLoopback(tc.addr)
			if (err == nil) != tc.ok {
				t.Fatalf("RequireLoopback(%q) = %v, want ok=%v", tc.addr, err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), tc.addr) {
				t.Errorf("error %q does not name the address", err)
			}
		})
	}
}

// Only the client a refresh token was issued to, with its secret, may use
// it, a rotated one within the grace included: another client of the
// provider is refused, and so is a wrong secret; the owner's refresh
// still works after both.
func TestRefreshGrantOnlyForItsClient(t *testing.T) {
	e := newEnv(t, "", false, func(c *devprovider.Config) {
		c.RefreshTokens, c.RefreshReuseGrace = true, time.Minute
		c.Clients = append(c.Clients, devprovider.Client{ID: "other", Secret: "other-secret", RedirectURIs: c.Clients[0].RedirectURIs})
	})
	rt1 := e.codeFlow(oidc.ScopeOpenID, "email", oidc.ScopeOfflineAccess).token.RefreshToken
	owner := e.oauth2Config()
	refresh := func(cfg *oauth2.Config, rt string) error {
		_, err := cfg.TokenSource(e.ctx(), &oauth2.Token{RefreshToken: rt}).Token()
		return err
	}
	if err := refresh(owner, rt1); err != nil { // rt1 is now rotated, within its grace
		t.Fatal(err)
	}
	other := e.oauth2Config()
	other.ClientID, other.ClientSecret = "other", "other-secret"
	if err := refresh(other, rt1); err == nil {
		t.Error("another client used the rotated refresh token")
	}
	wrong := e.oauth2Config()
	wrong.ClientSecret = "not-the-secret"
	if err := refresh(wrong, rt1); err == nil {
		t.Error("a wrong client secret used the rotated refresh token")
	}
	if err := refresh(owner, rt1); err != nil {
		t.Errorf("the owner's reuse within the grace, after the others were refused: %v", err)
	}
}
