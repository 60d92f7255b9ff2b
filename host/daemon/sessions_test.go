package daemon

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/lifecycle/lifecycletest"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/session/sessiontest"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// recordingUpstream is the scripted provider, remembering the refresh
// tokens it was asked to revoke.
type recordingUpstream struct {
	*lifecycletest.Upstream
	mu      sync.Mutex
	revoked []string
}

func (r *recordingUpstream) Revoke(ctx context.Context, t *upstream.Tokens) error {
	r.mu.Lock()
	r.revoked = append(r.revoked, t.RefreshToken)
	r.mu.Unlock()
	return r.Upstream.Revoke(ctx, t)
}

// signOutFixture is one store holding alice's browser and command-line
// sessions in two environments and bob's browser session, each with a
// refresh token of its own name.
type signOutFixture struct {
	store   session.Store
	handles map[string]string
	envs    map[string]*lifecycle.Env
	up      map[string]*recordingUpstream
}

func newSignOutFixture(t *testing.T) *signOutFixture {
	t.Helper()
	now := time.Now()
	f := &signOutFixture{
		store:   session.NewMemoryStore(session.Options{SweepInterval: -1}),
		handles: map[string]string{},
		envs:    map[string]*lifecycle.Env{},
		up:      map[string]*recordingUpstream{},
	}
	for _, env := range []string{"development", "staging"} {
		f.up[env] = &recordingUpstream{Upstream: lifecycletest.NewUpstream(time.Now, "alice")}
		f.envs[env] = &lifecycle.Env{Upstream: f.up[env], SessionDuration: 24 * time.Hour}
	}
	for _, s := range []struct {
		name, user, env string
		kind            session.Kind
	}{
		{"alice-browser", "alice", "development", session.KindBrowser},
		{"alice-cli", "alice", "development", session.KindCLI},
		{"alice-staging-cli", "alice", "staging", session.KindCLI},
		{"bob-browser", "bob", "development", session.KindBrowser},
	} {
		handle, key, err := lifecycle.NewHandle()
		if err != nil {
			t.Fatal(err)
		}
		sess := sessiontest.Sample(now, s.user)
		sess.Env, sess.Kind, sess.Upstream.RefreshToken = s.env, s.kind, "rt-"+s.name
		if err := f.store.Put(t.Context(), key, sess); err != nil {
			t.Fatal(err)
		}
		f.handles[s.name] = handle
	}
	return f
}

// outcome is what a sign out everywhere left: the sessions still live and
// the refresh tokens revoked, per environment.
func (f *signOutFixture) outcome(t *testing.T) (live []string, revoked map[string][]string) {
	t.Helper()
	for name, h := range f.handles {
		key, _ := session.KeyOf(h)
		_, err := f.store.Get(t.Context(), key)
		switch {
		case err == nil:
			live = append(live, name)
		case !errors.Is(err, session.ErrNotFound):
			t.Fatal(err)
		}
	}
	revoked = map[string][]string{}
	for env, up := range f.up {
		up.mu.Lock()
		revoked[env] = slices.Sorted(slices.Values(up.revoked))
		up.mu.Unlock()
	}
	slices.Sort(live)
	return live, revoked
}

// The operator's `sessions revoke` and a user's sign out everywhere are one
// implementation: on the same sessions, both end the user's browser and
// command-line sessions in every environment and no one else's, revoke the
// same upstream tokens, and write the same audit line but for who asked.
func TestOperatorRevokeMatchesUserSignOutEverywhere(t *testing.T) {
	ctx := t.Context()

	user := newSignOutFixture(t)
	var userLog strings.Builder
	iss, err := identity.New(identity.Config{Issuer: "http://127.0.0.1/api/auth", KeyStore: identity.NewMemoryKeyStore()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := lifecycle.New(lifecycle.Config{
		Envs: user.envs, Identity: iss, Sessions: user.store, FlowKey: []byte(strings.Repeat("k", 32)),
		Logger: hclog.New(&hclog.LoggerOptions{Output: &userLog, JSONFormat: true}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SignOutEverywhere(ctx, user.envs["development"], []string{user.handles["alice-browser"]}); err != nil {
		t.Fatal(err)
	}

	op := newSignOutFixture(t)
	var opLog strings.Builder
	n, err := endUserSessions(ctx, op.store, op.envs, "user:default/alice", hclog.New(&hclog.LoggerOptions{Output: &opLog, JSONFormat: true}))
	if err != nil || n != 3 {
		t.Fatalf("operator revoke = %d, %v; want 3 sessions", n, err)
	}

	userLive, userRevoked := user.outcome(t)
	opLive, opRevoked := op.outcome(t)
	if want := []string{"bob-browser"}; !slices.Equal(userLive, want) || !slices.Equal(opLive, want) {
		t.Errorf("live after signing alice out everywhere: user path %v, operator path %v; want %v", userLive, opLive, want)
	}
	wantRevoked := map[string][]string{"development": {"rt-alice-browser", "rt-alice-cli"}, "staging": {"rt-alice-staging-cli"}}
	if !maps.EqualFunc(userRevoked, wantRevoked, slices.Equal) || !maps.EqualFunc(opRevoked, wantRevoked, slices.Equal) {
		t.Errorf("revoked upstream: user path %v, operator path %v; want %v", userRevoked, opRevoked, wantRevoked)
	}
	for by, log := range map[string]string{"user": userLog.String(), "operator": opLog.String()} {
		if !strings.Contains(log, `"audit":"sessions-revoked"`) || !strings.Contains(log, `"by":"`+by+`"`) ||
			!strings.Contains(log, `"sessions":3`) || !strings.Contains(log, `"user":"user:default/alice"`) {
			t.Errorf("%s path's audit line missing:\n%s", by, log)
		}
		if strings.Contains(log, "rt-alice") {
			t.Errorf("%s path logged a token:\n%s", by, log)
		}
	}
}

// The operator's provider client reaches the provider only to revoke, and
// an unreachable provider revokes nothing without failing the sign-out.
func TestRevocationUpstreamUnreachable(t *testing.T) {
	r := &revocationUpstream{env: "development", cfg: upstream.Config{Issuer: "http://127.0.0.1:1", ClientID: "c", AllowInsecureIssuer: true}, log: hclog.NewNullLogger()}
	if err := r.Revoke(t.Context(), &upstream.Tokens{RefreshToken: "rt"}); err != nil {
		t.Fatalf("revoking at an unreachable provider: %v, want nil (logged)", err)
	}
	if _, err := r.Refresh(t.Context(), &upstream.Tokens{}); !errors.Is(err, errRevocationOnly) {
		t.Fatalf("Refresh = %v, want errRevocationOnly", err)
	}
}
