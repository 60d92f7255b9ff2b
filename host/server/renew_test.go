package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// fakeUpstream is a provider whose refresh the test scripts: it rotates the
// refresh token on every use and refuses a used one, as providers with
// refresh token rotation do.
type fakeUpstream struct {
	now func() time.Time

	// noRefresh: the provider issues no refresh token (Palette).
	noRefresh bool
	// idTTL is the ID tokens' lifetime; zero means an hour.
	idTTL time.Duration
	// keepIDToken: refresh answers with a new access token (valid an hour)
	// and no new ID token, as OpenID Connect allows.
	keepIDToken bool

	mu      sync.Mutex
	valid   string // the one refresh token the provider accepts
	n       int
	revoked []string
	// block, when set, is called inside Refresh before it answers.
	block func(ctx context.Context) error
	// calls counts Refresh and CheckUserinfo calls: what the provider sees.
	calls int
	// refuseUser: the user was disabled upstream; refresh answers
	// invalid_grant and userinfo 401.
	refuseUser bool
	// noUserinfo: the provider has no userinfo endpoint.
	noUserinfo bool
	// editConfig, when set, edits the server's configuration
	// (withServerConfig).
	editConfig func(*server.Config)
}

func (u *fakeUpstream) providerCalls() int { u.mu.Lock(); defer u.mu.Unlock(); return u.calls }

func (u *fakeUpstream) disableUser() { u.mu.Lock(); u.refuseUser = true; u.mu.Unlock() }

func (u *fakeUpstream) CheckUserinfo(_ context.Context, t *upstream.Tokens) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.noUserinfo {
		return upstream.ErrNoUserinfo
	}
	u.calls++
	if u.refuseUser {
		return &upstream.TokenError{Op: "revalidating with userinfo", StatusCode: 401}
	}
	return nil
}

func (u *fakeUpstream) tokens(rt string) *upstream.Tokens {
	ttl := u.idTTL
	if ttl == 0 {
		ttl = time.Hour
	}
	exp := u.now().Add(ttl)
	claims := map[string]any{"sub": "alice-sub", "email": "alice@example.com", "email_verified": true, "exp": float64(exp.Unix())}
	payload, _ := json.Marshal(claims)
	return &upstream.Tokens{
		IDToken:       b64(`{"alg":"RS256"}`) + "." + b64(string(payload)) + ".sig",
		AccessToken:   "at-" + rt,
		RefreshToken:  rt,
		TokenType:     "Bearer",
		Scope:         scope,
		IDTokenExpiry: exp,
		Claims:        claims,
		Profile:       upstream.ProfileFromClaims(claims, false),
	}
}

func (u *fakeUpstream) setBlock(fn func(ctx context.Context) error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.block = fn
}

func (u *fakeUpstream) AuthCodeURL(a upstream.AuthRequest) string {
	return "https://op.invalid/authorize?state=" + url.QueryEscape(a.State)
}

func (u *fakeUpstream) Exchange(context.Context, string, string, string, string) (*upstream.Tokens, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.n++
	u.valid = "rt-1"
	if u.noRefresh {
		u.valid = ""
	}
	return u.tokens(u.valid), nil
}

func (u *fakeUpstream) Refresh(ctx context.Context, t *upstream.Tokens) (*upstream.Tokens, error) {
	u.mu.Lock()
	block := u.block
	u.calls++
	refuse := u.refuseUser
	u.mu.Unlock()
	if refuse {
		return nil, &upstream.TokenError{Op: "refreshing tokens", StatusCode: 400, Code: "invalid_grant"}
	}
	if block != nil {
		if err := block(ctx); err != nil {
			return nil, err
		}
	}
	if t.RefreshToken == "" {
		return nil, upstream.ErrNoRefreshToken
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if t.RefreshToken != u.valid {
		return nil, &upstream.TokenError{Op: "refreshing tokens", StatusCode: 400, Code: "invalid_grant"}
	}
	u.n++
	u.valid = "rt-" + string(rune('0'+u.n))
	if u.keepIDToken {
		kept := *t
		kept.AccessToken, kept.RefreshToken = "at-"+u.valid, u.valid
		kept.AccessTokenExpiry = u.now().Add(time.Hour)
		return &kept, nil
	}
	return u.tokens(u.valid), nil
}

func (u *fakeUpstream) Revoke(_ context.Context, t *upstream.Tokens) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.revoked = append(u.revoked, t.RefreshToken)
	return nil
}

func (u *fakeUpstream) CheckAuthorizationResponseIssuer(string) error { return nil }

// flakyResolver resolves alice, or fails (not "not found") while failing is set.
type flakyResolver struct {
	mu      sync.Mutex
	failing bool
	calls   int
}

func (r *flakyResolver) count() int { r.mu.Lock(); defer r.mu.Unlock(); return r.calls }

func (r *flakyResolver) set(failing bool) { r.mu.Lock(); r.failing = failing; r.mu.Unlock() }

func (r *flakyResolver) Resolve(context.Context, signin.Input) (signin.Identity, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.failing {
		return signin.Identity{}, errors.New("catalog unreachable")
	}
	return signin.Identity{UserEntityRef: "user:default/alice"}, nil
}

// fakeFixture is the daemon's HTTP layer in front of fakeUpstream, with a
// clock the test moves.
type fakeFixture struct {
	T        *testing.T
	up       *fakeUpstream
	resolver *flakyResolver
	Srv      *httptest.Server
	Sessions session.Store
	mu       sync.Mutex
	clock    time.Time
	// ended counts SessionEnded reports by reason.
	ended map[string]int
}

// endedCount is how many sessions SessionEnded reported for reason.
func (f *fakeFixture) endedCount(reason string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ended[reason]
}

// withServerConfig is a newFakeFixture option that edits the server's
// configuration before the server is built.
func withServerConfig(edit func(*server.Config)) func(*fakeUpstream) {
	return func(u *fakeUpstream) { u.editConfig = edit }
}

func newFakeFixture(t *testing.T, opts ...func(*fakeUpstream)) *fakeFixture {
	f := &fakeFixture{T: t, clock: time.Now(), resolver: &flakyResolver{}, ended: map[string]int{}}
	f.up = &fakeUpstream{now: f.Now}
	for _, o := range opts {
		o(f.up)
	}
	f.Srv = httptest.NewUnstartedServer(nil)
	base := "http://" + f.Srv.Listener.Addr().String()
	iss, err := identity.New(identity.Config{Issuer: base + "/api/auth", KeyStore: identity.NewMemoryKeyStore(), Now: f.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.Sessions = session.NewMemoryStore(session.Options{Now: f.Now})
	cfg := server.Config{
		BaseURL:    base,
		AppBaseURL: appOrigin,
		Envs: map[string]*server.Env{"development": {
			Upstream:        f.up,
			SignIn:          f.resolver,
			RefreshMargin:   5 * time.Minute,
			SessionDuration: 24 * time.Hour,
		}},
		Identity: iss,
		UserInfo: identity.NewMemoryUserInfoStore(),
		Sessions: f.Sessions,
		FlowKey:  []byte(strings.Repeat("k", 32)),
		Now:      f.Now,
		SessionEnded: func(_, reason string, n int) {
			f.mu.Lock()
			f.ended[reason] += n
			f.mu.Unlock()
		},
	}
	if f.up.editConfig != nil {
		f.up.editConfig(&cfg)
	}
	h, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.Srv.Config.Handler = h
	f.Srv.Start()
	t.Cleanup(f.Srv.Close)
	return f
}

func (f *fakeFixture) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock
}

func (f *fakeFixture) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock = f.clock.Add(d)
}

// signIn runs /start and the callback in a fresh browser and returns it
// with its session handle.
func (f *fakeFixture) signIn() (*browser, string) {
	f.T.Helper()
	b := newBrowser(f.T)
	res := b.Do(http.MethodGet, f.Srv.URL+"/api/auth/spectrocloud/start?"+popupQuery().Encode(), true)
	loc, err := res.Location()
	if err != nil {
		f.T.Fatalf("start: %d", res.StatusCode)
	}
	cb := f.Srv.URL + "/api/auth/spectrocloud/handler/frame?code=c&state=" + url.QueryEscape(loc.Query().Get("state"))
	msg, _ := frameMessage(f.T, b.Get(cb))
	if msg["error"] != nil {
		f.T.Fatalf("sign-in: %v", msg["error"])
	}
	u, _ := url.Parse(f.Srv.URL + "/api/auth/spectrocloud")
	for _, c := range b.Client.Jar.Cookies(u) {
		if c.Name == "spectrocloud-refresh-token" {
			return b, c.Value
		}
	}
	f.T.Fatal("no refresh cookie after sign-in")
	return nil, ""
}

func (f *fakeFixture) refreshCtx(ctx context.Context, b *browser) (*http.Response, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.Srv.URL+"/api/auth/spectrocloud/refresh?optional&env=development", nil)
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	req.Header.Set("Origin", appOrigin)
	res, err := b.Client.Do(req)
	if err == nil {
		f.T.Cleanup(func() { res.Body.Close() })
	}
	return res, err
}

func (f *fakeFixture) refresh(b *browser) int {
	f.T.Helper()
	res, err := f.refreshCtx(context.Background(), b)
	if err != nil {
		f.T.Fatal(err)
	}
	return res.StatusCode
}

// browserWithHandle is a browser holding only a session cookie.
func (f *fakeFixture) browserWithHandle(handle string) *browser {
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(f.Srv.URL + "/api/auth/spectrocloud")
	jar.SetCookies(u, []*http.Cookie{{Name: "spectrocloud-refresh-token", Value: handle, Path: "/api/auth/spectrocloud"}})
	return &browser{T: f.T, Client: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// A refresh that rotated the provider's refresh token keeps the new one even
// when issuing the Backstage token then fails: the old one is spent, so
// losing the new one would sign the user out on the next refresh.
func TestRotatedRefreshTokenSurvivesFailedReissue(t *testing.T) {
	f := newFakeFixture(t)
	b, _ := f.signIn()

	f.Advance(56 * time.Minute) // within the margin: refresh goes upstream
	f.resolver.set(true)
	if got := f.refresh(b); got != http.StatusUnauthorized {
		t.Fatalf("refresh with the resolver down: %d, want 401", got)
	}
	f.resolver.set(false)
	if got := f.refresh(b); got != http.StatusOK {
		t.Fatalf("refresh once the resolver is back: %d, want 200 (the rotated refresh token was lost)", got)
	}
}

// blockRefresh makes the provider's refresh wait for release (or for its
// context to end); entered is closed when a refresh is waiting.
func (f *fakeFixture) blockRefresh() (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	f.up.setBlock(func(ctx context.Context) error {
		once.Do(func() { close(entered) })
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	return entered, release
}

// A browser that goes away while its refresh is at the provider does not
// end the session: the renewal is shared by every tab of the session, and
// a refresh cancelled after the provider rotated its refresh token would
// lose the new one.
func TestCancelledRefreshDoesNotEndSession(t *testing.T) {
	f := newFakeFixture(t)
	b, _ := f.signIn()
	f.Advance(2 * time.Hour) // the ID token has expired; the session has not

	entered, release := f.blockRefresh()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = f.refreshCtx(ctx, b)
	}()
	<-entered
	cancel()
	<-done
	time.Sleep(300 * time.Millisecond) // let the daemon notice the closed connection
	close(release)
	f.up.setBlock(nil)

	if got := f.refresh(b); got != http.StatusOK {
		t.Fatalf("refresh after a cancelled one: %d, want 200", got)
	}
}

// Signing out while the session's renewal is at the provider ends the
// session for good: the renewal must not store it again afterwards.
func TestLogoutDuringRenewalEndsSession(t *testing.T) {
	f := newFakeFixture(t)
	b, handle := f.signIn()
	f.Advance(56 * time.Minute)

	entered, release := f.blockRefresh()
	status := make(chan int, 1)
	go func() {
		res, err := f.refreshCtx(context.Background(), f.browserWithHandle(handle))
		if err != nil {
			status <- 0
			return
		}
		status <- res.StatusCode
	}()
	<-entered
	res := b.Do(http.MethodPost, f.Srv.URL+"/api/auth/spectrocloud/logout?env=development", false, "X-Requested-With", "XMLHttpRequest")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("logout: %d", res.StatusCode)
	}
	close(release)
	if got := <-status; got != http.StatusUnauthorized {
		t.Errorf("the refresh that raced the logout: %d, want 401", got)
	}
	f.up.setBlock(nil)

	if got := f.refresh(f.browserWithHandle(handle)); got != http.StatusUnauthorized {
		t.Fatalf("refresh with the signed-out handle: %d, want 401 (the renewal brought the session back)", got)
	}
	f.up.mu.Lock()
	defer f.up.mu.Unlock()
	if n := len(f.up.revoked); n != 2 {
		t.Errorf("revocations = %v, want the signed-out tokens and the ones the renewal got", f.up.revoked)
	}
}

// Near the end of an ID token the provider cannot renew (Palette issues no
// refresh token), /refresh keeps serving the stored tokens; it re-runs the
// sign-in resolvers and re-issues the Backstage token only when that token
// is past half its lifetime, not on every call.
func TestNoReissueWhenNothingChangedUpstream(t *testing.T) {
	f := newFakeFixture(t, func(u *fakeUpstream) { u.noRefresh, u.idTTL = true, 2*time.Hour })
	b, _ := f.signIn()
	f.Advance(2*time.Hour - 4*time.Minute) // within the margin; the Backstage token is stale
	if got := f.refresh(b); got != http.StatusOK {
		t.Fatalf("refresh: %d", got)
	}
	calls := f.resolver.count()
	for range 5 {
		f.Advance(10 * time.Second)
		if got := f.refresh(b); got != http.StatusOK {
			t.Fatalf("refresh: %d", got)
		}
	}
	if got := f.resolver.count(); got != calls {
		t.Fatalf("resolver calls = %d after five refreshes with a fresh Backstage token, want %d", got, calls)
	}
}

// A provider that is down when the ID token has already expired cannot
// renew the session, but says nothing against it: the session (and its
// refresh token) stays for the next refresh. Only a refusal ends it.
func TestProviderOutageAfterExpiryKeepsSession(t *testing.T) {
	f := newFakeFixture(t)
	b, handle := f.signIn()
	f.Advance(2 * time.Hour)

	for _, outage := range []error{
		&upstream.TokenError{Op: "refreshing tokens", StatusCode: http.StatusServiceUnavailable},
		&url.Error{Op: "Post", URL: "https://op.invalid/token", Err: errors.New("connection refused")},
		fmt.Errorf("upstream: verifying the ID token: %w: JWKS down", upstream.ErrKeysUnavailable),
	} {
		f.up.setBlock(func(context.Context) error { return outage })
		if got := f.refresh(b); got != http.StatusUnauthorized {
			t.Fatalf("refresh during an outage (%v): %d, want 401", outage, got)
		}
		// The provider is asked again after the outage backoff only.
		f.Advance(31 * time.Second)
	}
	f.up.setBlock(nil)
	if got := f.refresh(b); got != http.StatusOK {
		t.Fatalf("refresh once the provider is back: %d, want 200", got)
	}

	// A refusal does end it.
	f.Advance(2 * time.Hour)
	f.up.mu.Lock()
	f.up.valid = "revoked-at-the-provider"
	f.up.mu.Unlock()
	if got := f.refresh(b); got != http.StatusUnauthorized {
		t.Fatalf("refresh after the provider refused: %d, want 401", got)
	}
	f.up.mu.Lock()
	f.up.valid = "rt-2"
	f.up.mu.Unlock()
	if got := f.refresh(f.browserWithHandle(handle)); got != http.StatusUnauthorized {
		t.Fatalf("refresh after a refusal: %d, want 401 (the session should have ended)", got)
	}
}

// A provider that refreshes without a new ID token is asked once, not on
// every page load until the ID token expires.
func TestRefreshWithoutNewIDTokenAsksOnce(t *testing.T) {
	f := newFakeFixture(t, func(u *fakeUpstream) { u.keepIDToken = true })
	b, _ := f.signIn()
	f.Advance(57 * time.Minute) // within the 5-minute margin of the ID token
	for i := range 5 {
		if got := f.refresh(b); got != http.StatusOK {
			t.Fatalf("refresh %d: %d", i, got)
		}
	}
	f.up.mu.Lock()
	n := f.up.n
	f.up.mu.Unlock()
	if n != 2 { // the sign-in's exchange, then one refresh
		t.Fatalf("provider asked %d times, want 2 (exchange + one refresh)", n)
	}
}
