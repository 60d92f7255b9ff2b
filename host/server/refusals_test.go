package server_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// authorize runs /start and the provider's login, stopping at the callback:
// it returns the callback URL (code and state) and leaves the nonce cookie in b.
func authorize(t *testing.T, f *fixture, b *browser, q url.Values) string {
	t.Helper()
	next := startURL(f, q)
	for i := 0; i < 10; i++ {
		if strings.HasPrefix(next, f.URL("/api/auth/spectrocloud/handler/frame")) {
			return next
		}
		res := b.Do(http.MethodGet, next, true)
		loc, err := res.Location()
		if err != nil {
			t.Fatalf("no redirect from %s (%d): %s", next, res.StatusCode, mustRead(res))
		}
		next = loc.String()
	}
	t.Fatal("too many redirects before the callback")
	return ""
}

func TestStartRefusals(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	for _, tc := range []struct {
		name   string
		path   string
		q      url.Values
		status int
		errMsg string
	}{
		{name: "unknown env", q: url.Values{"env": {"staging"}}, status: 404, errMsg: "No configuration available for the 'staging' environment"},
		{name: "missing env", q: url.Values{}, status: 400, errMsg: "Must specify 'env'"},
		{name: "unknown provider", path: "/api/auth/github/start", q: url.Values{"env": {"development"}}, status: 404, errMsg: "Unknown auth provider 'github'"},
		{name: "origin suffix", q: url.Values{"env": {"development"}, "origin": {"http://localhost.evil.com:3000"}}, status: 403},
		{name: "origin with a bad port", q: url.Values{"env": {"development"}, "origin": {"http://localhost:3000.evil.com"}}, status: 400},
		{name: "origin with userinfo", q: url.Values{"env": {"development"}, "origin": {"http://evil.com@localhost:3000"}}, status: 400},
		{name: "origin scheme", q: url.Values{"env": {"development"}, "origin": {"https://localhost:3000"}}, status: 403},
		{name: "origin port", q: url.Values{"env": {"development"}, "origin": {"http://localhost:3001"}}, status: 403},
		{name: "origin null", q: url.Values{"env": {"development"}, "origin": {"null"}}, status: 400},
		{name: "origin not a URL", q: url.Values{"env": {"development"}, "origin": {"::"}}, status: 400},
		{name: "origin javascript", q: url.Values{"env": {"development"}, "origin": {"javascript:alert(1)"}}, status: 400},
		{name: "glob does not cross dots into another domain", q: url.Values{"env": {"development"}, "origin": {"https://example.com.evil.io"}}, status: 403},
		{name: "glob needs a subdomain", q: url.Values{"env": {"development"}, "origin": {"https://example.com"}}, status: 403},
		{name: "glob scheme", q: url.Values{"env": {"development"}, "origin": {"http://team.example.com"}}, status: 403},
		{name: "redirect flow without redirectUrl", q: url.Values{"env": {"development"}, "origin": {appOrigin}, "flow": {"redirect"}}, status: 400},
		{name: "redirectUrl to another origin", q: url.Values{"env": {"development"}, "origin": {appOrigin}, "flow": {"redirect"}, "redirectUrl": {"https://evil.com/"}}, status: 403},
		{name: "redirectUrl javascript", q: url.Values{"env": {"development"}, "origin": {appOrigin}, "flow": {"redirect"}, "redirectUrl": {"javascript:alert(1)//localhost:3000"}}, status: 403},
		{name: "redirectUrl relative", q: url.Values{"env": {"development"}, "origin": {appOrigin}, "flow": {"redirect"}, "redirectUrl": {"/catalog"}}, status: 400},
		{name: "allowed app origin", q: url.Values{"env": {"development"}, "origin": {appOrigin}}, status: 302},
		{name: "allowed glob origin, any case", q: url.Values{"env": {"development"}, "origin": {"HTTPS://Team.Example.COM"}}, status: 302},
		{name: "allowed redirect", q: url.Values{"env": {"development"}, "origin": {appOrigin}, "flow": {"redirect"}, "redirectUrl": {appOrigin + "/x"}}, status: 302},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = "/api/auth/spectrocloud/start"
			}
			res := newBrowser(t).Do(http.MethodGet, f.URL(path+"?"+tc.q.Encode()), true)
			if res.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d: %s", res.StatusCode, tc.status, mustRead(res))
			}
			if tc.status >= 400 {
				body := decodeJSON(t, res)
				e := body["error"].(map[string]any)
				if tc.errMsg != "" && !strings.Contains(e["message"].(string), tc.errMsg) {
					t.Errorf("message = %q, want it to contain %q", e["message"], tc.errMsg)
				}
				if body["response"].(map[string]any)["statusCode"].(float64) != float64(tc.status) {
					t.Errorf("error body = %v", body)
				}
				if res.Header.Get("Set-Cookie") != "" {
					t.Errorf("refused start set a cookie: %q", res.Header.Get("Set-Cookie"))
				}
			}
		})
	}
}

func TestStartSetsNonceCookieAndPKCE(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	res := newBrowser(t).Do(http.MethodGet, startURL(f, popupQuery()), true)
	var nonce *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "spectrocloud-nonce" {
			nonce = c
		}
	}
	if nonce == nil || nonce.Path != "/api/auth/spectrocloud/handler" || !nonce.HttpOnly || nonce.MaxAge != 600 || nonce.SameSite != http.SameSiteLaxMode {
		t.Fatalf("nonce cookie = %+v", nonce)
	}
	loc, _ := res.Location()
	q := loc.Query()
	if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 {
		t.Errorf("no S256 PKCE challenge: %v", q)
	}
	if q.Get("nonce") == "" || q.Get("nonce") == nonce.Value {
		t.Errorf("OpenID nonce must be present and not the cookie value: %q", q.Get("nonce"))
	}
	for _, s := range []string{"openid", "profile", "email", "offline_access"} {
		if !strings.Contains(" "+q.Get("scope")+" ", " "+s+" ") {
			t.Errorf("scope %q lacks %s", q.Get("scope"), s)
		}
	}
	if q.Get("redirect_uri") != f.URL("/api/auth/spectrocloud/handler/frame") {
		t.Errorf("redirect_uri = %q", q.Get("redirect_uri"))
	}
}

// /start asks for the union of the requested scopes, the ones this browser
// was granted before (the granted-scope cookie), the required ones and the
// configured extras.
func TestStartKeepsGrantedScopes(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	b := newBrowser(t)
	u, _ := url.Parse(f.URL("/api/auth/spectrocloud/start"))
	b.Client.Jar.SetCookies(u, []*http.Cookie{{Name: "spectrocloud-granted-scope", Value: "openid%20groups:read", Path: "/api/auth/spectrocloud"}})
	res := b.Do(http.MethodGet, startURL(f, url.Values{"env": {"development"}, "scope": {"catalog:read"}}), true)
	loc, err := res.Location()
	if err != nil {
		t.Fatal(err)
	}
	got := " " + loc.Query().Get("scope") + " "
	for _, want := range []string{"catalog:read", "groups:read", "openid", "profile", "email", "offline_access"} {
		if !strings.Contains(got, " "+want+" ") {
			t.Errorf("scope %q lacks %s", got, want)
		}
	}
}

func TestFrameRefusals(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	frameURL, _ := url.Parse(f.URL("/api/auth/spectrocloud/handler"))

	t.Run("missing state is an HTTP error", func(t *testing.T) {
		res := newBrowser(t).Get(f.URL("/api/auth/spectrocloud/handler/frame?code=x"))
		if res.StatusCode != http.StatusForbidden {
			t.Fatalf("status = %d", res.StatusCode)
		}
	})
	inBand := func(t *testing.T, res *http.Response, name, msg string) {
		t.Helper()
		m, origin := frameMessage(t, res)
		e, ok := m["error"].(map[string]any)
		if !ok {
			t.Fatalf("want an error, got %v", m)
		}
		if e["name"] != name || !strings.Contains(e["message"].(string), msg) {
			t.Errorf("error = %v, want %s containing %q", e, name, msg)
		}
		if origin != appOrigin {
			t.Errorf("error posted to %q", origin)
		}
	}
	t.Run("missing nonce cookie", func(t *testing.T) {
		b := newBrowser(t)
		cb := authorize(t, f, b, popupQuery())
		inBand(t, newBrowser(t).Get(cb), "NotAllowedError", "missing cookie nonce")
	})
	t.Run("wrong nonce cookie", func(t *testing.T) {
		b := newBrowser(t)
		cb := authorize(t, f, b, popupQuery())
		b.Client.Jar.SetCookies(frameURL, []*http.Cookie{{Name: "spectrocloud-nonce", Value: "not-the-nonce", Path: "/api/auth/spectrocloud/handler"}})
		inBand(t, b.Get(cb), "NotAllowedError", "Invalid nonce")
	})
	t.Run("state replay", func(t *testing.T) {
		b := newBrowser(t)
		cb := authorize(t, f, b, popupQuery())
		nonce := ""
		for _, c := range b.Client.Jar.Cookies(frameURL) {
			if c.Name == "spectrocloud-nonce" {
				nonce = c.Value
			}
		}
		m, _ := frameMessage(t, b.Get(cb))
		if m["error"] != nil {
			t.Fatalf("first use failed: %v", m)
		}
		// The attacker replays the same response with the nonce cookie restored.
		b.Client.Jar.SetCookies(frameURL, []*http.Cookie{{Name: "spectrocloud-nonce", Value: nonce, Path: "/api/auth/spectrocloud/handler"}})
		inBand(t, b.Get(cb), "NotAllowedError", "already used")
	})
	t.Run("state tampered to another origin", func(t *testing.T) {
		b := newBrowser(t)
		cb, _ := url.Parse(authorize(t, f, b, popupQuery()))
		q := cb.Query()
		st := decodeHexState(t, q.Get("state"))
		st.Set("origin", "https://evil.com")
		q.Set("state", encodeHexState(st))
		cb.RawQuery = q.Encode()
		f.OP.ResetCounters()
		if res := b.Get(cb.String()); res.StatusCode != http.StatusForbidden {
			t.Fatalf("tampered state: %d, want 403", res.StatusCode)
		}
		if c := f.OP.Counters(); c.Token != 0 {
			t.Fatalf("a tampered state reached the token endpoint %d times", c.Token)
		}
	})
	t.Run("provider error", func(t *testing.T) {
		b := newBrowser(t)
		cb, _ := url.Parse(authorize(t, f, b, popupQuery()))
		q := cb.Query()
		q.Del("code")
		q.Set("error", "access_denied")
		cb.RawQuery = q.Encode()
		inBand(t, b.Get(cb.String()), "AuthenticationError", "access_denied")
	})
	t.Run("forged code", func(t *testing.T) {
		b := newBrowser(t)
		cb, _ := url.Parse(authorize(t, f, b, popupQuery()))
		q := cb.Query()
		q.Set("code", "forged")
		cb.RawQuery = q.Encode()
		inBand(t, b.Get(cb.String()), "AuthenticationError", "Could not complete")
	})
	t.Run("redirect flow error goes back to the app", func(t *testing.T) {
		b := newBrowser(t)
		q := popupQuery()
		q.Set("flow", "redirect")
		q.Set("redirectUrl", appOrigin+"/catalog")
		cb := authorize(t, f, b, q)
		res := newBrowser(t).Do(http.MethodGet, cb, true)
		loc, _ := res.Location()
		if res.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), appOrigin+"?error=") {
			t.Fatalf("want a redirect to the app with an error, got %d %v", res.StatusCode, loc)
		}
	})
}

func decodeHexState(t *testing.T, s string) url.Values {
	t.Helper()
	raw := make([]byte, len(s)/2)
	for i := range raw {
		var b byte
		for _, c := range s[2*i : 2*i+2] {
			b <<= 4
			switch {
			case c >= '0' && c <= '9':
				b |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				b |= byte(c - 'a' + 10)
			}
		}
		raw[i] = b
	}
	v, err := url.ParseQuery(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func encodeHexState(v url.Values) string {
	const hexdig = "0123456789abcdef"
	s := v.Encode()
	out := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		out = append(out, hexdig[s[i]>>4], hexdig[s[i]&15])
	}
	return string(out)
}

func TestRefreshAndLogoutRefusals(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	b := newBrowser(t)
	signIn(t, f, b)
	refreshURL := f.URL("/api/auth/spectrocloud/refresh?optional&env=development")
	for _, tc := range []struct {
		name        string
		method, url string
		header      []string
		fresh       bool // a browser without the session
		status      int
		cors        bool
	}{
		{name: "refresh without X-Requested-With", method: "GET", url: refreshURL, header: []string{"Origin", appOrigin}, status: 401, cors: true},
		{name: "refresh without a session", method: "GET", url: refreshURL, header: []string{"X-Requested-With", "XMLHttpRequest", "Origin", appOrigin}, fresh: true, status: 401, cors: true},
		{name: "refresh from a disallowed origin", method: "GET", url: refreshURL, header: []string{"X-Requested-With", "XMLHttpRequest", "Origin", "https://evil.com"}, status: 403},
		{name: "refresh without env", method: "GET", url: f.URL("/api/auth/spectrocloud/refresh"), header: []string{"X-Requested-With", "XMLHttpRequest"}, status: 400},
		{name: "refresh unknown env", method: "GET", url: f.URL("/api/auth/spectrocloud/refresh?env=prod"), header: []string{"X-Requested-With", "XMLHttpRequest"}, status: 404},
		{name: "logout without X-Requested-With", method: "POST", url: f.URL("/api/auth/spectrocloud/logout?env=development"), status: 401},
		{name: "logout from a disallowed origin", method: "POST", url: f.URL("/api/auth/spectrocloud/logout?env=development"), header: []string{"X-Requested-With", "XMLHttpRequest", "Origin", "https://evil.com"}, status: 403},
		{name: "refresh works", method: "GET", url: refreshURL, header: []string{"X-Requested-With", "XMLHttpRequest", "Origin", appOrigin}, status: 200, cors: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := b
			if tc.fresh {
				br = newBrowser(t)
			}
			res := br.Do(tc.method, tc.url, true, tc.header...)
			if res.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d: %s", res.StatusCode, tc.status, mustRead(res))
			}
			acao := res.Header.Get("Access-Control-Allow-Origin")
			if tc.cors && (acao != appOrigin || res.Header.Get("Access-Control-Allow-Credentials") != "true") {
				t.Errorf("CORS headers missing: %v", res.Header)
			}
			if !tc.cors && acao != "" {
				t.Errorf("CORS header for a disallowed or absent origin: %q", acao)
			}
		})
	}
}

func TestCORSPreflight(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	for _, tc := range []struct {
		origin string
		status int
	}{
		{appOrigin, http.StatusNoContent},
		{"https://team.example.com", http.StatusNoContent},
		{"https://evil.com", http.StatusForbidden},
	} {
		t.Run(tc.origin, func(t *testing.T) {
			res := newBrowser(t).Do(http.MethodOptions, f.URL("/api/auth/spectrocloud/refresh?optional&env=development"), true,
				"Origin", tc.origin, "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "x-requested-with")
			if res.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d", res.StatusCode, tc.status)
			}
			if tc.status == http.StatusNoContent {
				h := res.Header
				if h.Get("Access-Control-Allow-Origin") != tc.origin || h.Get("Access-Control-Allow-Credentials") != "true" ||
					!strings.Contains(h.Get("Access-Control-Allow-Headers"), "x-requested-with") {
					t.Errorf("preflight headers = %v", h)
				}
			} else if res.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("preflight allowed %s", tc.origin)
			}
		})
	}
}

// failingOnce is a shared used-once set whose database is down.
type failingOnce struct{}

func (failingOnce) Claim(context.Context, string, time.Time, time.Time) (bool, error) {
	return false, errors.New("database is down")
}

// When the daemon cannot record a sign-in response as used (its shared
// store is down), it refuses the sign-in rather than risk accepting a
// replay: no session, no cookie.
func TestSignInRefusedWhenUsedOnceSetFails(t *testing.T) {
	f := newFixture(t, fixtureOptions{UsedOnce: failingOnce{}})
	b := newBrowser(t)
	m, _ := frameMessage(t, b.Get(authorize(t, f, b, popupQuery())))
	if _, ok := m["error"].(map[string]any); !ok {
		t.Fatalf("sign-in went through without being recorded as used: %v", m)
	}
	if n := f.Sessions.Len(); n != 0 {
		t.Fatalf("%d sessions stored", n)
	}
}
