package server_test

import (
	"cmp"
	"context"
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
	"github.com/spectroauth/spectroauth/host/internal/ratelimit"
	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/host/upstream"
)

const (
	appOrigin = "http://localhost:3000"
	clientID  = "backstage"
	secret    = "s3cret-for-tests"
	scope     = "openid profile email"
)

func boolPtr(b bool) *bool { return &b }

// fixture is a daemon HTTP server in front of a real OpenID provider
// (zitadel's certified OP, through host/devprovider) on loopback.
type fixture struct {
	t        testing.TB
	op       *devprovider.Provider
	opSrv    *httptest.Server
	srv      *httptest.Server
	dataDir  string
	sessions *session.FileStore
	server   *server.Server
	// cli is the command-line routes, mounted on server as the daemon
	// mounts them.
	cli    *cliauth.Handler
	opWrap func(http.Handler) http.Handler
	mu     sync.Mutex
	clock  time.Time // zero: real time
}

type fixtureOptions struct {
	refreshTokens bool
	idTokenTTL    time.Duration
	// wrapOP intercepts the provider's responses (tampering tests).
	wrapOP func(http.Handler) http.Handler
	// resolver replaces the default sign-in chain.
	resolver signin.Resolver
	dataDir  string
	// op reuses a provider (restart tests).
	op *fixture
	// addr is the daemon's listen address (restart tests); empty picks one.
	addr string
	// usedOnce replaces the in-memory set of used sign-in responses.
	usedOnce server.OnceSet
	// sessions replaces the fixture's own file store (replicas sharing one).
	sessions session.Store
	// signInDone receives the outcome of each sign-in.
	signInDone func(env, client, outcome string)
	// userInfo wraps the user info store /v1/userinfo reads (failure
	// tests); the issuer still writes to the fixture's own.
	userInfo func(identity.UserInfoStore) identity.UserInfoStore
	// logger is the daemon's; nil means a null logger.
	logger hclog.Logger
	// signInLimit, exchangeBudget and clientIP replace the rate limits.
	signInLimit    *ratelimit.PerClient
	exchangeBudget *ratelimit.Budget
	clientIP       *ratelimit.ClientIP
}

func newFixture(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	f := &fixture{t: t, dataDir: o.dataDir}
	if f.dataDir == "" {
		f.dataDir = t.TempDir()
	}
	f.srv = httptest.NewUnstartedServer(nil)
	if o.addr != "" {
		_ = f.srv.Listener.Close()
		l, err := net.Listen("tcp", o.addr)
		if err != nil {
			t.Fatal(err)
		}
		f.srv.Listener = l
	}
	callback := "http://" + f.srv.Listener.Addr().String() + "/api/auth/spectrocloud/handler/frame"
	if o.op != nil {
		f.op, f.opSrv = o.op.op, o.op.opSrv
	} else {
		f.opSrv = httptest.NewUnstartedServer(nil)
		issuer := "http://" + f.opSrv.Listener.Addr().String()
		op, err := devprovider.New(devprovider.Config{
			Issuer:  issuer,
			Clients: []devprovider.Client{{ID: clientID, Secret: secret, RedirectURIs: []string{callback}}},
			Users: []devprovider.User{
				{Username: "alice", Email: "alice@example.com", EmailVerified: boolPtr(true), GivenName: "Alice", FamilyName: "Liddell", Groups: []string{"dev", "ops"}},
				{Username: "bob", Email: "bob@example.com", EmailVerified: boolPtr(false), Name: "Bob"},
			},
			AutoApprove:     "alice",
			RefreshTokens:   o.refreshTokens,
			IDTokenLifetime: o.idTokenTTL,
			AllowInsecure:   true,
		})
		if err != nil {
			t.Fatal(err)
		}
		f.op = op
		var h http.Handler = op
		if o.wrapOP != nil {
			h = o.wrapOP(h)
		}
		f.opSrv.Config.Handler = h
		f.opSrv.Start()
		t.Cleanup(f.opSrv.Close)
	}

	up, err := upstream.New(context.Background(), upstream.Config{
		Issuer:              f.op.Issuer(),
		ClientID:            clientID,
		ClientSecret:        secret,
		Scopes:              []string{"openid", "profile", "email", "offline_access"},
		AllowInsecureIssuer: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := identity.OpenFileKeyStore(filepath.Join(f.dataDir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	userInfo, err := identity.OpenFileUserInfoStore(filepath.Join(f.dataDir, "userinfo"))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + f.srv.Listener.Addr().String()
	iss, err := identity.New(identity.Config{Issuer: base + "/api/auth", KeyStore: keys, UserInfo: userInfo, Now: f.now})
	if err != nil {
		t.Fatal(err)
	}
	f.sessions, err = session.OpenFileStore(filepath.Join(f.dataDir, "sessions"), session.Options{Now: f.now, SweepInterval: -1, Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.sessions.Close() })
	served := identity.UserInfoStore(userInfo)
	if o.userInfo != nil {
		served = o.userInfo(userInfo)
	}
	resolver := o.resolver
	if resolver == nil {
		resolver = signin.Chain{{Name: "builtin/emailLocalPart", Resolver: signin.EmailLocalPart{}}}
	}
	h, err := server.New(server.Config{
		BaseURL:    base,
		AppBaseURL: appOrigin,
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
		Sessions:            cmp.Or[session.Store](o.sessions, f.sessions),
		FlowKey:             []byte(strings.Repeat("k", 32)),
		UsedOnce:            o.usedOnce,
		SignInDone:          o.signInDone,
		Now:                 f.now,
		Logger:              o.logger,
		SignInLimit:         o.signInLimit,
		ExchangeBudget:      o.exchangeBudget,
		ClientIP:            o.clientIP,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.server = h
	if f.cli, err = cliauth.Mount(cliauth.Config{Lifecycle: h.Lifecycle(), Front: h, Logger: o.logger}); err != nil {
		t.Fatal(err)
	}
	f.srv.Config.Handler = h
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clock.IsZero() {
		return time.Now()
	}
	return f.clock
}

// advance moves the daemon's clock (not the provider's) forward.
func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clock.IsZero() {
		f.clock = time.Now()
	}
	f.clock = f.clock.Add(d)
}

func (f *fixture) url(path string) string { return f.srv.URL + path }

// browser is a cookie-keeping HTTP client that follows redirects like a
// browser's popup would.
type browser struct {
	t      testing.TB
	client *http.Client
}

func newBrowser(t testing.TB) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, client: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

func (b *browser) noRedirects() *http.Client {
	c := *b.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func (b *browser) get(u string, header ...string) *http.Response {
	b.t.Helper()
	return b.do(http.MethodGet, u, false, header...)
}

func (b *browser) do(method, u string, noFollow bool, header ...string) *http.Response {
	b.t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := b.client
	if noFollow {
		c = b.noRedirects()
	}
	res, err := c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { res.Body.Close() })
	return res
}

// post sends a form, as the browser submits one.
func (b *browser) post(u string, form url.Values, noFollow bool) *http.Response {
	b.t.Helper()
	c := b.client
	if noFollow {
		c = b.noRedirects()
	}
	res, err := c.PostForm(u, form)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { res.Body.Close() })
	return res
}

func startURL(f *fixture, q url.Values) string {
	return f.url("/api/auth/spectrocloud/start?" + q.Encode())
}

func popupQuery() url.Values {
	return url.Values{"scope": {scope}, "origin": {appOrigin}, "flow": {"popup"}, "env": {"development"}}
}

var scriptValues = regexp.MustCompile(`decodeURIComponent\('([^']*)'\)`)

// frameMessage decodes the frame page's posted message and target origin,
// checking the page's security headers on the way.
func frameMessage(t testing.TB, res *http.Response) (map[string]any, string) {
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

// signIn runs the popup flow and returns the authorization response.
func signIn(t testing.TB, f *fixture, b *browser) map[string]any {
	t.Helper()
	msg, origin := frameMessage(t, b.get(startURL(f, popupQuery())))
	if origin != appOrigin {
		t.Fatalf("target origin = %q, want %q", origin, appOrigin)
	}
	if msg["type"] != "authorization_response" {
		t.Fatalf("message type = %v", msg["type"])
	}
	if msg["error"] != nil {
		t.Fatalf("sign-in error: %v", msg["error"])
	}
	return msg["response"].(map[string]any)
}

func refresh(b *browser, f *fixture) *http.Response {
	return b.get(f.url("/api/auth/spectrocloud/refresh?optional&scope=openid%20profile%20email&env=development"),
		"X-Requested-With", "XMLHttpRequest", "Origin", appOrigin)
}

func decodeJSON(t testing.TB, res *http.Response) map[string]any {
	t.Helper()
	var m map[string]any
	body, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("not JSON (%d): %s", res.StatusCode, body)
	}
	return m
}

// jwtClaims decodes a JWT's payload without verifying it.
func jwtClaims(t testing.TB, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	raw, err := base64URLDecode(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func jwtHeader(t testing.TB, tok string) map[string]any {
	t.Helper()
	raw, err := base64URLDecode(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func jsonNumber(v any) string { b, _ := json.Marshal(v); return string(b) }
