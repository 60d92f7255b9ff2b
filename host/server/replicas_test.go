package server_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/session"
)

// lockingStore is a session store shared by replicas, with the renewal lock
// such a store offers (host/storage/postgres has the real one).
type lockingStore struct {
	session.Store
	mu    sync.Mutex
	held  map[session.Key]chan struct{}
	locks int
}

var _ session.RenewalLocker = (*lockingStore)(nil)

func (s *lockingStore) LockRenewal(ctx context.Context, key session.Key) (func(), error) {
	for {
		s.mu.Lock()
		ch, busy := s.held[key]
		if !busy {
			ch = make(chan struct{})
			s.held[key] = ch
			s.locks++
			s.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					s.mu.Lock()
					delete(s.held, key)
					close(ch)
					s.mu.Unlock()
				})
			}, nil
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Two replicas asked to refresh one session near its ID token's expiry at
// the same moment (two tabs load-balanced apart) renew it one after the
// other: the second waits for the first's renewal lock and re-reads the
// session, so it spends the refresh token the first one got. Without the
// lock both spend the same refresh token; the provider (which rotates
// refresh tokens and revokes the chain on reuse, as many do) refuses the
// second, and the session ends.
func TestReplicasRenewASessionOneAtATime(t *testing.T) {
	slowRefresh := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.ParseForm() == nil && r.PostForm.Get("grant_type") == "refresh_token" {
				time.Sleep(300 * time.Millisecond) // both replicas are in their renewal now
			}
			h.ServeHTTP(w, r)
		})
	}
	// Sign in on one daemon; two replicas then share its session store.
	first := newFixture(t, fixtureOptions{RefreshTokens: true, IDTokenTTL: time.Hour, WrapOP: slowRefresh})
	br := newBrowser(t)
	signIn(t, first, br)
	shared := &lockingStore{Store: first.Sessions, held: map[session.Key]chan struct{}{}}
	replicas := []*fixture{
		newFixture(t, fixtureOptions{OP: first, Sessions: shared}),
		newFixture(t, fixtureOptions{OP: first, Sessions: shared}),
	}

	for _, f := range replicas {
		f.Advance(56 * time.Minute)
	}
	first.OP.ResetCounters()
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, f := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := refresh(br, f)
			codes[i] = r.StatusCode
			r.Body.Close()
		}()
	}
	wg.Wait()
	if codes[0] != http.StatusOK || codes[1] != http.StatusOK {
		t.Fatalf("refreshes on the two replicas: %v", codes)
	}
	// (The second replica goes upstream too: the daemons' clocks were moved
	// on, the provider's was not, so the renewed ID token looks as close to
	// its expiry as the old one did.)
	if c := first.OP.Counters(); c.Refresh != 2 {
		t.Errorf("provider refreshes = %d, want 2, one after the other", c.Refresh)
	}
	shared.mu.Lock()
	locks := shared.locks
	shared.mu.Unlock()
	if locks != 2 {
		t.Errorf("renewal locks taken = %d, want 2 (one per replica)", locks)
	}
	if r := refresh(br, replicas[0]); r.StatusCode != http.StatusOK {
		t.Errorf("a later refresh: %d", r.StatusCode)
	}
}
