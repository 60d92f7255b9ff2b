package lifecycle_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/internal/ratelimit"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/lifecycle/lifecycletest"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/session/sessiontest"
	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// resolverFunc adapts a function to signin.Resolver.
type resolverFunc func(signin.Input) (signin.Identity, error)

func (f resolverFunc) Resolve(_ context.Context, in signin.Input) (signin.Identity, error) {
	return f(in)
}

// harness is a Manager on a fake clock and a fake provider, its sessions in
// memory; ended and rejected count what the metrics would.
type harness struct {
	m        *lifecycle.Manager
	env      *lifecycle.Env
	up       *lifecycletest.Upstream
	clock    *sessiontest.Clock
	store    session.Store
	mu       sync.Mutex
	ended    map[string]int
	rejected int
}

func newHarness(t *testing.T, edit func(*lifecycle.Config)) *harness {
	t.Helper()
	h := &harness{clock: sessiontest.NewClock(), ended: map[string]int{}}
	h.up = lifecycletest.NewUpstream(h.clock.Now, "alice")
	iss, err := identity.New(identity.Config{Issuer: "http://127.0.0.1/api/auth", KeyStore: identity.NewMemoryKeyStore(), Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	h.store = session.NewMemoryStore(session.Options{Now: h.clock.Now, SweepInterval: -1})
	h.env = &lifecycle.Env{
		Upstream: h.up, RefreshMargin: 5 * time.Minute, SessionDuration: 24 * time.Hour,
		SignIn: resolverFunc(func(in signin.Input) (signin.Identity, error) {
			if in.Profile.Subject == "mallory" {
				return signin.Identity{}, signin.ErrNoIdentity
			}
			return signin.Identity{UserEntityRef: "user:default/" + in.Profile.Subject}, nil
		}),
	}
	cfg := lifecycle.Config{
		Envs: map[string]*lifecycle.Env{"development": h.env}, Identity: iss, Sessions: h.store,
		FlowKey: []byte(strings.Repeat("k", 32)), Now: h.clock.Now,
		SessionEnded: func(_, reason string, n int) {
			h.mu.Lock()
			h.ended[reason] += n
			h.mu.Unlock()
		},
		ClientRejected: func(string) { h.mu.Lock(); h.rejected++; h.mu.Unlock() },
	}
	if edit != nil {
		edit(&cfg)
	}
	if h.m, err = lifecycle.New(cfg); err != nil {
		t.Fatal(err)
	}
	return h
}

// signIn begins and completes a sign-in and returns the session's handle.
func (h *harness) signIn(t *testing.T) (string, session.Key) {
	t.Helper()
	nonce, _, err := h.m.Begin(h.env, "openid", func(string) string { return "state" })
	if err != nil {
		t.Fatal(err)
	}
	handle, key, err := lifecycle.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Complete(t.Context(), h.env, lifecycle.Completion{Nonce: nonce, Code: lifecycletest.GoodCode, Key: key}); err != nil {
		t.Fatal(err)
	}
	return handle, key
}

func (h *harness) endedCount(reason string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ended[reason]
}

func (h *harness) rejectedCount() int { h.mu.Lock(); defer h.mu.Unlock(); return h.rejected }

// Begin binds the PKCE verifier and the ID token nonce to the sign-in's
// nonce with the flow key, and hands the nonce to the state.
func TestBegin(t *testing.T) {
	h := newHarness(t, nil)
	var inState string
	nonce, url, err := h.m.Begin(h.env, "openid profile", func(n string) string { inState = n; return "st-" + n })
	if err != nil || url == "" || nonce == "" || inState != nonce {
		t.Fatalf("Begin = %q, %q, %v (state saw %q)", nonce, url, err, inState)
	}
	a := h.up.AuthRequests()[0]
	if a.State != "st-"+nonce || a.Nonce != h.m.Derive("oidc-nonce", nonce) || a.PKCEVerifier != h.m.Derive("pkce-verifier", nonce) ||
		strings.Join(a.Scopes, " ") != "openid profile" || a.Nonce == nonce {
		t.Fatalf("authorization request %+v", a)
	}
	other, _, _ := h.m.Begin(h.env, "openid", func(string) string { return "" })
	if other == nonce {
		t.Fatal("two sign-ins share a nonce")
	}
}

// Complete stores a resolved session; a refusal by the resolvers or the
// provider stores nothing, and a spent exchange budget reaches no provider.
func TestComplete(t *testing.T) {
	t.Run("signed in", func(t *testing.T) {
		h := newHarness(t, nil)
		_, key := h.signIn(t)
		sess, err := h.store.Get(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		if sess.UserEntityRef != "user:default/alice" || sess.Backstage == nil || sess.Env != "development" || !sess.Upstream.CheckedAt.Equal(h.clock.Now()) {
			t.Fatalf("stored session %+v", sess)
		}
	})
	for _, tc := range []struct {
		name      string
		sub, code string
		budget    bool
		status    int
		exchanges int
	}{
		{"resolvers refuse", "mallory", lifecycletest.GoodCode, false, http.StatusForbidden, 1},
		{"provider refuses the code", "alice", "bad-code", false, http.StatusUnauthorized, 1},
		{"exchange budget spent", "alice", lifecycletest.GoodCode, true, http.StatusTooManyRequests, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *lifecycle.Config) {
				if tc.budget {
					c.ExchangeBudget = ratelimit.NewBudget(1e-9, 0, time.Now)
				}
			})
			h.up.SetSubject(tc.sub)
			_, key, _ := lifecycle.NewHandle()
			_, err := h.m.Complete(t.Context(), h.env, lifecycle.Completion{Nonce: "n", Code: tc.code, Key: key})
			if got := backstageerr.As(err).Status; got != tc.status {
				t.Fatalf("Complete: %v (status %d), want %d", err, got, tc.status)
			}
			if tc.budget != errors.Is(err, lifecycle.ErrExchangeBudget) {
				t.Errorf("ErrExchangeBudget: %v", err)
			}
			if got, _, _ := h.up.Counts(); got != tc.exchanges {
				t.Errorf("code exchanges = %d, want %d", got, tc.exchanges)
			}
			if _, err := h.store.Get(t.Context(), key); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("a refused sign-in stored a session: %v", err)
			}
		})
	}
}

// Renewal on the fake clock: nothing reaches the provider until the policy
// says so; then a refusal ends the session, an outage or a rejected client
// keeps serving the current tokens (asked again after the backoff).
func TestRefresh(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answer   error
		ended    bool
		rejected int
	}{
		{"answered", nil, false, 0},
		{"invalid_grant", &upstream.TokenError{Op: "refreshing tokens", StatusCode: 400, Code: "invalid_grant"}, true, 0},
		{"ID token refused", errors.Join(upstream.ErrInvalidIDToken, errors.New("names another subject")), true, 0},
		{"provider down", &upstream.TokenError{Op: "refreshing tokens", StatusCode: 503}, false, 0},
		{"invalid_client", &upstream.TokenError{Op: "refreshing tokens", StatusCode: 401, Code: "invalid_client"}, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			_, key := h.signIn(t)
			ctx := t.Context()
			for range 10 {
				h.clock.Advance(time.Minute)
				if _, err := h.m.Refresh(ctx, h.env, key); err != nil {
					t.Fatal(err)
				}
			}
			if _, got, _ := h.up.Counts(); got != 0 {
				t.Fatalf("provider asked %d times within the interval", got)
			}
			h.up.SetRefreshErr(tc.answer)
			h.clock.Advance(5 * time.Minute) // the interval is up
			for range 3 {
				sess, err := h.m.Refresh(ctx, h.env, key)
				if tc.ended != errors.Is(err, lifecycle.ErrSessionEnded) || (!tc.ended && err != nil) {
					t.Fatalf("Refresh: %v, session ended: want %v", err, tc.ended)
				}
				if !tc.ended && (sess == nil || sess.Upstream.IDToken == "" || sess.Backstage == nil ||
					!h.clock.Now().Before(sess.Upstream.IDTokenExpiry) || !h.clock.Now().Before(sess.Backstage.ExpiresAt)) {
					t.Fatalf("Refresh served %+v, want a session whose tokens still hold", sess)
				}
			}
			if _, got, _ := h.up.Counts(); got != 1 {
				t.Errorf("provider asked %d times, want 1", got)
			}
			if _, err := h.store.Get(ctx, key); tc.ended != errors.Is(err, session.ErrNotFound) {
				t.Errorf("session stored after the answer: %v (ended: want %v)", err, tc.ended)
			}
			wantEnded, wantRevoked := 0, 0
			if tc.ended {
				wantEnded, wantRevoked = 1, 1
			}
			if got := h.endedCount(lifecycle.EndRefused); got != wantEnded {
				t.Errorf("ended as refused = %d, want %d", got, wantEnded)
			}
			if _, _, got := h.up.Counts(); got != wantRevoked {
				t.Errorf("revocations = %d, want %d", got, wantRevoked)
			}
			if got := h.rejectedCount(); got != tc.rejected {
				t.Errorf("client rejections counted = %d, want %d", got, tc.rejected)
			}
		})
	}
}

// End and sign out everywhere: a sign-out ends what it names (revoked
// upstream, counted); signing out everywhere ends every session of the
// users named, and no one else's.
func TestEnd(t *testing.T) {
	h := newHarness(t, nil)
	ctx := t.Context()
	a1, _ := h.signIn(t)
	a2, a2key := h.signIn(t)
	h.up.SetSubject("bob")
	_, bkey := h.signIn(t)

	if err := h.m.EndNamed(ctx, h.env, []string{a1}, lifecycle.EndSignedOut); err != nil {
		t.Fatal(err)
	}
	if got := h.endedCount(lifecycle.EndSignedOut); got != 1 {
		t.Errorf("signed out = %d, want 1", got)
	}
	if _, err := h.store.Get(ctx, a2key); err != nil {
		t.Fatalf("signing out one session ended another: %v", err)
	}
	h.up.SetSubject("alice")
	a3, a3key := h.signIn(t)
	if err := h.m.SignOutEverywhere(ctx, h.env, []string{a2}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []session.Key{a2key, a3key} {
		if _, err := h.store.Get(ctx, k); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("alice's session survived signing out everywhere: %v", err)
		}
	}
	if _, err := h.store.Get(ctx, bkey); err != nil {
		t.Errorf("bob's session ended with alice's: %v", err)
	}
	if got := h.endedCount(lifecycle.EndSignedOutEverywhere); got != 2 {
		t.Errorf("signed out everywhere = %d, want 2", got)
	}
	if _, _, got := h.up.Counts(); got != 3 {
		t.Errorf("revocations = %d, want 3", got)
	}
	if err := h.m.SignOutEverywhere(ctx, h.env, []string{a3}); backstageerr.As(err).Status != http.StatusUnauthorized {
		t.Errorf("signing out everywhere without a live session: %v, want 401", err)
	}
}
