package cliauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/lifecycle/lifecycletest"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/session/sessiontest"
	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// testFront stands in for Backstage's routes: a mux, plain error bodies,
// no rate limit, a nonce cookie of its own.
type testFront struct {
	mux       *http.ServeMux
	callbacks map[string]func(http.ResponseWriter, *http.Request, url.Values) error
}

var _ Front = (*testFront)(nil)

func (f *testFront) Handle(p string, h http.Handler) { f.mux.Handle(p, h) }
func (f *testFront) API(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			backstageerr.Write(w, r, err)
		}
	})
}
func (f *testFront) Limited(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return h
}
func (f *testFront) HandleCallbackStates(prefix string, h func(http.ResponseWriter, *http.Request, url.Values) error) {
	f.callbacks[prefix] = h
}
func (f *testFront) SetNonce(w http.ResponseWriter, _ *lifecycle.Env, n string) {
	http.SetCookie(w, &http.Cookie{Name: "nonce", Value: n})
}
func (f *testFront) ClearNonce(http.ResponseWriter, *lifecycle.Env) {}
func (f *testFront) Nonce(r *http.Request, _ *lifecycle.Env) string { return cookieValue(r, "nonce") }
func (f *testFront) CookieScope(*lifecycle.Env) (string, bool) {
	return "/api/auth/spectrocloud", false
}
func (f *testFront) SignInDone(string, string, error) {}
func (f *testFront) AuthBase() string                 { return "http://127.0.0.1/api/auth" }

type unitFixture struct {
	h     *Handler
	front *testFront
	up    *lifecycletest.Upstream
	clock *sessiontest.Clock
	store session.Store
}

// newUnitFixture mounts the command-line routes over a lifecycle on a fake
// clock and a scripted provider, behind testFront: no Backstage routes, no
// HTTP server.
func newUnitFixture(t *testing.T) *unitFixture {
	t.Helper()
	f := &unitFixture{clock: sessiontest.NewClock(), front: &testFront{mux: http.NewServeMux(), callbacks: map[string]func(http.ResponseWriter, *http.Request, url.Values) error{}}}
	f.up = lifecycletest.NewUpstream(f.clock.Now, "alice")
	iss, err := identity.New(identity.Config{Issuer: "http://127.0.0.1/api/auth", KeyStore: identity.NewMemoryKeyStore(), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.store = session.NewMemoryStore(session.Options{Now: f.clock.Now, SweepInterval: -1})
	lc, err := lifecycle.New(lifecycle.Config{
		Envs: map[string]*lifecycle.Env{"development": {
			Upstream: f.up, RefreshMargin: 5 * time.Minute, SessionDuration: 24 * time.Hour,
			SignIn: signin.Chain{{Name: "builtin/emailLocalPart", Resolver: signin.EmailLocalPart{}}},
		}},
		Identity: iss, Sessions: f.store, FlowKey: []byte(strings.Repeat("k", 32)), Now: f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.h, err = Mount(Config{Lifecycle: lc, Front: f.front}); err != nil {
		t.Fatal(err)
	}
	return f
}

// signedIn is a command-line session completed through the lifecycle, as
// the callback completes one, and its secret.
func (f *unitFixture) signedIn(t *testing.T) string {
	t.Helper()
	secret, err := session.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	env, _ := f.h.lc.Env("development")
	if _, err := f.h.lc.Complete(t.Context(), env, lifecycle.Completion{Nonce: "n", Code: lifecycletest.GoodCode, Kind: session.KindCLI, Key: cliSessionKey(secret)}); err != nil {
		t.Fatal(err)
	}
	return secret
}

func (f *unitFixture) token(t *testing.T, form url.Values) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/api/auth/spectrocloud/cli/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	f.front.mux.ServeHTTP(rec, r)
	var body map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	return rec.Code, body
}

// Mount claims the command line's callback states from the front, and a
// state it did not make reaches no provider.
func TestMountClaimsCLICallbacks(t *testing.T) {
	f := newUnitFixture(t)
	cb, ok := f.front.callbacks[cliStatePrefix]
	if !ok || len(f.front.callbacks) != 1 {
		t.Fatalf("callback prefixes %v, want only %q", f.front.callbacks, cliStatePrefix)
	}
	forged := cliRequest{Nonce: "n", Env: "development", Issued: f.clock.Now().Unix()}.encode() + ".made-up-mac"
	r := httptest.NewRequest(http.MethodGet, "/api/auth/spectrocloud/handler/frame", nil)
	r.AddCookie(&http.Cookie{Name: "nonce", Value: "n"})
	err := cb(httptest.NewRecorder(), r, url.Values{"state": {forged}, "code": {"c"}})
	if exchanges, _, _ := f.up.Counts(); backstageerr.As(err).Status != http.StatusForbidden || exchanges != 0 {
		t.Fatalf("forged command-line state: %v, %d exchanges; want 403 and none", err, exchanges)
	}
}

// The token endpoint rotates refresh tokens over the lifecycle's session:
// the rotated token works, a spent one ends the session (revoked upstream)
// and its access tokens with it.
func TestTokenEndpointRotatesAndEndsOnReuse(t *testing.T) {
	f := newUnitFixture(t)
	secret := f.signedIn(t)
	first := f.h.cliRefreshToken(secret, 0)
	code, res := f.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first}})
	if code != http.StatusOK || res["user"] != "user:default/alice" {
		t.Fatalf("refresh grant: %d %v", code, res)
	}
	access := res["access_token"].(string)
	if us, err := f.h.Session(t.Context(), access); err != nil || us.Session.Kind != session.KindCLI {
		t.Fatalf("Session(access token) = %v, %v", us, err)
	}
	if code, _ := f.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {res["refresh_token"].(string)}}); code != http.StatusOK {
		t.Fatalf("the rotated refresh token: %d", code)
	}
	code, res = f.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first}})
	if code != http.StatusBadRequest || res["error"] != "invalid_grant" {
		t.Fatalf("spent refresh token: %d %v, want invalid_grant", code, res)
	}
	if _, err := f.store.Get(t.Context(), cliSessionKey(secret)); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("the session outlived the reuse of a spent token: %v", err)
	}
	if _, err := f.h.Session(t.Context(), access); !errors.Is(err, lifecycle.ErrSessionEnded) {
		t.Errorf("Session after reuse = %v, want ErrSessionEnded", err)
	}
	if _, _, revoked := f.up.Counts(); revoked != 1 {
		t.Errorf("upstream revocations = %d, want 1", revoked)
	}
}

// A grant asks the provider when the lifecycle's policy says so, and its
// refusal ends the command-line session: the program is told to sign in
// again.
func TestTokenEndpointRevalidatesThroughLifecycle(t *testing.T) {
	f := newUnitFixture(t)
	secret := f.signedIn(t)
	tok := f.h.cliRefreshToken(secret, 0)
	code, res := f.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}})
	if _, refreshes, _ := f.up.Counts(); code != http.StatusOK || refreshes != 0 {
		t.Fatalf("grant within the interval: %d, %d provider calls", code, refreshes)
	}
	f.clock.Advance(lifecycle.DefaultRevalidateInterval)
	f.up.SetRefreshErr(&upstream.TokenError{Op: "refreshing tokens", StatusCode: 400, Code: "invalid_grant"})
	code, res = f.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {res["refresh_token"].(string)}})
	if _, refreshes, _ := f.up.Counts(); code != http.StatusBadRequest || res["error"] != "invalid_grant" || refreshes != 1 {
		t.Fatalf("grant after the provider refused: %d %v, %d provider calls", code, res, refreshes)
	}
	if _, err := f.store.Get(t.Context(), cliSessionKey(secret)); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("the refused session is still stored: %v", err)
	}
}
