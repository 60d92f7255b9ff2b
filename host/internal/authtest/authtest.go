// Package authtest is the test harness the daemon's HTTP front ends share
// (host/server's Backstage routes and host/cliauth's command-line routes):
// both front ends mounted as the daemon mounts them, in front of a real
// OpenID provider (host/devprovider) on loopback, a browser that keeps
// cookies, and the command line's side of a sign-in. Only tests import it.
package authtest

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spectroauth/spectroauth/host/cliauth"
	"github.com/spectroauth/spectroauth/host/devprovider"
	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/cliwire"
	"github.com/spectroauth/spectroauth/host/internal/ratelimit"
	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// The app, the daemon's client at the provider, and the scope the app asks for.
const (
	AppOrigin = "http://localhost:3000"
	ClientID  = "backstage"
	Secret    = "s3cret-for-tests"
	Scope     = "openid profile email"
)

// BoolPtr is &b.
func BoolPtr(b bool) *bool { return &b }

// Fixture is a daemon HTTP server in front of a real OpenID provider
// (zitadel's certified OP, through host/devprovider) on loopback.
type Fixture struct {
	T testing.TB
	// OP is the OpenID provider, served by OPSrv.
	OP    *devprovider.Provider
	OPSrv *httptest.Server
	// Srv serves Server.
	Srv      *httptest.Server
	DataDir  string
	Sessions *session.FileStore
	// Server is Backstage's routes.
	Server *server.Server
	// CLI is the command-line routes, mounted on Server as the daemon
	// mounts them.
	CLI   *cliauth.Handler
	mu    sync.Mutex
	clock time.Time // zero: real time
}

// Options changes a fixture.
type Options struct {
	RefreshTokens bool
	IDTokenTTL    time.Duration
	// WrapOP intercepts the provider's responses (tampering tests).
	WrapOP func(http.Handler) http.Handler
	// Resolver replaces the default sign-in chain.
	Resolver signin.Resolver
	DataDir  string
	// OP reuses a provider (restart tests).
	OP *Fixture
	// Addr is the daemon's listen address (restart tests); empty picks one.
	Addr string
	// UsedOnce replaces the in-memory set of used sign-in responses.
	UsedOnce server.OnceSet
	// Sessions replaces the fixture's own file store (replicas sharing one).
	Sessions session.Store
	// SignInDone receives the outcome of each sign-in.
	SignInDone func(env, client, outcome string)
	// UserInfo wraps the user info store /v1/userinfo reads (failure
	// tests); the issuer still writes to the fixture's own.
	UserInfo func(identity.UserInfoStore) identity.UserInfoStore
	// Logger is the daemon's; nil means a null logger.
	Logger hclog.Logger
	// SignInLimit, ExchangeBudget and ClientIP replace the rate limits.
	SignInLimit    *ratelimit.PerClient
	ExchangeBudget *ratelimit.Budget
	ClientIP       *ratelimit.ClientIP
}

// NewFixture starts a provider (or reuses o.OP's) and the daemon's routes
// in front of it, closed at the end of t.
func NewFixture(t testing.TB, o Options) *Fixture {
	t.Helper()
	f := &Fixture{T: t, DataDir: o.DataDir}
	if f.DataDir == "" {
		f.DataDir = t.TempDir()
	}
	f.Srv = httptest.NewUnstartedServer(nil)
	if o.Addr != "" {
		_ = f.Srv.Listener.Close()
		l, err := net.Listen("tcp", o.Addr)
		if err != nil {
			t.Fatal(err)
		}
		f.Srv.Listener = l
	}
	callback := "http://" + f.Srv.Listener.Addr().String() + "/api/auth/spectrocloud/handler/frame"
	if o.OP != nil {
		f.OP, f.OPSrv = o.OP.OP, o.OP.OPSrv
	} else {
		f.OPSrv = httptest.NewUnstartedServer(nil)
		issuer := "http://" + f.OPSrv.Listener.Addr().String()
		op, err := devprovider.New(devprovider.Config{
			Issuer:  issuer,
			Clients: []devprovider.Client{{ID: ClientID, Secret: Secret, RedirectURIs: []string{callback}}},
			Users: []devprovider.User{
				{Username: "alice", Email: "alice@example.com", EmailVerified: BoolPtr(true), GivenName: "Alice", FamilyName: "Liddell", Groups: []string{"dev", "ops"}},
				{Username: "bob", Email: "bob@example.com", EmailVerified: BoolPtr(false), Name: "Bob"},
			},
			AutoApprove:     "alice",
			RefreshTokens:   o.RefreshTokens,
			IDTokenLifetime: o.IDTokenTTL,
			AllowInsecure:   true,
		})
		if err != nil {
			t.Fatal(err)
		}
		f.OP = op
		var h http.Handler = op
		if o.WrapOP != nil {
			h = o.WrapOP(h)
		}
		f.OPSrv.Config.Handler = h
		f.OPSrv.Start()
		t.Cleanup(f.OPSrv.Close)
	}

	up, err := upstream.New(context.Background(), upstream.Config{
		Issuer:              f.OP.Issuer(),
		ClientID:            ClientID,
		ClientSecret:        Secret,
		Scopes:              []string{"openid", "profile", "email", "offline_access"},
		AllowInsecureIssuer: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := identity.OpenFileKeyStore(filepath.Join(f.DataDir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	userInfo, err := identity.OpenFileUserInfoStore(filepath.Join(f.DataDir, "userinfo"))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + f.Srv.Listener.Addr().String()
	iss, err := identity.New(identity.Config{Issuer: base + "/api/auth", KeyStore: keys, UserInfo: userInfo, Now: f.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.Sessions, err = session.OpenFileStore(filepath.Join(f.DataDir, "sessions"), session.Options{Now: f.Now, SweepInterval: -1, Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Sessions.Close() })
	served := identity.UserInfoStore(userInfo)
	if o.UserInfo != nil {
		served = o.UserInfo(userInfo)
	}
	resolver := o.Resolver
	if resolver == nil {
		resolver = signin.Chain{{Name: "builtin/emailLocalPart", Resolver: signin.EmailLocalPart{}}}
	}
	h, err := server.New(server.Config{
		BaseURL:    base,
		AppBaseURL: AppOrigin,
		Envs: map[string]*server.Env{"development": {
			Upstream:        up,
			SignIn:          resolver,
			Scopes:          []string{"offline_access"},
			RefreshMargin:   5 * time.Minute,
			SessionDuration: 24 * time.Hour,
		}},
		ExtraAllowedOrigins: []string{"https://*.example.com"},
		Identity:            iss,
		UserInfo:            served,
		Sessions:            cmp.Or[session.Store](o.Sessions, f.Sessions),
		FlowKey:             []byte(strings.Repeat("k", 32)),
		UsedOnce:            o.UsedOnce,
		SignInDone:          o.SignInDone,
		Now:                 f.Now,
		Logger:              o.Logger,
		SignInLimit:         o.SignInLimit,
		ExchangeBudget:      o.ExchangeBudget,
		ClientIP:            o.ClientIP,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.Server = h
	if f.CLI, err = cliauth.Mount(cliauth.Config{Lifecycle: h.Lifecycle(), Front: h, Logger: o.Logger}); err != nil {
		t.Fatal(err)
	}
	f.Srv.Config.Handler = h
	f.Srv.Start()
	t.Cleanup(f.Srv.Close)
	return f
}

// Now is the daemon's clock: real time until Advance moves it.
func (f *Fixture) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clock.IsZero() {
		return time.Now()
	}
	return f.clock
}

// advance moves the daemon's clock (not the provider's) forward.
func (f *Fixture) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clock.IsZero() {
		f.clock = time.Now()
	}
	f.clock = f.clock.Add(d)
}

// RealTime puts the daemon's clock back on real time.
func (f *Fixture) RealTime() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock = time.Time{}
}

// URL is path on the daemon.
func (f *Fixture) URL(path string) string { return f.Srv.URL + path }

// Browser is a cookie-keeping HTTP client that follows redirects like a
// browser's popup would.
type Browser struct {
	T      testing.TB
	Client *http.Client
}

// NewBrowser is a browser with an empty cookie jar.
func NewBrowser(t testing.TB) *Browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Browser{T: t, Client: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// NoRedirects is the browser's client that stops at the first redirect.
func (b *Browser) NoRedirects() *http.Client {
	c := *b.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// Get loads u, following redirects, with the given header pairs.
func (b *Browser) Get(u string, header ...string) *http.Response {
	b.T.Helper()
	return b.Do(http.MethodGet, u, false, header...)
}

// Do sends a body-less request, following redirects unless noFollow.
func (b *Browser) Do(method, u string, noFollow bool, header ...string) *http.Response {
	b.T.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		b.T.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := b.Client
	if noFollow {
		c = b.NoRedirects()
	}
	res, err := c.Do(req)
	if err != nil {
		b.T.Fatal(err)
	}
	b.T.Cleanup(func() { res.Body.Close() })
	return res
}

// Post sends a form, as the browser submits one.
func (b *Browser) Post(u string, form url.Values, noFollow bool) *http.Response {
	b.T.Helper()
	c := b.Client
	if noFollow {
		c = b.NoRedirects()
	}
	res, err := c.PostForm(u, form)
	if err != nil {
		b.T.Fatal(err)
	}
	b.T.Cleanup(func() { res.Body.Close() })
	return res
}

// StartURL is /start with q.
func StartURL(f *Fixture, q url.Values) string {
	return f.URL("/api/auth/spectrocloud/start?" + q.Encode())
}

// PopupQuery is what Backstage's app sends to /start for a popup sign-in.
func PopupQuery() url.Values {
	return url.Values{"scope": {Scope}, "origin": {AppOrigin}, "flow": {"popup"}, "env": {"development"}}
}

var scriptValues = regexp.MustCompile(`decodeURIComponent\('([^']*)'\)`)

// FrameMessage decodes the frame page's posted message and target origin,
// checking the page's security headers on the way.
func FrameMessage(t testing.TB, res *http.Response) (map[string]any, string) {
	t.Helper()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("frame: status %d: %s", res.StatusCode, body)
	}
	if got := res.Header.Get("X-Frame-Options"); got != "sameorigin" {
		t.Errorf("X-Frame-Options = %q", got)
	}
	if !strings.HasPrefix(res.Header.Get("Content-Security-Policy"), "script-src 'sha256-") {
		t.Errorf("CSP = %q", res.Header.Get("Content-Security-Policy"))
	}
	m := scriptValues.FindAllStringSubmatch(string(body), -1)
	if len(m) != 2 {
		t.Fatalf("frame page has %d encoded values, want 2: %s", len(m), body)
	}
	data, err := url.PathUnescape(m[0][1])
	if err != nil {
		t.Fatal(err)
	}
	origin, _ := url.PathUnescape(m[1][1])
	var msg map[string]any
	if err := json.Unmarshal([]byte(data), &msg); err != nil {
		t.Fatalf("frame message is not JSON: %v: %s", err, data)
	}
	return msg, origin
}

// SignIn runs the popup flow and returns the authorization response.
func SignIn(t testing.TB, f *Fixture, b *Browser) map[string]any {
	t.Helper()
	msg, origin := FrameMessage(t, b.Get(StartURL(f, PopupQuery())))
	if origin != AppOrigin {
		t.Fatalf("target origin = %q, want %q", origin, AppOrigin)
	}
	if msg["type"] != "authorization_response" {
		t.Fatalf("message type = %v", msg["type"])
	}
	if msg["error"] != nil {
		t.Fatalf("sign-in error: %v", msg["error"])
	}
	return msg["response"].(map[string]any)
}

// Refresh calls /refresh as Backstage's app does.
func Refresh(b *Browser, f *Fixture) *http.Response {
	return b.Get(f.URL("/api/auth/spectrocloud/refresh?optional&scope=openid%20profile%20email&env=development"),
		"X-Requested-With", "XMLHttpRequest", "Origin", AppOrigin)
}

// DecodeJSON decodes a JSON object body.
func DecodeJSON(t testing.TB, res *http.Response) map[string]any {
	t.Helper()
	var m map[string]any
	body, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("not JSON (%d): %s", res.StatusCode, body)
	}
	return m
}

// JWTClaims decodes a JWT's payload without verifying it.
func JWTClaims(t testing.TB, tok string) map[string]any {
	t.Helper()
	return jwtPart(t, tok, 1)
}

// JWTHeader decodes a JWT's header without verifying it.
func JWTHeader(t testing.TB, tok string) map[string]any {
	t.Helper()
	return jwtPart(t, tok, 0)
}

// jwtPart decodes part i of a compact JWS as a JSON object.
func jwtPart(t testing.TB, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// B64 is base64url without padding.
func B64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// JSONNumber is v encoded as JSON.
func JSONNumber(v any) string { b, _ := json.Marshal(v); return string(b) }

// Loopback is the command-line program's redirect listener.
type Loopback struct {
	Srv  *httptest.Server
	mu   sync.Mutex
	last url.Values
}

// NewLoopback starts the program's loopback listener, closed at the end of t.
func NewLoopback(t *testing.T) *Loopback {
	l := &Loopback{}
	l.Srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.last = r.URL.Query()
		l.mu.Unlock()
		_, _ = io.WriteString(w, "you may close this window")
	}))
	t.Cleanup(l.Srv.Close)
	return l
}

// RedirectURI is the program's redirect_uri.
func (l *Loopback) RedirectURI() string { return l.Srv.URL + "/callback" }

// Query is the query of the last request the loopback received.
func (l *Loopback) Query() url.Values {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// PKCE is a verifier and its S256 challenge.
type PKCE struct{ Verifier, Challenge string }

// NewPKCE makes a PKCE pair from seed.
func NewPKCE(seed string) PKCE {
	v := strings.Repeat(seed, 64)[:64]
	sum := sha256.Sum256([]byte(v))
	return PKCE{Verifier: v, Challenge: base64.RawURLEncoding.EncodeToString(sum[:])}
}

// CLIStartURL is cli/start for a program listening at redirect.
func CLIStartURL(f *Fixture, redirect, state string, p PKCE) string {
	return f.URL("/api/auth/spectrocloud/cli/start?" + url.Values{
		"redirect_uri": {redirect}, "state": {state}, "code_challenge": {p.Challenge}, "code_challenge_method": {"S256"},
	}.Encode())
}

// CLISignIn runs the browser side, allowing the sign-in on the consent
// page, and returns what reached the loopback.
func CLISignIn(t *testing.T, f *Fixture, b *Browser, l *Loopback, state string, p PKCE) url.Values {
	t.Helper()
	res := b.Get(CLIStartURL(f, l.RedirectURI(), state, p))
	if res.Request.URL.Host != l.Srv.Listener.Addr().String() {
		form := ConsentForm(t, res)
		if form.Code != cliwire.ConfirmationCode(p.Challenge) {
			t.Errorf("the consent page shows %q, the program printed %q", form.Code, cliwire.ConfirmationCode(p.Challenge))
		}
		res = b.Post(f.URL(form.Action), WithDecision(form.Fields, "allow"), false)
	}
	if res.StatusCode != http.StatusOK || res.Request.URL.Host != l.Srv.Listener.Addr().String() {
		body, _ := io.ReadAll(res.Body)
		t.Fatalf("the browser ended at %s with %d, not at the loopback: %s", res.Request.URL, res.StatusCode, body)
	}
	return l.Query()
}

// ConsentForm reads the consent page the browser ended at.
func ConsentForm(t *testing.T, res *http.Response) cliwire.ConsentForm {
	t.Helper()
	page, _ := io.ReadAll(res.Body)
	form, err := cliwire.ParseConsentPage(page)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("the browser ended at %s with %d, not at the consent page: %s", res.Request.URL, res.StatusCode, page)
	}
	return form
}

// WithDecision is v plus the consent page's decision.
func WithDecision(v url.Values, decision string) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = vs
	}
	out.Set("decision", decision)
	return out
}

// TokenRequest posts form to cli/token and returns the status and body.
func TokenRequest(t *testing.T, f *Fixture, form url.Values) (int, map[string]any) {
	t.Helper()
	res, err := http.PostForm(f.URL("/api/auth/spectrocloud/cli/token"), form)
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
