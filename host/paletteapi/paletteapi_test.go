package paletteapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/paletteapi"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// fakeJWT is a JWS with a typ header, as the route picks the session
// function by typ; the fake session functions verify nothing.
func fakeJWT(typ, name string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"typ":"`+typ+`","alg":"ES256","kid":"k"}`)) + "." + enc([]byte(`{"sub":"`+name+`"}`)) + "." + enc([]byte("sig-"+name))
}

// paletteToken is shaped as Palette's HS256 session token, with an exp.
func paletteToken(n int, exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(fmt.Sprintf(`{"n":%d,"exp":%d}`, n, exp.Unix()))) + "." + enc([]byte(fmt.Sprintf("mac-%d", n)))
}

var (
	aliceCLI   = fakeJWT(identity.TypeCLIAccess, "alice")
	bobCLI     = fakeJWT(identity.TypeCLIAccess, "bob") // signed in without a Palette token
	aliceUser  = fakeJWT(identity.TypeUser, "alice")
	forgedCLI  = fakeJWT(identity.TypeCLIAccess, "forged")
	appOrigin  = "https://backstage.example.com"
	cookieName = "spectroauth-refresh"
)

// clock is the test's fake time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakePalette serves the operations of SpectroCloud's spec the tests use:
// v1AuthRefresh (GET /v1/auth/refresh/{token}?setCookie → v1UserToken),
// v1DashboardProjectsMetadata (GET /v1/dashboard/projects/metadata →
// v1ProjectsMetadata), v1SpectroClustersSearchFilterSummary (POST
// /v1/dashboard/spectroclusters/search), and v1Error on refusals.
type fakePalette struct {
	t     *testing.T
	clock *clock
	mu    sync.Mutex
	valid map[string]time.Time // token → exp
	n     int
	// renewals counts v1AuthRefresh calls; seen the Authorization headers
	// of the other calls.
	renewals int
	seen     []string
	// query and project are the last call's query and ProjectUid header.
	query, project string
	// leak makes the projects answer quote the caller's token (a shape
	// the spec does not describe: an explicit extra case).
	leak bool
}

func (p *fakePalette) issue() string {
	p.n++
	exp := p.clock.now().Add(15 * time.Minute)
	tok := paletteToken(p.n, exp)
	p.valid[tok] = exp
	return tok
}

func (p *fakePalette) authorized(tok string) bool {
	exp, ok := p.valid[tok]
	return ok && p.clock.now().Before(exp)
}

func v1Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg})
}

func (p *fakePalette) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Palette sets its session cookie on answers; it must not reach the caller.
	w.Header().Set("Set-Cookie", "Authorization="+r.Header.Get("Authorization")+"; Path=/; HttpOnly")
	if old, ok := strings.CutPrefix(r.URL.Path, "/v1/auth/refresh/"); ok {
		if r.Method != http.MethodGet || r.URL.Query().Get("setCookie") != "false" {
			p.t.Errorf("refresh: %s %s, want GET with setCookie=false", r.Method, r.URL)
		}
		p.renewals++
		if !p.authorized(old) {
			v1Error(w, http.StatusUnauthorized, "InvalidToken", "token expired")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"Authorization": p.issue(), "isMfa": false})
		return
	}
	tok := r.Header.Get("Authorization")
	p.seen = append(p.seen, tok)
	p.query, p.project = r.URL.RawQuery, r.Header.Get("ProjectUid")
	if r.Header.Get("ApiKey") != "" {
		p.t.Errorf("an API key was sent for a user's call")
	}
	if !p.authorized(tok) {
		v1Error(w, http.StatusUnauthorized, "InvalidToken", "unauthorized")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Echo-Authorization", tok)
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/dashboard/projects/metadata":
		items := []map[string]any{{"metadata": map[string]any{"uid": "p1", "name": "team-a"}}}
		if p.leak {
			items[0]["metadata"].(map[string]any)["annotations"] = map[string]any{"token": tok}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"items": items})
	case r.Method == http.MethodPost && r.URL.Path == "/v1/dashboard/spectroclusters/search":
		body, _ := io.ReadAll(r.Body)
		if !json.Valid(body) {
			v1Error(w, http.StatusBadRequest, "InvalidInput", "body")
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"items": []any{}, "listmeta": map[string]any{"count": 0}})
	default:
		v1Error(w, http.StatusNotFound, "ResourceNotFound", "not found")
	}
}

// sessions stands in for the daemon's session store and its
// PaletteSession: alice signed in with a Palette token, bob without.
type sessions struct {
	clock *clock
	mu    sync.Mutex
	alice session.UpstreamTokens
}

func (s *sessions) cli(_ context.Context, tok string) (*lifecycle.UserSession, error) {
	switch tok {
	case aliceCLI:
		return s.aliceSession(), nil
	case bobCLI:
		return &lifecycle.UserSession{Env: "development", Session: &session.Session{UserEntityRef: "user:default/bob"}, Tokens: &upstream.Tokens{}}, nil
	}
	return nil, fmt.Errorf("%w: bad signature", lifecycle.ErrUnauthenticated)
}

// browser checks what (*server.Server).BrowserSession checks.
func (s *sessions) browser(r *http.Request) (*lifecycle.UserSession, error) {
	if r.Header.Get("Origin") != appOrigin || r.Header.Get("X-Requested-With") == "" {
		return nil, fmt.Errorf("%w: origin not allowed", lifecycle.ErrUnauthenticated)
	}
	if c, err := r.Cookie(cookieName); err != nil || c.Value != "alice-handle" {
		return nil, fmt.Errorf("%w: no session cookie", lifecycle.ErrUnauthenticated)
	}
	return s.aliceSession(), nil
}

func (s *sessions) aliceSession() *lifecycle.UserSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &lifecycle.UserSession{
		Env:     "development",
		Session: &session.Session{UserEntityRef: "user:default/alice", Upstream: s.alice},
		Tokens:  &upstream.Tokens{PaletteSessionToken: s.alice.PaletteSessionToken},
	}
}

// paletteSession renews as (*server.Server).PaletteSession decides:
// lifecycle.PaletteTokenDue on the fake clock.
func (s *sessions) paletteSession(ctx context.Context, us *lifecycle.UserSession, renew lifecycle.PaletteRenewal) (*lifecycle.UserSession, error) {
	if !lifecycle.PaletteTokenDue(us.Session.Upstream, lifecycle.PaletteRenewalMargin, s.clock.now()) {
		return us, nil
	}
	tok, exp, err := renew(ctx, us.Session.Upstream.PaletteSessionToken)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.alice = session.UpstreamTokens{PaletteSessionToken: tok, PaletteSessionTokenExpiry: exp}
	s.mu.Unlock()
	return s.aliceSession(), nil
}

type env struct {
	palette  *fakePalette
	sessions *sessions
	clock    *clock
	srv      *httptest.Server
}

func newEnv(t *testing.T, allow ...string) *env {
	t.Helper()
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	p := &fakePalette{t: t, clock: c, valid: map[string]time.Time{}}
	ps := httptest.NewServer(p)
	t.Cleanup(ps.Close)
	s := &sessions{clock: c}
	first := p.issue()
	s.alice = session.UpstreamTokens{PaletteSessionToken: first}
	base, _ := url.Parse(ps.URL)
	var rules []config.PaletteRule
	for _, a := range allow {
		r, err := config.ParsePaletteRule(a)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	h, err := paletteapi.New(paletteapi.Config{
		Callers:        lifecycle.CredentialCallers{CLISessions: s.cli, BrowserSessions: s.browser},
		PaletteSession: s.paletteSession,
		BaseURL:        func(string) (*url.URL, error) { return base, nil },
		Allow:          rules,
		HTTPClient:     upstream.NewBackChannelClient(nil, 5*time.Second, 1<<20),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(paletteapi.RoutePrefix, h)
	d := httptest.NewServer(mux)
	t.Cleanup(d.Close)
	return &env{palette: p, sessions: s, clock: c, srv: d}
}

func (e *env) call(t *testing.T, method, path string, header ...string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"filter":{}}`)
	}
	req, err := http.NewRequest(method, e.srv.URL+paletteapi.RoutePrefix+strings.TrimPrefix(path, "/"), body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// noTokenLeaks fails when any Palette token appears in the answer.
func (e *env) noTokenLeaks(t *testing.T, res *http.Response, body string) {
	t.Helper()
	e.palette.mu.Lock()
	defer e.palette.mu.Unlock()
	for tok := range e.palette.valid {
		if strings.Contains(body, tok) {
			t.Errorf("the answer's body holds a Palette token: %s", body)
		}
		for k, vs := range res.Header {
			for _, v := range vs {
				if strings.Contains(v, tok) {
					t.Errorf("the answer's header %s holds a Palette token", k)
				}
			}
		}
	}
	if res.Header.Get("Set-Cookie") != "" {
		t.Errorf("Palette's Set-Cookie reached the caller")
	}
}

const projects = "/v1/dashboard/projects/metadata"

func TestCallsPaletteAsTheUser(t *testing.T) {
	e := newEnv(t)
	want := e.sessions.alice.PaletteSessionToken
	for name, hdr := range map[string][]string{
		"command-line access token": {"Authorization", "Bearer " + aliceCLI},
		"browser session":           {"Origin", appOrigin, "X-Requested-With", "XMLHttpRequest", "Cookie", cookieName + "=alice-handle"},
	} {
		res, body := e.call(t, http.MethodGet, projects, hdr...)
		if res.StatusCode != http.StatusOK || !strings.Contains(body, `"team-a"`) {
			t.Fatalf("%s: %d %s", name, res.StatusCode, body)
		}
		e.noTokenLeaks(t, res, body)
	}
	for _, got := range e.palette.seen {
		if got != want {
			t.Errorf("Palette got Authorization %q, want the user's session token", got)
		}
	}
	if e.palette.renewals != 0 {
		t.Errorf("a fresh token was renewed %d times", e.palette.renewals)
	}
	// The query goes on without the daemon's env; the project scope header too.
	e.call(t, http.MethodGet, projects+"?env=development&filter=a", "Authorization", "Bearer "+aliceCLI, "ProjectUid", "p1", "Cookie", "x=y")
	if e.palette.query != "filter=a" || e.palette.project != "p1" {
		t.Errorf("Palette got query %q and ProjectUid %q, want filter=a and p1", e.palette.query, e.palette.project)
	}
}

func TestRenewsTheTokenNearItsEnd(t *testing.T) {
	e := newEnv(t)
	first := e.sessions.alice.PaletteSessionToken
	auth := []string{"Authorization", "Bearer " + aliceCLI}
	e.clock.advance(12 * time.Minute) // 3 minutes left: used as it is
	if res, body := e.call(t, http.MethodGet, projects, auth...); res.StatusCode != http.StatusOK || e.palette.renewals != 0 {
		t.Fatalf("3 minutes left: %d %s, %d renewals", res.StatusCode, body, e.palette.renewals)
	}
	e.clock.advance(90 * time.Second) // 90 seconds left: renewed first
	res, body := e.call(t, http.MethodGet, projects, auth...)
	if res.StatusCode != http.StatusOK || e.palette.renewals != 1 {
		t.Fatalf("90 seconds left: %d %s, %d renewals", res.StatusCode, body, e.palette.renewals)
	}
	e.noTokenLeaks(t, res, body)
	last := e.palette.seen[len(e.palette.seen)-1]
	if last == first || last != e.sessions.alice.PaletteSessionToken {
		t.Errorf("the call did not use the renewed token")
	}
	e.clock.advance(10 * time.Minute) // past the first token's end
	if res, body := e.call(t, http.MethodGet, projects, auth...); res.StatusCode != http.StatusOK || e.palette.renewals != 1 {
		t.Fatalf("on the renewed token: %d %s, %d renewals", res.StatusCode, body, e.palette.renewals)
	}

	// Palette refuses the renewal (the token outlived its session): 503
	// with the reason, no fallback.
	e.clock.advance(time.Hour)
	res, body = e.call(t, http.MethodGet, projects, auth...)
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "sign in again") {
		t.Errorf("refused renewal: %d %s", res.StatusCode, body)
	}
	e.noTokenLeaks(t, res, body)
}

func TestRefusedCallers(t *testing.T) {
	e := newEnv(t, "POST /v1/dashboard/spectroclusters/search")
	browser := []string{"X-Requested-With", "XMLHttpRequest", "Cookie", cookieName + "=alice-handle"}
	for _, c := range []struct {
		name, method, path string
		header             []string
		status             int
		message            string
	}{
		{"Backstage user token alone", http.MethodGet, projects, []string{"Authorization", "Bearer " + aliceUser}, 401, "Backstage user token"},
		{"no credential", http.MethodGet, projects, nil, 401, "Missing credential"},
		{"forged token", http.MethodGet, projects, []string{"Authorization", "Bearer " + forgedCLI}, 401, "Invalid credential"},
		{"Palette token itself", http.MethodGet, projects, []string{"Authorization", e.sessions.alice.PaletteSessionToken}, 401, "Missing credential"},
		{"cookie from another origin", http.MethodGet, projects, append([]string{"Origin", "https://evil.example.com"}, browser...), 401, "Invalid credential"},
		{"cookie without an origin", http.MethodGet, projects, browser, 401, "Invalid credential"},
		{"no Palette session token", http.MethodGet, projects, []string{"Authorization", "Bearer " + bobCLI}, 503, "no Palette session token"},
		{"method not allowed", http.MethodDelete, "/v1/spectroclusters/c1", []string{"Authorization", "Bearer " + aliceCLI}, 403, "paletteApi.allow"},
		{"POST outside the allow-list", http.MethodPost, "/v1/auth/authenticate", []string{"Authorization", "Bearer " + aliceCLI}, 404, "Not a Palette API path"},
		{"refresh through the route", http.MethodGet, "/v1/auth/refresh/x", []string{"Authorization", "Bearer " + aliceCLI}, 404, "Not a Palette API path"},
		{"path outside v1", http.MethodGet, "/v2/x", []string{"Authorization", "Bearer " + aliceCLI}, 404, "Not a Palette API path"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, body := e.call(t, c.method, c.path, c.header...)
			if res.StatusCode != c.status || !strings.Contains(body, c.message) {
				t.Errorf("%d %s, want %d with %q", res.StatusCode, body, c.status, c.message)
			}
			e.noTokenLeaks(t, res, body)
		})
	}
	if len(e.palette.seen) != 0 || e.palette.renewals != 0 {
		t.Errorf("refused callers reached Palette: %d calls, %d renewals", len(e.palette.seen), e.palette.renewals)
	}
	// The allow-list lets POST through on its prefix.
	res, body := e.call(t, http.MethodPost, "/v1/dashboard/spectroclusters/search", "Authorization", "Bearer "+aliceCLI, "Content-Type", "application/json")
	if res.StatusCode != http.StatusOK {
		t.Errorf("allowed POST: %d %s", res.StatusCode, body)
	}
}

// Extra case outside the spec: an answer quoting the user's token is withheld.
func TestAnswerHoldingTheTokenIsWithheld(t *testing.T) {
	e := newEnv(t)
	e.palette.leak = true
	res, body := e.call(t, http.MethodGet, projects, "Authorization", "Bearer "+aliceCLI)
	if res.StatusCode != http.StatusBadGateway {
		t.Errorf("%d %s, want 502", res.StatusCode, body)
	}
	e.noTokenLeaks(t, res, body)
}

func TestRefreshErrorsHoldNoToken(t *testing.T) {
	base, _ := url.Parse("http://127.0.0.1:1")
	_, _, err := paletteapi.Refresh(context.Background(), upstream.NewBackChannelClient(nil, time.Second, 1<<10), base, "secret-token")
	if err == nil || strings.Contains(err.Error(), "secret-token") || errors.Is(err, lifecycle.ErrPaletteTokenRefused) {
		t.Errorf("err = %v", err)
	}
}
