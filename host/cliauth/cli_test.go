package cliauth_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/cliauth"
	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/authtest"
	"github.com/spectroauth/spectroauth/host/internal/cliwire"
	"github.com/spectroauth/spectroauth/host/internal/ratelimit"
	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/host/session"
)

func TestCLISignIn(t *testing.T) {
	f := authtest.NewFixture(t, authtest.Options{RefreshTokens: true})
	b := authtest.NewBrowser(t)
	l := authtest.NewLoopback(t)
	p := authtest.NewPKCE("a")
	q := authtest.CLISignIn(t, f, b, l, "cli-state-1", p)
	if q.Get("state") != "cli-state-1" || q.Get("code") == "" || q.Get("error") != "" {
		t.Fatalf("loopback got %v", q)
	}
	u, _ := url.Parse(f.Srv.URL)
	for _, c := range b.Client.Jar.Cookies(&url.URL{Scheme: "http", Host: u.Host, Path: "/api/auth/spectrocloud/refresh"}) {
		if strings.HasPrefix(c.Name, "spectrocloud-refresh-token") {
			t.Errorf("a command-line sign-in signed the browser in too (%s)", c.Name)
		}
	}

	redeem := url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "code_verifier": {p.Verifier}, "redirect_uri": {l.RedirectURI()}}
	for name, form := range map[string]url.Values{
		"wrong verifier":     {"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "code_verifier": {authtest.NewPKCE("b").Verifier}, "redirect_uri": {l.RedirectURI()}},
		"wrong redirect_uri": {"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "code_verifier": {p.Verifier}, "redirect_uri": {l.Srv.URL + "/other"}},
		"forged code":        {"grant_type": {"authorization_code"}, "code": {q.Get("code")[:20] + "AAAA" + q.Get("code")[24:]}, "code_verifier": {p.Verifier}, "redirect_uri": {l.RedirectURI()}},
	} {
		if status, body := authtest.TokenRequest(t, f, form); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
	status, tok := authtest.TokenRequest(t, f, redeem)
	if status != http.StatusOK {
		t.Fatalf("redeeming the code: %d %v", status, tok)
	}
	access, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	if tok["token_type"] != "Bearer" || tok["user"] != "user:default/alice" || tok["env"] != "development" ||
		tok["expires_in"].(float64) <= 0 || tok["expires_in"].(float64) > 15*60 || !strings.HasPrefix(rt, "scli1.") {
		t.Errorf("token response = %v", tok)
	}
	if status, body := authtest.TokenRequest(t, f, redeem); status != http.StatusBadRequest || !strings.Contains(body["error_description"].(string), "already used") {
		t.Errorf("a code redeemed twice: %d %v", status, body)
	}
	// The access token is the command line's own, for the broker only.
	if h, c := authtest.JWTHeader(t, access), authtest.JWTClaims(t, access); h["typ"] != identity.TypeCLIAccess ||
		c["aud"] != f.URL("/api/auth/spectrocloud/kubernetes") || c["exp"].(float64)-c["iat"].(float64) > 15*60 {
		t.Errorf("access token header %v claims %v", h, c)
	}

	ctx := context.Background()
	us, err := f.CLI.Session(ctx, access)
	if err != nil || us.Session.UserEntityRef != "user:default/alice" || us.Tokens.IDToken == "" || us.Session.Kind != session.KindCLI {
		t.Fatalf("CLISession(access_token) = %v, %v", us, err)
	}
	if _, err := f.Server.UserSession(ctx, access); !errors.Is(err, server.ErrUnauthenticated) {
		t.Errorf("UserSession(command-line token) = %v, want ErrUnauthenticated", err)
	}

	// The refresh token rotates on every use.
	f.Advance(40 * time.Minute)
	status, again := authtest.TokenRequest(t, f, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if status != http.StatusOK || again["access_token"] == access || again["refresh_token"] == rt || again["refresh_token"] == nil {
		t.Fatalf("refresh grant: %d %v", status, again)
	}
	rt2 := again["refresh_token"].(string)
	if _, err := f.CLI.Session(ctx, again["access_token"].(string)); err != nil {
		t.Errorf("CLISession(refreshed token): %v", err)
	}
	secret := strings.Split(rt2, ".")[1]
	for name, form := range map[string]url.Values{
		"garbage":       {"grant_type": {"refresh_token"}, "refresh_token": {"nope"}},
		"bare secret":   {"grant_type": {"refresh_token"}, "refresh_token": {secret}},
		"forged MAC":    {"grant_type": {"refresh_token"}, "refresh_token": {"scli1." + secret + ".2." + strings.Repeat("A", 43)}},
		"unknown":       {"grant_type": {"refresh_token"}, "refresh_token": {"scli1." + strings.Repeat("A", 43) + ".1." + strings.Repeat("A", 43)}},
		"leading zeros": {"grant_type": {"refresh_token"}, "refresh_token": {strings.Replace(rt2, ".2.", ".02.", 1)}},
	} {
		if status, body := authtest.TokenRequest(t, f, form); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
	if status, body := authtest.TokenRequest(t, f, url.Values{"grant_type": {"password"}}); status != http.StatusBadRequest || body["error"] != "unsupported_grant_type" {
		t.Errorf("password grant: %d %v", status, body)
	}
	// Made-up tokens did not end the session.
	status, again = authtest.TokenRequest(t, f, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}})
	if status != http.StatusOK {
		t.Fatalf("refresh after refusals: %d %v", status, again)
	}
	rt3, access3 := again["refresh_token"].(string), again["access_token"].(string)

	// Sign out from the command line ends the session everywhere.
	res, err := http.PostForm(f.URL("/api/auth/spectrocloud/cli/logout"), url.Values{"refresh_token": {rt3}})
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("logout: %v %v", res, err)
	}
	res.Body.Close()
	if status, body := authtest.TokenRequest(t, f, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt3}}); status != http.StatusBadRequest || !strings.Contains(body["error_description"].(string), "sign in again") {
		t.Errorf("refresh after logout: %d %v", status, body)
	}
	if _, err := f.CLI.Session(ctx, access3); !errors.Is(err, server.ErrSessionEnded) {
		t.Errorf("CLISession after logout = %v, want ErrSessionEnded", err)
	}
}

// A spent refresh token presented again ends the session (RFC 9700 section
// 4.14.2): its holder and whoever copied it both have to sign in again.
func TestCLIRefreshTokenReuseEndsSession(t *testing.T) {
	f := authtest.NewFixture(t, authtest.Options{RefreshTokens: true})
	l := authtest.NewLoopback(t)
	p := authtest.NewPKCE("r")
	q := authtest.CLISignIn(t, f, authtest.NewBrowser(t), l, "s", p)
	_, tok := authtest.TokenRequest(t, f, url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "code_verifier": {p.Verifier}, "redirect_uri": {l.RedirectURI()}})
	rt1 := tok["refresh_token"].(string)
	status, tok2 := authtest.TokenRequest(t, f, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}})
	if status != http.StatusOK {
		t.Fatalf("first refresh: %d %v", status, tok2)
	}
	rt2, access2 := tok2["refresh_token"].(string), tok2["access_token"].(string)
	if status, body := authtest.TokenRequest(t, f, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}}); status != http.StatusBadRequest ||
		body["error"] != "invalid_grant" || !strings.Contains(body["error_description"].(string), "already used") {
		t.Fatalf("spent refresh token: %d %v", status, body)
	}
	if status, body := authtest.TokenRequest(t, f, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}}); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("the newest refresh token after reuse: %d %v", status, body)
	}
	if _, err := f.CLI.Session(context.Background(), access2); !errors.Is(err, server.ErrSessionEnded) {
		t.Errorf("CLISession after reuse = %v, want ErrSessionEnded", err)
	}
}

// A browser session's handle is never a command-line refresh token, and a
// command-line session is never reachable with the refresh cookie.
func TestCLIAndBrowserSessionsDoNotMix(t *testing.T) {
	f := authtest.NewFixture(t, authtest.Options{RefreshTokens: true})
	b := authtest.NewBrowser(t)
	resp := authtest.SignIn(t, f, b)
	backstageToken := resp["backstageIdentity"].(map[string]any)["token"].(string)
	u, _ := url.Parse(f.Srv.URL)
	refreshURL := &url.URL{Scheme: "http", Host: u.Host, Path: "/api/auth/spectrocloud/refresh"}
	var handle string
	for _, c := range b.Client.Jar.Cookies(refreshURL) {
		if c.Name == "spectrocloud-refresh-token" {
			handle = c.Value
		}
	}
	if handle == "" {
		t.Fatal("no refresh cookie after the browser sign-in")
	}
	if status, body := authtest.TokenRequest(t, f, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {handle}}); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("browser handle as a CLI refresh token: %d %v", status, body)
	}
	res, err := http.PostForm(f.URL("/api/auth/spectrocloud/cli/logout"), url.Values{"refresh_token": {handle}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("CLI logout with a browser handle: %d", res.StatusCode)
	}
	if r := authtest.Refresh(b, f); r.StatusCode != http.StatusOK {
		t.Errorf("the browser session did not survive: %d", r.StatusCode)
	}
	if _, err := f.CLI.Session(context.Background(), backstageToken); !errors.Is(err, server.ErrUnauthenticated) {
		t.Errorf("CLISession(Backstage token) = %v, want ErrUnauthenticated", err)
	}

	l := authtest.NewLoopback(t)
	p := authtest.NewPKCE("m")
	q := authtest.CLISignIn(t, f, authtest.NewBrowser(t), l, "s", p)
	_, tok := authtest.TokenRequest(t, f, url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "code_verifier": {p.Verifier}, "redirect_uri": {l.RedirectURI()}})
	rt := tok["refresh_token"].(string)
	for _, v := range []string{rt, strings.Split(rt, ".")[1]} {
		other := authtest.NewBrowser(t)
		other.Client.Jar.SetCookies(refreshURL, []*http.Cookie{{Name: "spectrocloud-refresh-token", Value: v, Path: "/api/auth/spectrocloud"}})
		if r := authtest.Refresh(other, f); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("refresh cookie %.12s…: %d, want 401", v, r.StatusCode)
		}
	}
}

func TestCLICodeExpires(t *testing.T) {
	f := authtest.NewFixture(t, authtest.Options{})
	l := authtest.NewLoopback(t)
	p := authtest.NewPKCE("c")
	q := authtest.CLISignIn(t, f, authtest.NewBrowser(t), l, "s", p)
	f.Advance(cliauth.CLICodeLifetime + time.Second)
	status, body := authtest.TokenRequest(t, f, url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "code_verifier": {p.Verifier}, "redirect_uri": {l.RedirectURI()}})
	if status != http.StatusBadRequest || !strings.Contains(body["error_description"].(string), "expired") {
		t.Errorf("an expired code: %d %v", status, body)
	}
}

func TestCLISignInRefusals(t *testing.T) {
	f := authtest.NewFixture(t, authtest.Options{})
	l := authtest.NewLoopback(t)
	p := authtest.NewPKCE("d")
	for name, tc := range map[string]struct {
		redirect, state string
		p               authtest.PKCE
		method          string
		want            string
	}{
		"https redirect":    {strings.Replace(l.RedirectURI(), "http:", "https:", 1), "s", p, "S256", "redirect_uri must be"},
		"localhost":         {strings.Replace(l.RedirectURI(), "127.0.0.1", "localhost", 1), "s", p, "S256", "loopback IP"},
		"remote host":       {"http://198.51.100.7:8080/callback", "s", p, "S256", "loopback IP"},
		"no port":           {"http://127.0.0.1/callback", "s", p, "S256", "port"},
		"no state":          {l.RedirectURI(), "", p, "S256", "state is required"},
		"plain PKCE":        {l.RedirectURI(), "s", p, "plain", "PKCE is required"},
		"no challenge":      {l.RedirectURI(), "s", authtest.PKCE{}, "S256", "PKCE is required"},
		"huge state":        {l.RedirectURI(), strings.Repeat("s", 300), p, "S256", "state is required"},
		"fragment redirect": {l.RedirectURI() + "#x", "s", p, "S256", "redirect_uri must be"},
	} {
		t.Run(name, func(t *testing.T) {
			u := f.URL("/api/auth/spectrocloud/cli/start?" + url.Values{
				"redirect_uri": {tc.redirect}, "state": {tc.state}, "code_challenge": {tc.p.Challenge}, "code_challenge_method": {tc.method},
			}.Encode())
			res := authtest.NewBrowser(t).Do(http.MethodGet, u, true)
			body := authtest.DecodeJSON(t, res)
			if res.StatusCode != http.StatusBadRequest || !strings.Contains(body["error"].(map[string]any)["message"].(string), tc.want) {
				t.Errorf("%d %v, want 400 saying %q", res.StatusCode, body, tc.want)
			}
		})
	}
	if res := authtest.NewBrowser(t).Do(http.MethodGet, f.URL("/api/auth/spectrocloud/cli/start?env=staging"), true); res.StatusCode != http.StatusNotFound {
		t.Errorf("unknown env: %d", res.StatusCode)
	}

	t.Run("callback in another browser", func(t *testing.T) {
		start := authtest.NewBrowser(t)
		res := start.Do(http.MethodGet, authtest.CLIStartURL(f, l.RedirectURI(), "s", p), true)
		authorize := res.Header.Get("Location")
		// The provider's side runs in the first browser; the callback lands
		// in a second one that never started a sign-in.
		res = start.Do(http.MethodGet, authorize, true)
		callback := resolve(res)
		for res.StatusCode/100 == 3 && !strings.HasSuffix(strings.SplitN(callback, "?", 2)[0], "/handler/frame") {
			res = start.Do(http.MethodGet, callback, true)
			callback = resolve(res)
		}
		res = authtest.NewBrowser(t).Do(http.MethodGet, callback, true)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "not started in this browser") {
			t.Errorf("callback without the nonce cookie: %d %s", res.StatusCode, body)
		}
	})

	t.Run("user without identity", func(t *testing.T) {
		if err := f.OP.SetSelectedUser("bob"); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = f.OP.SetSelectedUser("alice") }()
		q := authtest.CLISignIn(t, f, authtest.NewBrowser(t), l, "s2", p)
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

// The command line's redirect URI is exactly http://127.0.0.1:PORT/callback
// or http://[::1]:PORT/callback: no other loopback address, no name, no
// other path, nothing an attacker could make resolve or route elsewhere.
func TestCLILoopbackRedirectOnly(t *testing.T) {
	f := authtest.NewFixture(t, authtest.Options{SignInLimit: ratelimit.NewPerClient(6000, 1000, 10, nil)})
	p := authtest.NewPKCE("l")
	start := func(redirect string) *http.Response {
		return authtest.NewBrowser(t).Do(http.MethodGet, f.URL("/api/auth/spectrocloud/cli/start?"+url.Values{
			"redirect_uri": {redirect}, "state": {"s"}, "code_challenge": {p.Challenge}, "code_challenge_method": {"S256"},
		}.Encode()), true)
	}
	for _, ok := range []string{"http://127.0.0.1:49152/callback", "http://[::1]:49152/callback", "http://127.0.0.1:1/callback", "http://[::1]:65535/callback"} {
		if res := start(ok); res.StatusCode != http.StatusFound {
			t.Errorf("%s refused: %d", ok, res.StatusCode)
		}
	}
	for _, tc := range []struct{ name, redirect, want string }{
		{"other 127/8 address", "http://127.0.0.2:49152/callback", "not 127.0.0.2"},
		{"short 127 form", "http://127.1:49152/callback", "not 127.1"},
		{"zero-padded 127", "http://127.000.000.001:49152/callback", "loopback IP address"},
		{"localhost", "http://localhost:49152/callback", "not localhost"},
		{"LOCALHOST", "http://LOCALHOST:49152/callback", "loopback IP address"},
		{"localhost subdomain", "http://a.localhost:49152/callback", "loopback IP address"},
		{"any address", "http://0.0.0.0:49152/callback", "loopback IP address"},
		{"IPv4-mapped IPv6", "http://[::ffff:127.0.0.1]:49152/callback", "loopback IP address"},
		{"long IPv6 loopback", "http://[0:0:0:0:0:0:0:1]:49152/callback", "loopback IP address"},
		{"IPv6 zone", "http://[::1%25lo]:49152/callback", "loopback IP address"},
		{"name resolving to loopback", "http://127.0.0.1.nip.io:49152/callback", "loopback IP address"},
		{"remote host", "http://198.51.100.7:8080/callback", "loopback IP address"},
		{"https", "https://127.0.0.1:49152/callback", "redirect_uri must be"},
		{"custom scheme", "com.example.app:/callback", "redirect_uri must be"},
		{"user info", "http://evil@127.0.0.1:49152/callback", "redirect_uri must be"},
		{"no port", "http://127.0.0.1/callback", "port"},
		{"port zero", "http://127.0.0.1:0/callback", "port"},
		{"port too large", "http://127.0.0.1:65536/callback", "port"},
		{"port with leading zero", "http://127.0.0.1:0080/callback", "port"},
		{"other path", "http://127.0.0.1:49152/steal", "path must be /callback"},
		{"trailing slash", "http://127.0.0.1:49152/callback/", "path must be /callback"},
		{"dot segments", "http://127.0.0.1:49152/x/../callback", "path must be /callback"},
		{"encoded path", "http://127.0.0.1:49152/%63allback", "path must be /callback"},
		{"query", "http://127.0.0.1:49152/callback?next=x", "redirect_uri must be"},
		{"empty query", "http://127.0.0.1:49152/callback?", "redirect_uri must be"},
		{"fragment", "http://127.0.0.1:49152/callback#x", "redirect_uri must be"},
		{"empty", "", "redirect_uri must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := start(tc.redirect)
			body := authtest.DecodeJSON(t, res)
			msg, _ := body["error"].(map[string]any)["message"].(string)
			if res.StatusCode != http.StatusBadRequest || !strings.Contains(msg, tc.want) {
				t.Errorf("%d %q, want 400 saying %q", res.StatusCode, msg, tc.want)
			}
		})
	}
}

// No code leaves the daemon without the user's confirmation on the consent
// page, posted from the browser it was shown in, with its CSRF token, once.
func TestCLIConsent(t *testing.T) {
	f := authtest.NewFixture(t, authtest.Options{})
	l := authtest.NewLoopback(t)
	p := authtest.NewPKCE("k")
	// consentPage runs a sign-in up to the consent page.
	consentPage := func(b *authtest.Browser) cliwire.ConsentForm {
		t.Helper()
		res := b.Get(authtest.CLIStartURL(f, l.RedirectURI(), "st", p))
		h := res.Header
		if h.Get("X-Frame-Options") != "DENY" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			h.Get("Cache-Control") != "no-store" {
			t.Errorf("consent page headers: %v", h)
		}
		form := authtest.ConsentForm(t, res)
		if form.Code != cliwire.ConfirmationCode(p.Challenge) || form.Fields.Get("csrf") == "" || form.Fields.Get("consent") == "" {
			t.Errorf("consent form = %+v", form)
		}
		return form
	}
	reachedLoopback := func(res *http.Response) bool {
		return res.Request.URL.Host == l.Srv.Listener.Addr().String() || strings.Contains(res.Header.Get("Location"), l.Srv.Listener.Addr().String())
	}

	t.Run("page names program, user and code", func(t *testing.T) {
		page := authtest.NewBrowser(t).Get(authtest.CLIStartURL(f, l.RedirectURI(), "st", p))
		body, _ := io.ReadAll(page.Body)
		for _, want := range []string{"spectroauthd", l.Srv.Listener.Addr().String(), "user:default/alice", "alice@example.com", cliwire.ConfirmationCode(p.Challenge)} {
			if !strings.Contains(string(body), want) {
				t.Errorf("the consent page does not show %q", want)
			}
		}
		if l.Query() != nil {
			t.Errorf("the loopback was called before any confirmation: %v", l.Query())
		}
	})

	b := authtest.NewBrowser(t)
	form := consentPage(b)
	action := f.URL(form.Action)
	for _, tc := range []struct {
		name   string
		b      *authtest.Browser
		fields url.Values
		status int
		want   string
	}{
		{"no CSRF token", b, url.Values{"consent": {form.Fields.Get("consent")}, "decision": {"allow"}}, http.StatusForbidden, "CSRF"},
		{"wrong CSRF token", b, url.Values{"consent": {form.Fields.Get("consent")}, "csrf": {strings.Repeat("A", 43)}, "decision": {"allow"}}, http.StatusForbidden, "CSRF"},
		{"another browser", authtest.NewBrowser(t), authtest.WithDecision(form.Fields, "allow"), http.StatusForbidden, "does not come from the page"},
		{"forged form", b, url.Values{"consent": {"AAAA" + form.Fields.Get("consent")[4:]}, "csrf": {form.Fields.Get("csrf")}, "decision": {"allow"}}, http.StatusBadRequest, "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.b.Post(action, tc.fields, true)
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.status || !strings.Contains(string(body), tc.want) || reachedLoopback(res) {
				t.Errorf("%d %s, want %d saying %q", res.StatusCode, body, tc.status, tc.want)
			}
		})
	}
	t.Run("GET is no confirmation", func(t *testing.T) {
		res := b.Do(http.MethodGet, action+"?"+authtest.WithDecision(form.Fields, "allow").Encode(), true)
		if res.StatusCode != http.StatusMethodNotAllowed || reachedLoopback(res) {
			t.Errorf("GET consent: %d", res.StatusCode)
		}
	})
	if q := l.Query(); q != nil {
		t.Fatalf("a refused confirmation reached the loopback: %v", q)
	}

	t.Run("allow, once", func(t *testing.T) {
		res := b.Post(action, authtest.WithDecision(form.Fields, "allow"), true)
		loc, _ := url.Parse(res.Header.Get("Location"))
		if res.StatusCode != http.StatusFound || loc.Host != l.Srv.Listener.Addr().String() || loc.Query().Get("code") == "" || loc.Query().Get("state") != "st" {
			t.Fatalf("allow: %d %s", res.StatusCode, loc)
		}
		if res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("allow answer Cache-Control = %q", res.Header.Get("Cache-Control"))
		}
		// Replaying the confirmation (its cookie is gone, and it is spent).
		replay := authtest.NewBrowser(t)
		replay.Client.Jar = b.Client.Jar
		again := replay.Post(action, authtest.WithDecision(form.Fields, "allow"), true)
		if again.StatusCode/100 == 3 || again.StatusCode == http.StatusOK {
			t.Errorf("a replayed confirmation: %d", again.StatusCode)
		}
	})

	t.Run("deny", func(t *testing.T) {
		b := authtest.NewBrowser(t)
		form := consentPage(b)
		res := b.Post(f.URL(form.Action), authtest.WithDecision(form.Fields, "deny"), true)
		loc, _ := url.Parse(res.Header.Get("Location"))
		if res.StatusCode != http.StatusFound || loc.Query().Get("code") != "" || loc.Query().Get("error") != "access_denied" {
			t.Errorf("deny: %d %s", res.StatusCode, loc)
		}
	})

	t.Run("too late", func(t *testing.T) {
		b := authtest.NewBrowser(t)
		form := consentPage(b)
		f.Advance(cliauth.CLIConsentLifetime + time.Second)
		res := b.Post(f.URL(form.Action), authtest.WithDecision(form.Fields, "allow"), true)
		if res.StatusCode != http.StatusBadRequest || reachedLoopback(res) {
			t.Errorf("late confirmation: %d", res.StatusCode)
		}
	})
}
