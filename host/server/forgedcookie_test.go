package server_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/host/session"
)

// writeCounter counts the writes reaching a session store.
type writeCounter struct {
	session.Store
	writes atomic.Int64
}

func (w *writeCounter) Put(ctx context.Context, k session.Key, s *session.Session) error {
	w.writes.Add(1)
	return w.Store.Put(ctx, k, s)
}

func (w *writeCounter) Replace(ctx context.Context, k session.Key, s *session.Session) error {
	w.writes.Add(1)
	return w.Store.Replace(ctx, k, s)
}

func (w *writeCounter) Delete(ctx context.Context, k session.Key) error {
	w.writes.Add(1)
	return w.Store.Delete(ctx, k)
}

// A /refresh with a guessed or malformed session cookie costs the daemon one
// session read: no provider call, no store write, no session of anyone
// ended; it is answered 401 and the real session is untouched, even when
// it is due for renewal.
func TestRefreshWithForgedCookieCostsNoProviderCallOrWrite(t *testing.T) {
	store := &writeCounter{}
	f := newFakeFixture(t, withServerConfig(func(c *server.Config) {
		store.Store = c.Sessions
		c.Sessions = store
	}))
	real, _ := f.signIn()
	f.Advance(57 * time.Minute) // the real session is due: a renewal would show
	guessed, _, err := lifecycle.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	calls, writes := f.up.providerCalls(), store.writes.Load()
	for _, handle := range []string{guessed, "not-a-handle", guessed + "x"} {
		if got := f.refresh(f.browserWithHandle(handle)); got != http.StatusUnauthorized {
			t.Errorf("refresh with cookie %q: %d, want 401", handle, got)
		}
	}
	if got := f.up.providerCalls() - calls; got != 0 {
		t.Errorf("forged cookies cost %d provider calls, want 0", got)
	}
	if got := store.writes.Load() - writes; got != 0 {
		t.Errorf("forged cookies cost %d session writes, want 0", got)
	}
	for _, reason := range []string{lifecycle.EndRefused, lifecycle.EndDuplicateCookies, lifecycle.EndSignedOut} {
		if got := f.endedCount(reason); got != 0 {
			t.Errorf("forged cookies ended %d sessions (%s)", got, reason)
		}
	}
	if got := f.refresh(real); got != http.StatusOK {
		t.Fatalf("the real session after the forged refreshes: %d, want 200", got)
	}
	if store.writes.Load() == writes || f.up.providerCalls() == calls {
		t.Error("the real session's renewal was not seen: the counters do not watch the daemon's store and provider")
	}
}
