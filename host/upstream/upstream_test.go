package upstream

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/spectroauth/spectroauth/host/devprovider"
)

func TestSignIn(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tls    bool
		prefix string
	}{
		{"http root issuer", false, ""},
		{"http path issuer", false, "/dev/oidc"},
		{"https path issuer", true, "/v1/oidc/tenant/abc123"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{tls: tc.tls, prefix: tc.prefix})
			p := h.provider()
			tok := h.signIn(p)
			if tok.IDToken == "" || tok.AccessToken == "" || tok.TokenType != "Bearer" {
				t.Fatalf("tokens incomplete: %v", tok)
			}
			if tok.RefreshToken != "" || tok.PaletteSessionToken != "" {
				t.Errorf("unexpected refresh/session token: %v", tok)
			}
			if time.Until(tok.IDTokenExpiry) < 50*time.Minute || time.Until(tok.AccessTokenExpiry) < time.Minute {
				t.Errorf("expiries: id %v access %v", tok.IDTokenExpiry, tok.AccessTokenExpiry)
			}
			want := Profile{
				Email: "alice@example.com", EmailVerified: true, DisplayName: "Alice Liddell",
				Picture: "https://example.com/a.png", Subject: "u-alice", Issuer: h.issuer,
				PreferredUsername: "alice", Groups: []string{"dev", "ops"},
			}
			if !profilesEqual(tok.Profile, want) {
				t.Errorf("profile = %+v\nwant      %+v", tok.Profile, want)
			}
			if tok.Claims["tenant"] != "t-1" || tok.Claims["sub"] != "u-alice" {
				t.Errorf("claims = %v", tok.Claims)
			}
			if c := h.op.Counters(); c.Discovery != 1 || c.Token != 1 || c.JWKS != 1 || c.Userinfo != 0 {
				t.Errorf("OP counters = %+v", c)
			}
		})
	}
}

func profilesEqual(a, b Profile) bool {
	return a.Email == b.Email && a.EmailVerified == b.EmailVerified && a.DisplayName == b.DisplayName &&
		a.Picture == b.Picture && a.Subject == b.Subject && a.Issuer == b.Issuer &&
		a.PreferredUsername == b.PreferredUsername && slices.Equal(a.Groups, b.Groups)
}

func TestAuthCodeURL(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	p := h.provider(func(c *Config) { c.Scopes = []string{"profile", "groups"}; c.Prompt = "login" })
	ar := h.authRequest("email", "profile")
	u, err := url.Parse(p.AuthCodeURL(ar))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	sum := sha256.Sum256([]byte(ar.PKCEVerifier))
	for k, want := range map[string]string{
		"response_type":         "code",
		"client_id":             testClientID,
		"redirect_uri":          ar.RedirectURL,
		"state":                 ar.State,
		"nonce":                 ar.Nonce,
		"code_challenge":        base64.RawURLEncoding.EncodeToString(sum[:]),
		"code_challenge_method": "S256",
		"scope":                 "openid profile groups email",
		"prompt":                "login",
	} {
		if q.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, q.Get(k), want)
		}
	}
	if q.Has("code_verifier") || strings.Contains(u.String(), ar.PKCEVerifier) {
		t.Error("the PKCE verifier leaked into the authorization URL")
	}
	for _, bad := range []AuthRequest{
		{RedirectURL: h.redirect, State: "s", Nonce: "n"},
		{RedirectURL: h.redirect, State: "s", PKCEVerifier: "v"},
		{RedirectURL: h.redirect, Nonce: "n", PKCEVerifier: "v"},
		{State: "s", Nonce: "n", PKCEVerifier: "v"},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AuthCodeURL(%+v) did not panic", bad)
				}
			}()
			p.AuthCodeURL(bad)
		}()
	}
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	h := newHarness(t, harnessOpts{prefix: "/tenant/a"})
	for name, mutate := range map[string]func(*Config){
		"trailing slash": func(c *Config) { c.Issuer += "/" },
		"document names another issuer": func(*Config) {
			h.hook("/.well-known/openid-configuration", func(_ *http.Request, b map[string]any) {
				b["issuer"] = h.base + "/tenant/b"
			})
		},
	} {
		t.Run(name, func(t *testing.T) {
			defer h.hook("/.well-known/openid-configuration", nil)
			cfg := h.config()
			mutate(&cfg)
			_, err := New(context.Background(), cfg)
			if !errors.Is(err, ErrIssuerMismatch) {
				t.Fatalf("err = %v, want ErrIssuerMismatch", err)
			}
		})
	}
}

func TestManualEndpoints(t *testing.T) {
	h := newHarness(t, harnessOpts{tls: true, prefix: "/v1/oidc/tenant/t1"})
	p := h.provider(func(c *Config) {
		c.AuthorizationURL = h.issuer + "/authorize"
		c.TokenURL = h.issuer + "/oauth/token"
		c.JWKSURL = h.issuer + "/keys"
	})
	tok := h.signIn(p)
	if tok.Profile.Email != "alice@example.com" {
		t.Errorf("profile = %+v", tok.Profile)
	}
	if err := p.Revoke(context.Background(), tok); err != nil {
		t.Errorf("Revoke without a revocation endpoint: %v", err)
	}
	if p.EndSessionURL() != "" || p.LogoutURL("x", "", "") != "" {
		t.Error("end session URL without one configured")
	}
	if c := h.op.Counters(); c.Discovery != 0 || c.Revocation != 0 || c.Token != 1 {
		t.Errorf("OP counters = %+v", c)
	}
}

func TestEndSessionURL(t *testing.T) {
	h := newHarness(t, harnessOpts{prefix: "/dev/oidc"})
	p := h.provider()
	if p.EndSessionURL() != h.issuer+"/end_session" {
		t.Fatalf("EndSessionURL = %q", p.EndSessionURL())
	}
	u, _ := url.Parse(p.LogoutURL("hint", "http://localhost:3000/", "st"))
	q := u.Query()
	if q.Get("client_id") != testClientID || q.Get("id_token_hint") != "hint" || q.Get("post_logout_redirect_uri") != "http://localhost:3000/" || q.Get("state") != "st" {
		t.Errorf("LogoutURL query = %v", q)
	}
}

// TestIDTokenRefused tampers with the code exchange's token response and
// expects the ID token (or response) to be refused, without any secret,
// code, verifier or token in the error.
func TestIDTokenRefused(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	p := h.provider()
	now := time.Now().Unix()
	// hs256 forges an HMAC-signed ID token (the classic "alg confusion"
	// attack), signed by hand: go-jose refuses short HMAC keys.
	hs256 := func(key []byte) func(*http.Request, map[string]any) {
		return func(_ *http.Request, b map[string]any) {
			enc := func(v any) string {
				raw, _ := json.Marshal(v)
				return base64.RawURLEncoding.EncodeToString(raw)
			}
			input := enc(map[string]any{"alg": "HS256", "typ": "JWT", "kid": h.op.SigningKey().KeyID}) + "." + enc(claimsOf(t, b["id_token"].(string)))
			m := hmac.New(sha256.New, key)
			m.Write([]byte(input))
			b["id_token"] = input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
		}
	}
	for _, tc := range []struct {
		name     string
		hook     func(*http.Request, map[string]any)
		nonce    string // replaces the expected nonce
		idErr    bool   // errors.Is(err, ErrInvalidIDToken)
		contains string
	}{
		{name: "wrong nonce", nonce: "another-nonce", idErr: true, contains: "nonce"},
		{name: "flipped signature byte", idErr: true, hook: func(_ *http.Request, b map[string]any) {
			parts := strings.Split(b["id_token"].(string), ".")
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			sig[len(sig)/2] ^= 0x01
			parts[2] = base64.RawURLEncoding.EncodeToString(sig)
			b["id_token"] = strings.Join(parts, ".")
		}},
		{name: "edited payload, original signature", idErr: true, hook: func(_ *http.Request, b map[string]any) {
			parts := strings.Split(b["id_token"].(string), ".")
			c := claimsOf(t, b["id_token"].(string))
			c["sub"] = "u-bob"
			raw, _ := json.Marshal(c)
			parts[1] = base64.RawURLEncoding.EncodeToString(raw)
			b["id_token"] = strings.Join(parts, ".")
		}},
		{name: "expired", idErr: true, contains: "expired", hook: func(_ *http.Request, b map[string]any) {
			h.resign(b, func(c map[string]any) { c["exp"] = now - 60; c["iat"] = now - 3600 })
		}},
		{name: "other issuer", idErr: true, hook: func(_ *http.Request, b map[string]any) {
			h.resign(b, func(c map[string]any) { c["iss"] = h.issuer + "/other" })
		}},
		{name: "wrong audience", idErr: true, contains: "audience", hook: func(_ *http.Request, b map[string]any) {
			h.resign(b, func(c map[string]any) { c["aud"] = []string{"someone-else"}; delete(c, "azp") })
		}},
		{name: "multiple audiences without azp", idErr: true, contains: "azp", hook: func(_ *http.Request, b map[string]any) {
			h.resign(b, func(c map[string]any) { c["aud"] = []string{testClientID, "other"}; delete(c, "azp") })
		}},
		{name: "multiple audiences, foreign azp", idErr: true, contains: "azp", hook: func(_ *http.Request, b map[string]any) {
			h.resign(b, func(c map[string]any) { c["aud"] = []string{testClientID, "other"}; c["azp"] = "other" })
		}},
		{name: "single audience, foreign azp", idErr: true, contains: "azp", hook: func(_ *http.Request, b map[string]any) {
			h.resign(b, func(c map[string]any) { c["azp"] = "other" })
		}},
		{name: "no sub", idErr: true, contains: "sub", hook: func(_ *http.Request, b map[string]any) {
			h.resign(b, func(c map[string]any) { delete(c, "sub") })
		}},
		{name: "empty sub", idErr: true, contains: "sub", hook: func(_ *http.Request, b map[string]any) {
			h.resign(b, func(c map[string]any) { c["sub"] = "" })
		}},
		{name: "no iat", idErr: true, contains: "iat", hook: func(_ *http.Request, b map[string]any) {
			h.resign(b, func(c map[string]any) { delete(c, "iat") })
		}},
		{name: "iat in the future", idErr: true, contains: "iat", hook: func(_ *http.Request, b map[string]any) {
			h.resign(b, func(c map[string]any) { c["iat"] = now + 3600; c["exp"] = now + 7200 })
		}},
		{name: "no nonce", idErr: true, contains: "nonce", hook: func(_ *http.Request, b map[string]any) {
			h.resign(b, func(c map[string]any) { delete(c, "nonce") })
		}},
		{name: "at_hash mismatch", idErr: true, contains: "at_hash", hook: func(_ *http.Request, b map[string]any) {
			b["access_token"] = b["access_token"].(string) + "x"
		}},
		{name: "alg none", idErr: true, hook: func(_ *http.Request, b map[string]any) {
			c := claimsOf(t, b["id_token"].(string))
			b["id_token"] = unsignedJWT(map[string]any{"alg": "none", "typ": "JWT"}, c, nil)
		}},
		{name: "HS256 keyed with the client secret", idErr: true, hook: hs256([]byte(testClientSecret))},
		{name: "HS256 keyed with the public key's modulus", idErr: true, hook: hs256(sharedKey().PublicKey.N.Bytes())},
		{name: "no ID token", contains: "no ID token", hook: func(_ *http.Request, b map[string]any) {
			delete(b, "id_token")
		}},
		{name: "token type not bearer", contains: "token type", hook: func(_ *http.Request, b map[string]any) {
			b["token_type"] = "mac"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.hook("/oauth/token", tc.hook)
			defer h.hook("/oauth/token", nil)
			ar := h.authRequest()
			code := h.code(p, ar)
			nonce := ar.Nonce
			if tc.nonce != "" {
				nonce = tc.nonce
			}
			tok, err := p.Exchange(context.Background(), code, ar.RedirectURL, ar.PKCEVerifier, nonce)
			if err == nil {
				t.Fatalf("accepted: %v", tok)
			}
			if tc.idErr != errors.Is(err, ErrInvalidIDToken) {
				t.Errorf("errors.Is(err, ErrInvalidIDToken) = %v: %v", !tc.idErr, err)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not mention %q", err, tc.contains)
			}
			assertNoSecrets(t, err, code, ar.PKCEVerifier, ar.Nonce)
		})
	}

	// Controls: the same machinery with acceptable tokens.
	for _, tc := range []struct {
		name string
		hook func(*http.Request, map[string]any)
	}{
		{"re-signed unchanged", func(_ *http.Request, b map[string]any) { h.resign(b, func(map[string]any) {}) }},
		{"multiple audiences with our azp", func(_ *http.Request, b map[string]any) {
			h.resign(b, func(c map[string]any) { c["aud"] = []string{testClientID, "other"}; c["azp"] = testClientID })
		}},
		{"iat slightly ahead (clock skew)", func(_ *http.Request, b map[string]any) {
			h.resign(b, func(c map[string]any) { c["iat"] = now + 30 })
		}},
	} {
		t.Run("accepted/"+tc.name, func(t *testing.T) {
			h.hook("/oauth/token", tc.hook)
			defer h.hook("/oauth/token", nil)
			h.signIn(p)
		})
	}
}

func assertNoSecrets(t *testing.T, err error, values ...string) {
	t.Helper()
	t.Logf("error text: %v", err)
	msg := err.Error() + fmt.Sprintf(" %+v %#v", err, err)
	for _, v := range append(values, testClientSecret) {
		if v != "" && strings.Contains(msg, v) {
			t.Errorf("error text leaks a secret value: %s", msg)
		}
	}
}

func TestWrongPKCEVerifier(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	p := h.provider()
	ar := h.authRequest()
	code := h.code(p, ar)
	other := h.authRequest().PKCEVerifier
	_, err := p.Exchange(context.Background(), code, ar.RedirectURL, other, ar.Nonce)
	if !IsInvalidGrant(err) {
		t.Fatalf("err = %v, want invalid_grant", err)
	}
	var te *TokenError
	if !errors.As(err, &te) || te.StatusCode != http.StatusBadRequest {
		t.Errorf("TokenError = %+v", te)
	}
	assertNoSecrets(t, err, code, ar.PKCEVerifier, other)
}

func TestExchangeRequiresInputs(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	p := h.provider()
	for _, args := range [][4]string{
		{"", h.redirect, "v", "n"}, {"c", "", "v", "n"}, {"c", h.redirect, "", "n"}, {"c", h.redirect, "v", ""},
	} {
		if _, err := p.Exchange(context.Background(), args[0], args[1], args[2], args[3]); err == nil {
			t.Errorf("Exchange%q accepted", args)
		}
	}
	if h.op.Counters().Token != 0 {
		t.Error("incomplete exchanges reached the token endpoint")
	}
}

func TestJWKSRefetchOnUnknownKid(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	p := h.provider()
	h.signIn(p)
	h.signIn(p)
	if n := h.op.Counters().JWKS; n != 1 {
		t.Fatalf("JWKS fetched %d times for one key", n)
	}
	if _, err := h.op.RotateKey(); err != nil {
		t.Fatal(err)
	}
	h.signIn(p)
	if n := h.op.Counters().JWKS; n != 2 {
		t.Fatalf("JWKS fetched %d times after rotation, want 2", n)
	}
}

func TestRefresh(t *testing.T) {
	h := newHarness(t, harnessOpts{prefix: "/dev/oidc", op: func(c *devprovider.Config) { c.RefreshTokens = true }})
	p := h.provider()
	ctx := context.Background()
	t1 := h.signIn(p, "offline_access")
	if t1.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	t2, err := p.Refresh(ctx, t1)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if t2.RefreshToken == "" || t2.RefreshToken == t1.RefreshToken {
		t.Error("refresh token not rotated")
	}
	if t2.AccessToken == t1.AccessToken || t2.IDToken == t1.IDToken {
		t.Error("no new access or ID token")
	}
	if !profilesEqual(t2.Profile, t1.Profile) || t2.Claims["tenant"] != "t-1" {
		t.Errorf("claims lost on refresh: %+v", t2.Profile)
	}
	if _, hasNonce := claimsOf(t, t2.IDToken)["nonce"]; hasNonce {
		t.Log("refreshed ID token carries a nonce")
	}
	if c := h.op.Counters(); c.Refresh != 1 || c.Discovery != 1 {
		t.Errorf("OP counters = %+v", c)
	}
	t3, err := p.Refresh(ctx, t2)
	if err != nil {
		t.Fatalf("second Refresh: %v", err)
	}
	// The rotated-away token is dead (and replaying it kills the chain).
	if _, err := p.Refresh(ctx, t1); !IsInvalidGrant(err) {
		t.Fatalf("replayed refresh token: %v", err)
	} else {
		assertNoSecrets(t, err, t1.RefreshToken)
	}
	if _, err := p.Refresh(ctx, t3); !IsInvalidGrant(err) {
		t.Fatalf("refresh after replay: %v", err)
	}
}

func TestRefreshWithoutNewIDToken(t *testing.T) {
	h := newHarness(t, harnessOpts{op: func(c *devprovider.Config) { c.RefreshTokens = true }})
	p := h.provider()
	t1 := h.signIn(p, "offline_access")
	h.hook("/oauth/token", func(r *http.Request, b map[string]any) {
		if r.PostForm.Get("grant_type") == "refresh_token" {
			delete(b, "id_token")
			delete(b, "scope")
		}
	})
	t2, err := p.Refresh(context.Background(), t1)
	if err != nil {
		t.Fatal(err)
	}
	if t2.IDToken != t1.IDToken || !t2.IDTokenExpiry.Equal(t1.IDTokenExpiry) || t2.Claims["sub"] != "u-alice" || t2.Scope != t1.Scope {
		t.Errorf("old ID token not kept: %v vs %v", t2, t1)
	}
	if t2.AccessToken == t1.AccessToken || t2.RefreshToken == t1.RefreshToken {
		t.Error("new access/refresh token not taken")
	}
}

func TestRefreshRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c map[string]any)
	}{
		{"another subject", func(c map[string]any) { c["sub"] = "u-bob" }},
		{"another audience", func(c map[string]any) { c["aud"] = []string{testClientID, "other"} }},
		{"another auth_time", func(c map[string]any) { c["auth_time"] = time.Now().Add(time.Hour).Unix() }},
		{"expired", func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{op: func(c *devprovider.Config) { c.RefreshTokens = true }})
			p := h.provider()
			t1 := h.signIn(p, "offline_access")
			h.hook("/oauth/token", func(r *http.Request, b map[string]any) {
				if r.PostForm.Get("grant_type") == "refresh_token" {
					h.resign(b, tc.edit)
				}
			})
			t2, err := p.Refresh(context.Background(), t1)
			if !errors.Is(err, ErrInvalidIDToken) {
				t.Fatalf("Refresh = %v, %v; want ErrInvalidIDToken", t2, err)
			}
		})
	}
}

func TestNoRefreshToken(t *testing.T) {
	h := newHarness(t, harnessOpts{op: func(c *devprovider.Config) { c.RefreshTokens = true }})
	p := h.provider()
	tok := h.signIn(p) // no offline_access
	if tok.RefreshToken != "" {
		t.Fatal("refresh token without offline_access")
	}
	for _, in := range []*Tokens{tok, nil} {
		if _, err := p.Refresh(context.Background(), in); !errors.Is(err, ErrNoRefreshToken) {
			t.Errorf("Refresh = %v, want ErrNoRefreshToken", err)
		}
	}
	if h.op.Counters().Refresh != 0 {
		t.Error("refresh attempted without a refresh token")
	}
}

// paletteToken is shaped like SpectroCloud's HS256 session token.
func paletteToken(t *testing.T, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("palette-hmac-key-0123456789abcdef")},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

func TestPaletteSessionToken(t *testing.T) {
	palette := paletteToken(t, map[string]any{"sub": "u-alice", "tenantUid": "t1", "exp": time.Now().Add(time.Hour).Unix()})
	keycloakLike := paletteToken(t, map[string]any{"typ": "Refresh", "sub": "u-alice"})
	for _, tc := range []struct {
		name        string
		refresh     string
		disable     bool
		wantPalette bool
	}{
		{"HS256 session token", palette, false, true},
		{"HS256 refresh token typ Refresh", keycloakLike, false, false},
		{"detection disabled", palette, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			p := h.provider(func(c *Config) { c.DisablePaletteSessionTokenDetection = tc.disable })
			h.hook("/oauth/token", func(_ *http.Request, b map[string]any) { b["refresh_token"] = tc.refresh })
			tok := h.signIn(p)
			if tc.wantPalette {
				if tok.PaletteSessionToken != tc.refresh || tok.RefreshToken != "" {
					t.Fatalf("palette = %v, refresh = %v", tok.PaletteSessionToken != "", tok.RefreshToken != "")
				}
				if tok.IDToken == tok.PaletteSessionToken || tok.AccessToken == tok.PaletteSessionToken {
					t.Fatal("the Palette session token is used as another token")
				}
				if _, err := p.Refresh(context.Background(), tok); !errors.Is(err, ErrNoRefreshToken) {
					t.Errorf("Refresh = %v, want ErrNoRefreshToken", err)
				}
				if s := tok.String(); strings.Contains(s, tc.refresh) {
					t.Error("String leaks the session token")
				}
				return
			}
			if tok.RefreshToken != tc.refresh || tok.PaletteSessionToken != "" {
				t.Fatalf("refresh = %v, palette = %v", tok.RefreshToken != "", tok.PaletteSessionToken != "")
			}
		})
	}
}

func TestPaletteSessionTokenSurvivesRefresh(t *testing.T) {
	h := newHarness(t, harnessOpts{op: func(c *devprovider.Config) { c.RefreshTokens = true }})
	p := h.provider()
	t1 := h.signIn(p, "offline_access")
	t1.PaletteSessionToken = paletteToken(t, map[string]any{"sub": "u-alice"})
	t2, err := p.Refresh(context.Background(), t1)
	if err != nil {
		t.Fatal(err)
	}
	if t2.PaletteSessionToken != t1.PaletteSessionToken {
		t.Error("Palette session token dropped by a refresh that returned none")
	}
}

func TestBackChannelRedirectNotFollowed(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, h.issuer+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()

	t.Run("discovery", func(t *testing.T) {
		cfg := h.config()
		cfg.Issuer = redirector.URL
		_, err := New(context.Background(), cfg)
		if !errors.Is(err, ErrRedirectNotFollowed) {
			t.Fatalf("err = %v, want ErrRedirectNotFollowed", err)
		}
		if h.op.Counters().Discovery != 0 {
			t.Error("the redirect was followed")
		}
	})
	t.Run("token endpoint", func(t *testing.T) {
		p := h.provider(func(c *Config) {
			c.AuthorizationURL, c.TokenURL, c.JWKSURL = h.issuer+"/authorize", redirector.URL+"/oauth/token", h.issuer+"/keys"
		})
		ar := h.authRequest()
		code := h.code(p, ar)
		_, err := p.Exchange(context.Background(), code, ar.RedirectURL, ar.PKCEVerifier, ar.Nonce)
		if !errors.Is(err, ErrRedirectNotFollowed) {
			t.Fatalf("err = %v, want ErrRedirectNotFollowed", err)
		}
		if h.op.Counters().Token != 0 {
			t.Error("the redirect was followed")
		}
		assertNoSecrets(t, err, code, ar.PKCEVerifier)
	})
}

func TestOversizedResponses(t *testing.T) {
	big := `{"issuer":"x","pad":"` + strings.Repeat("a", 2<<20) + `"}`
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"announced length", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(big))
		}},
		{"chunked", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			for i := 0; i < len(big); i += 64 << 10 {
				_, _ = w.Write([]byte(big[i:min(i+64<<10, len(big))]))
				w.(http.Flusher).Flush()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			_, err := New(context.Background(), Config{
				Issuer: srv.URL, ClientID: "c", ClientSecret: "s", AllowInsecureIssuer: true,
			})
			if !errors.Is(err, ErrResponseTooLarge) {
				t.Fatalf("err = %v, want ErrResponseTooLarge", err)
			}
		})
	}
	t.Run("at the limit is fine", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		p := h.provider(func(c *Config) { c.MaxResponseBytes = 64 << 10 })
		h.signIn(p)
	})
}

func TestBackChannelTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	_, err := New(context.Background(), Config{
		Issuer: srv.URL, ClientID: "c", ClientSecret: "s", AllowInsecureIssuer: true, Timeout: 200 * time.Millisecond,
	})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
}

// TestBackChannelTimeoutCoversBody: the timeout bounds reading the body
// too, as http.Client.Timeout does, and is a DeadlineExceeded (Unavailable).
func TestBackChannelTimeoutCoversBody(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = w.Write([]byte(`{"a":`))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := NewBackChannelClient(nil, 200*time.Millisecond, 0)
	start := time.Now()
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatalf("the headers came at once, yet: %v", err)
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("reading a stalled body: err = %v after %v", err, time.Since(start))
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want one matching context.DeadlineExceeded", err)
	}
}

// TestBackChannelStartsNoWatchers: the back-channel timeout rides on the
// request's context, so net/http starts no goroutines per request to watch
// a timer and a legacy Request.Cancel (as it does for Client.Timeout over a
// transport it does not know), which a sign-in would pay in thread
// wake-ups.
func TestBackChannelStartsNoWatchers(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	defer srv.Close()
	c := NewBackChannelClient(nil, time.Minute, 0)
	done := make(chan error, 1)
	go func() {
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-entered
	var dump bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&dump, 2)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, watcher := range []string{"net/http.setRequestCancel", "net/http.awaitLegacyCancel"} {
		if strings.Contains(dump.String(), watcher) {
			t.Errorf("a request in flight runs %s", watcher)
		}
	}
}

func TestClientSecretPost(t *testing.T) {
	h := newHarness(t, harnessOpts{op: func(c *devprovider.Config) { c.RefreshTokens = true }})
	post := func(c *Config) {
		c.ClientID, c.ClientSecret, c.TokenEndpointAuthMethod = "poster", "poster-secret", AuthMethodPost
	}
	p := h.provider(post)
	tok := h.signIn(p, "offline_access")
	if _, err := p.Refresh(context.Background(), tok); err != nil {
		t.Fatalf("refresh with client_secret_post: %v", err)
	}
	// The OP refuses client_secret_basic for this client.
	basic := h.provider(post, func(c *Config) { c.TokenEndpointAuthMethod = AuthMethodBasic })
	_, err := h.trySignIn(basic)
	var te *TokenError
	if !errors.As(err, &te) || te.Code != "invalid_client" {
		t.Fatalf("basic auth for a post client: %v", err)
	}
	// The daemon's own misconfiguration, not a verdict on a user's tokens.
	if !ClientRejected(err) || IsInvalidGrant(err) {
		t.Errorf("invalid_client: ClientRejected = %v, IsInvalidGrant = %v; want true, false", ClientRejected(err), IsInvalidGrant(err))
	}
	assertNoSecrets(t, err, "poster-secret")
}

func TestRevoke(t *testing.T) {
	for _, method := range []string{AuthMethodBasic, AuthMethodPost} {
		t.Run(method, func(t *testing.T) {
			h := newHarness(t, harnessOpts{op: func(c *devprovider.Config) { c.RefreshTokens = true }})
			p := h.provider(func(c *Config) {
				if method == AuthMethodPost {
					c.ClientID, c.ClientSecret, c.TokenEndpointAuthMethod = "poster", "poster-secret", AuthMethodPost
				}
			})
			tok := h.signIn(p, "offline_access")
			if err := p.Revoke(context.Background(), tok); err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			if n := h.op.Counters().Revocation; n != 2 {
				t.Errorf("revocation requests = %d, want 2", n)
			}
			if _, err := p.Refresh(context.Background(), tok); !IsInvalidGrant(err) {
				t.Errorf("refresh after revocation: %v", err)
			}
			if err := p.Revoke(context.Background(), nil); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestRFC9207(t *testing.T) {
	for _, tc := range []struct {
		name              string
		advertised        bool
		require           bool
		missingOK, selfOK bool
	}{
		{"advertised", true, false, false, true},
		{"not advertised", false, false, true, true},
		{"not advertised but required by config", false, true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{prefix: "/dev/oidc", op: func(c *devprovider.Config) { c.AuthorizationResponseIssuer = tc.advertised }})
			p := h.provider(func(c *Config) { c.RequireAuthorizationResponseIssuer = tc.require })
			if tc.advertised {
				// The whole flow, with the OP's real iss parameter.
				h.signIn(p)
			}
			check := func(iss string, ok bool) {
				err := p.CheckAuthorizationResponseIssuer(iss)
				if (err == nil) != ok {
					t.Errorf("CheckAuthorizationResponseIssuer(%q) = %v, want ok=%v", iss, err, ok)
				}
				if err != nil && !errors.Is(err, ErrIssuerMismatch) {
					t.Errorf("error %v is not ErrIssuerMismatch", err)
				}
			}
			check("", tc.missingOK)
			check(h.issuer, tc.selfOK)
			check(h.issuer+"/", false)
			check("https://evil.example/dev/oidc", false)
		})
	}
}

func TestEndpointRules(t *testing.T) {
	base := func() Config {
		return Config{
			Issuer: "https://palette.example/v1/oidc/tenant/t1", ClientID: "c", ClientSecret: "s",
			AuthorizationURL: "https://palette.example/v1/oidc/tenant/t1/auth",
			TokenURL:         "https://palette.example/v1/oidc/tenant/t1/token",
			JWKSURL:          "https://palette.example/v1/oidc/tenant/t1/keys",
		}
	}
	if _, err := New(context.Background(), base()); err != nil {
		t.Fatalf("manual https config: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"http issuer":                        func(c *Config) { c.Issuer = "http://palette.example/x" },
		"http non-loopback even if insecure": func(c *Config) { c.Issuer = "http://palette.example/x"; c.AllowInsecureIssuer = true },
		"http loopback without insecure":     func(c *Config) { c.Issuer = "http://127.0.0.1:7007/x" },
		"http token URL":                     func(c *Config) { c.TokenURL = "http://palette.example/token" },
		"http lookalike loopback host":       func(c *Config) { c.TokenURL = "http://localhost.evil.example/t"; c.AllowInsecureIssuer = true },
		"credentials in URL":                 func(c *Config) { c.JWKSURL = "https://u:p@palette.example/keys" },
		"issuer with query":                  func(c *Config) { c.Issuer += "?a=b" },
		"not absolute":                       func(c *Config) { c.Issuer = "/v1/oidc" },
		"partial manual endpoints":           func(c *Config) { c.JWKSURL = "" },
		"no client id":                       func(c *Config) { c.ClientID = "" },
		"no client secret":                   func(c *Config) { c.ClientSecret = "" },
		"unknown auth method":                func(c *Config) { c.TokenEndpointAuthMethod = "private_key_jwt" },
		"alg none configured":                func(c *Config) { c.SigningAlgorithms = []string{"none"} },
		"alg HS256 configured":               func(c *Config) { c.SigningAlgorithms = []string{"RS256", "HS256"} },
	} {
		t.Run(name, func(t *testing.T) {
			c := base()
			mutate(&c)
			if _, err := New(context.Background(), c); err == nil {
				t.Fatal("accepted")
			} else {
				assertNoSecrets(t, err)
			}
		})
	}
	ok := base()
	ok.Issuer, ok.AuthorizationURL, ok.TokenURL, ok.JWKSURL = "http://[::1]:1/i", "http://localhost:1/a", "http://127.0.0.2:1/t", "http://127.0.0.1:1/k"
	ok.AllowInsecureIssuer = true
	if _, err := New(context.Background(), ok); err != nil {
		t.Errorf("loopback http with AllowInsecureIssuer: %v", err)
	}
}

func TestDiscoveredEndpointRules(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.hook("/.well-known/openid-configuration", func(_ *http.Request, b map[string]any) {
		b["token_endpoint"] = "http://evil.example/token"
	})
	if _, err := New(context.Background(), h.config()); err == nil || !strings.Contains(err.Error(), "token_endpoint") {
		t.Fatalf("http non-loopback token endpoint from discovery: %v", err)
	}
}

func TestSigningAlgorithms(t *testing.T) {
	for _, tc := range []struct {
		name      string
		adv       any // nil: remove the field
		want      []string
		newFails  bool
		flowFails bool
	}{
		{"advertised RS256", []string{"RS256"}, []string{"RS256"}, false, false},
		{"none and HS256 dropped", []string{"none", "HS256", "RS256"}, []string{"RS256"}, false, false},
		{"not advertised means RS256", nil, []string{"RS256"}, false, false},
		{"only HMAC advertised", []string{"HS256", "none"}, nil, true, false},
		{"only ES256 advertised: RS256 token refused", []string{"ES256"}, []string{"ES256"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			h.hook("/.well-known/openid-configuration", func(_ *http.Request, b map[string]any) {
				if tc.adv == nil {
					delete(b, "id_token_signing_alg_values_supported")
				} else {
					b["id_token_signing_alg_values_supported"] = tc.adv
				}
			})
			p, err := New(context.Background(), h.config())
			if tc.newFails {
				if err == nil {
					t.Fatalf("New accepted, algs %v", p.algs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.algs, tc.want) {
				t.Errorf("algs = %v, want %v", p.algs, tc.want)
			}
			_, err = h.trySignIn(p)
			if tc.flowFails != (err != nil) {
				t.Errorf("sign-in err = %v, want failure %v", err, tc.flowFails)
			}
		})
	}
}

func TestUserinfo(t *testing.T) {
	for _, tc := range []struct {
		name      string
		disable   bool
		sub       string // userinfo sub override
		wantEmail string
		wantCalls int64
	}{
		{"merged when the ID token lacks email", false, "", "alice@example.com", 1},
		{"disabled", true, "", "", 0},
		{"other subject ignored", false, "u-mallory", "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{op: func(c *devprovider.Config) { c.MinimalIDToken = true }})
			if tc.sub != "" {
				h.hook("/userinfo", func(_ *http.Request, b map[string]any) { b["sub"] = tc.sub })
			}
			p := h.provider(func(c *Config) { c.DisableUserinfo = tc.disable })
			tok := h.signIn(p)
			if _, inIDToken := claimsOf(t, tok.IDToken)["email"]; inIDToken {
				t.Fatal("test setup: email is in the ID token")
			}
			if tok.Profile.Email != tc.wantEmail {
				t.Errorf("email = %q, want %q", tok.Profile.Email, tc.wantEmail)
			}
			if tok.Claims["sub"] != "u-alice" || tok.Claims["iss"] != h.issuer {
				t.Errorf("userinfo overrode protected claims: %v", tok.Claims)
			}
			if n := h.op.Counters().Userinfo; n != tc.wantCalls {
				t.Errorf("userinfo calls = %d, want %d", n, tc.wantCalls)
			}
		})
	}
}

// TestClaimsAreIDTokens: Exchange vouches that Claims are the ID token's
// own (what a session then need not store twice) only while that holds.
func TestClaimsAreIDTokens(t *testing.T) {
	plain := newHarness(t, harnessOpts{})
	minimal := newHarness(t, harnessOpts{op: func(c *devprovider.Config) { c.MinimalIDToken = true }})
	for _, tc := range []struct {
		name   string
		h      *harness
		change func(*Tokens)
		want   bool
	}{
		{"as verified", plain, func(*Tokens) {}, true},
		{"userinfo claims merged in", minimal, func(*Tokens) {}, false},
		{"claims replaced by a copy", plain, func(tok *Tokens) { tok.Claims = maps.Clone(tok.Claims) }, false},
		{"a claim added", plain, func(tok *Tokens) { tok.Claims["extra"] = "x" }, false},
		{"another ID token", plain, func(tok *Tokens) { tok.IDToken += "x" }, false},
		{"decoded from JSON", plain, func(tok *Tokens) {
			b, err := json.Marshal(tok)
			if err != nil {
				t.Fatal(err)
			}
			*tok = Tokens{}
			if err := json.Unmarshal(b, tok); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"built elsewhere", plain, func(tok *Tokens) { *tok = Tokens{IDToken: tok.IDToken, Claims: tok.Claims} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.h.signIn(tc.h.provider())
			if !tc.want && tc.h == minimal && tok.Profile.Email == "" {
				t.Fatal("test setup: userinfo gave no email")
			}
			tc.change(tok)
			if got := tok.ClaimsAreIDTokens(); got != tc.want {
				t.Fatalf("ClaimsAreIDTokens = %v, want %v", got, tc.want)
			}
			if tc.want {
				parts := strings.Split(tok.IDToken, ".")
				payload, err := base64.RawURLEncoding.DecodeString(parts[1])
				if err != nil {
					t.Fatal(err)
				}
				var fromToken map[string]any
				if err := json.Unmarshal(payload, &fromToken); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(fromToken, tok.Claims) {
					t.Errorf("vouched for claims %v, the ID token holds %v", tok.Claims, fromToken)
				}
			}
		})
	}
}

func TestTokensStringRedacts(t *testing.T) {
	h := newHarness(t, harnessOpts{op: func(c *devprovider.Config) { c.RefreshTokens = true }})
	tok := h.signIn(h.provider(), "offline_access")
	tok.PaletteSessionToken = "palette-session-value"
	out := fmt.Sprintf("%v %+v %s %#v %v", tok, tok, *tok, *tok, []any{tok})
	for _, secret := range []string{tok.IDToken, tok.AccessToken, tok.RefreshToken, tok.PaletteSessionToken} {
		if strings.Contains(out, secret) {
			t.Fatalf("formatted Tokens leak a token: %s", out)
		}
	}
	if !strings.Contains(out, "u-alice") {
		t.Errorf("String lost the subject: %s", out)
	}
	// JSON (for sealed storage) round-trips.
	b, err := json.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	var back Tokens
	if err := json.Unmarshal(b, &back); err != nil || back.RefreshToken != tok.RefreshToken || !back.IDTokenExpiry.Equal(tok.IDTokenExpiry) || back.Profile.Email != tok.Profile.Email {
		t.Errorf("JSON round trip: %v %v", err, back)
	}
}

func TestRefreshAfterJSONRoundTrip(t *testing.T) {
	h := newHarness(t, harnessOpts{op: func(c *devprovider.Config) { c.RefreshTokens = true }})
	p := h.provider()
	tok := h.signIn(p, "offline_access")
	b, _ := json.Marshal(tok)
	var stored Tokens
	if err := json.Unmarshal(b, &stored); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Refresh(context.Background(), &stored); err != nil {
		t.Fatalf("refresh of a stored session: %v", err)
	}
}

func BenchmarkVerifyIDToken(b *testing.B) {
	h := newHarness(b, harnessOpts{})
	p := h.provider()
	ar := h.authRequest()
	tok, err := p.Exchange(context.Background(), h.code(p, ar), ar.RedirectURL, ar.PKCEVerifier, ar.Nonce)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	chk := idTokenCheck{nonce: ar.Nonce, accessToken: tok.AccessToken}
	jwks := h.op.Counters().JWKS
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := p.verifyIDToken(ctx, tok.IDToken, chk); err != nil {
			b.Fatal(err)
		}
	}
	if h.op.Counters().JWKS != jwks {
		b.Fatal("verification fetched the JWKS again")
	}
}

func TestRefreshAnchorsWithoutStoredClaims(t *testing.T) {
	h := newHarness(t, harnessOpts{op: func(c *devprovider.Config) { c.RefreshTokens = true }})
	p := h.provider()
	t1 := h.signIn(p, "offline_access")
	t1.Claims = nil // a caller that kept only the profile
	t2, err := p.Refresh(context.Background(), t1)
	if err != nil {
		t.Fatalf("refresh anchored on Profile.Subject: %v", err)
	}
	t2.Claims, t2.Profile.Subject = nil, ""
	if _, err := p.Refresh(context.Background(), t2); !errors.Is(err, ErrInvalidIDToken) {
		t.Fatalf("refresh of a session without any subject: %v", err)
	}
}

// failingTransport fails the requests whose path ends with suffix while on.
type failingTransport struct {
	base   http.RoundTripper
	suffix string
	on     *atomic.Bool
	status int // 0: a transport error; else this status
}

func (f failingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.on.Load() && strings.HasSuffix(r.URL.Path, f.suffix) {
		if f.status == 0 {
			return nil, errors.New("connection refused (test)")
		}
		return &http.Response{StatusCode: f.status, Status: http.StatusText(f.status), Body: io.NopCloser(strings.NewReader("down")), Header: http.Header{}, Request: r}, nil
	}
	return f.base.RoundTrip(r)
}

// A JWKS outage while checking a token signed with a new key is not a
// verdict on the token: it must not look like a refused ID token (which
// ends sessions), but like a provider that is unavailable.
func TestJWKSOutageIsNotARefusal(t *testing.T) {
	for _, status := range []int{0, http.StatusServiceUnavailable} {
		t.Run(fmt.Sprintf("status %d", status), func(t *testing.T) {
			h := newHarness(t, harnessOpts{op: func(c *devprovider.Config) { c.RefreshTokens = true }})
			var on atomic.Bool
			p := h.provider(func(c *Config) {
				c.HTTPClient = &http.Client{Transport: failingTransport{base: http.DefaultTransport, suffix: "/keys", on: &on, status: status}}
			})
			t1 := h.signIn(p, "offline_access")
			if _, err := h.op.RotateKey(); err != nil {
				t.Fatal(err)
			}
			on.Store(true)
			_, err := p.Refresh(context.Background(), t1)
			if !errors.Is(err, ErrKeysUnavailable) || errors.Is(err, ErrInvalidIDToken) {
				t.Fatalf("Refresh with the JWKS down: %v, want ErrKeysUnavailable and not ErrInvalidIDToken", err)
			}
			on.Store(false)
		})
	}
}

// CheckUserinfo revalidates a session without a refresh grant: good for a
// live access token, a refusal (401 or 403) for a revoked one, ErrNoUserinfo when
// the provider has no userinfo.
func TestCheckUserinfo(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	p := h.provider()
	tok := h.signIn(p)
	if err := p.CheckUserinfo(context.Background(), tok); err != nil {
		t.Fatalf("live access token: %v", err)
	}
	if err := p.Revoke(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	err := p.CheckUserinfo(context.Background(), tok)
	var te *TokenError
	if !errors.As(err, &te) || (te.StatusCode != http.StatusUnauthorized && te.StatusCode != http.StatusForbidden) || Unavailable(err) {
		t.Fatalf("revoked access token: %v, want a 401 or 403 refusal", err)
	}
	off := h.provider(func(c *Config) { c.DisableUserinfo = true })
	if err := off.CheckUserinfo(context.Background(), tok); !errors.Is(err, ErrNoUserinfo) {
		t.Fatalf("userinfo disabled: %v", err)
	}
}
