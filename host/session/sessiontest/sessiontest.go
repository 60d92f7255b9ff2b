// Package sessiontest is the conformance suite every session.Store passes:
// the file and memory stores in package session, and the PostgreSQL store
// in host/storage/postgres. A new store runs it from its own tests:
//
//	sessiontest.Run(t, func(t *testing.T, now func() time.Time) session.Store { … })
package sessiontest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/session"
)

// Clock is an injectable clock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at a fixed instant.
func NewClock() *Clock { return &Clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Opener opens an empty store on the given clock. The store must not sweep
// on its own (the suite calls Sweep); the suite closes it at the end.
type Opener func(t *testing.T, now func() time.Time) session.Store

// Key is the store key of a fresh handle.
func Key(t testing.TB) session.Key {
	t.Helper()
	h, err := session.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	k, err := session.KeyOf(h)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Sample is a session with realistic sizes (JWTs of about 1 KB) that lives
// for a day from now.
func Sample(now time.Time, user string) *session.Session {
	jwt := strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 50)
	return &session.Session{
		Env:                 "development",
		Provider:            "spectrocloud",
		CreatedAt:           now,
		ExpiresAt:           now.Add(24 * time.Hour),
		UserEntityRef:       "user:default/" + user,
		OwnershipEntityRefs: []string{"user:default/" + user, "group:default/team-a", "group:default/platform"},
		Profile:             session.Profile{Email: user + "@example.com", DisplayName: strings.ToUpper(user), Picture: "https://img.example.com/" + user + ".png"},
		Scope:               "openid profile email offline_access",
		Upstream: session.UpstreamTokens{
			IDToken:             jwt + ".id",
			AccessToken:         jwt + ".access",
			RefreshToken:        "rt-" + strings.Repeat("x", 60),
			PaletteSessionToken: "palette-" + strings.Repeat("p", 180),
			TokenType:           "Bearer",
			AccessTokenExpiry:   now.Add(time.Hour),
			IDTokenExpiry:       now.Add(time.Hour),
			Claims:              json.RawMessage(`{"sub":"` + user + `","email":"` + user + `@example.com","groups":["dev","ops"],"email_verified":true}`),
		},
		Backstage: &session.BackstageToken{Token: jwt + ".backstage", ExpiresAt: now.Add(time.Hour)},
	}
}

// AssertSame fails t unless got and want marshal to the same JSON.
func AssertSame(t testing.TB, got, want *session.Session) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Fatalf("session differs:\n got %s\nwant %s", g, w)
	}
}

// Run runs the conformance suite against stores open makes.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s session.Store, c *Clock)
	}{
		{"PutGetDelete", testPutGetDelete},
		{"ReplaceOnlyOverLiveSession", testReplaceOnlyOverLiveSession},
		{"ReplaceRacingDeleteNeverRevives", testReplaceRacingDelete},
		{"ExpiryAndSweep", testExpiryAndSweep},
		{"ConcurrentAccess", testConcurrentAccess},
		{"ListAndDeleteByUser", testByUser},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClock()
			s := open(t, c.Now)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s, c)
		})
	}
}

func testPutGetDelete(t *testing.T, s session.Store, clock *Clock) {
	ctx := context.Background()
	k1, k2 := Key(t), Key(t)
	s1, s2 := Sample(clock.Now(), "alice"), Sample(clock.Now(), "bob")

	tests := []struct {
		name string
		do   func() error
		get  session.Key
		want *session.Session // nil: ErrNotFound
	}{
		{"missing", func() error { return nil }, k1, nil},
		{"put", func() error { return s.Put(ctx, k1, s1) }, k1, s1},
		{"other key unaffected", func() error { return s.Put(ctx, k2, s2) }, k2, s2},
		{"first still there", func() error { return nil }, k1, s1},
		{"put over", func() error { s1.Scope = "openid"; return s.Put(ctx, k1, s1) }, k1, s1},
		{"delete", func() error { return s.Delete(ctx, k1) }, k1, nil},
		{"delete again", func() error { return s.Delete(ctx, k1) }, k1, nil},
		{"other survives the delete", func() error { return nil }, k2, s2},
	}
	for _, tc := range tests {
		if err := tc.do(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := s.Get(ctx, tc.get)
		if tc.want == nil {
			if !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("%s: Get = %v, %v; want ErrNotFound", tc.name, got, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: Get: %v", tc.name, err)
		}
		AssertSame(t, got, tc.want)
	}

	// Get returns a copy; the store keeps its own copy of what was Put.
	got, _ := s.Get(ctx, k2)
	got.OwnershipEntityRefs[0] = "mutated"
	got.Backstage.Token = "mutated"
	s2.Profile.Email = "mutated"
	again, _ := s.Get(ctx, k2)
	if again.OwnershipEntityRefs[0] == "mutated" || again.Backstage.Token == "mutated" || again.Profile.Email == "mutated" {
		t.Fatal("store shares memory with callers")
	}

	// Invalid puts.
	for _, bad := range []*session.Session{
		nil,
		{UserEntityRef: "user:default/x"},
		{ExpiresAt: clock.Now()},
	} {
		if err := s.Put(ctx, k1, bad); err == nil {
			t.Errorf("Put accepted session %v", bad)
		}
	}
	if err := s.Put(ctx, k1, &session.Session{ExpiresAt: clock.Now().Add(-time.Second)}); !errors.Is(err, session.ErrExpired) {
		t.Errorf("Put of an expired session: %v, want ErrExpired", err)
	}
	if _, err := s.Get(ctx, k1); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("a refused Put stored something: %v", err)
	}
}

// Replace writes only over a live session: after Delete (a sign-out) or
// expiry it stores nothing.
func testReplaceOnlyOverLiveSession(t *testing.T, s session.Store, clock *Clock) {
	ctx := context.Background()
	k := Key(t)
	if err := s.Replace(ctx, k, Sample(clock.Now(), "alice")); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Replace of nothing: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, k); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Replace of nothing stored a session: %v", err)
	}
	if err := s.Put(ctx, k, Sample(clock.Now(), "alice")); err != nil {
		t.Fatal(err)
	}
	renewed := Sample(clock.Now(), "alice")
	renewed.Upstream.RefreshToken = "rt-renewed"
	renewed.ExpiresAt = clock.Now().Add(48 * time.Hour)
	if err := s.Replace(ctx, k, renewed); err != nil {
		t.Fatalf("Replace of a live session: %v", err)
	}
	got, err := s.Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	AssertSame(t, got, renewed)

	if err := s.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(ctx, k, renewed); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Replace after Delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, k); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Replace after Delete brought the session back: %v", err)
	}

	// Expired (not yet swept): gone as well.
	k2 := Key(t)
	short := Sample(clock.Now(), "bob")
	short.ExpiresAt = clock.Now().Add(time.Minute)
	if err := s.Put(ctx, k2, short); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	if err := s.Replace(ctx, k2, Sample(clock.Now(), "bob")); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Replace of an expired session: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, k2); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Replace over an expired session revived it: %v", err)
	}
	// An expired replacement is refused like an expired Put.
	k3 := Key(t)
	if err := s.Put(ctx, k3, Sample(clock.Now(), "carol")); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(ctx, k3, &session.Session{ExpiresAt: clock.Now()}); !errors.Is(err, session.ErrExpired) {
		t.Fatalf("Replace with an expired session: %v, want ErrExpired", err)
	}
}

// A renewal that finishes while the user signs out (Replace racing Delete)
// never leaves the session behind, whichever wins.
func testReplaceRacingDelete(t *testing.T, s session.Store, clock *Clock) {
	ctx := context.Background()
	for i := range 50 {
		k := Key(t)
		if err := s.Put(ctx, k, Sample(clock.Now(), "alice")); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := s.Replace(ctx, k, Sample(clock.Now(), "alice")); err != nil && !errors.Is(err, session.ErrNotFound) {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if err := s.Delete(ctx, k); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		if _, err := s.Get(ctx, k); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("round %d: the session survived a sign-out racing a renewal: %v", i, err)
		}
	}
}

func testExpiryAndSweep(t *testing.T, s session.Store, clock *Clock) {
	ctx := context.Background()
	short, long := Key(t), Key(t)
	a := Sample(clock.Now(), "a")
	a.ExpiresAt = clock.Now().Add(time.Hour)
	if err := s.Put(ctx, short, a); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, long, Sample(clock.Now(), "b")); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour - time.Second)
	if _, err := s.Get(ctx, short); err != nil {
		t.Fatalf("one second before expiry: %v", err)
	}
	clock.Advance(time.Second)
	if _, err := s.Get(ctx, short); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("at expiry: %v", err)
	}
	n, err := s.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	if n, _ := s.Sweep(ctx); n != 0 {
		t.Fatalf("second Sweep removed %d", n)
	}
	if _, err := s.Get(ctx, long); err != nil {
		t.Fatalf("live session swept: %v", err)
	}
	// A swept session's key can be used again.
	if err := s.Put(ctx, short, Sample(clock.Now(), "a")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, short); err != nil {
		t.Fatalf("Put after sweep: %v", err)
	}
	// A cancelled sweep stops.
	clock.Advance(48 * time.Hour)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Sweep(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Sweep err = %v", err)
	}
}

func testConcurrentAccess(t *testing.T, s session.Store, clock *Clock) {
	ctx := context.Background()
	keys := make([]session.Key, 8)
	for i := range keys {
		keys[i] = Key(t)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				k := keys[(g+i)%len(keys)]
				switch i % 6 {
				case 0, 1:
					sess := Sample(clock.Now(), fmt.Sprintf("g%d", g))
					if i%3 == 0 {
						// Expires during the test (the clock moves at most 4
						// minutes), never before Put.
						sess.ExpiresAt = sess.CreatedAt.Add(10 * time.Minute)
					}
					// A short session can expire between Sample and Put
					// when this goroutine is descheduled.
					if err := s.Put(ctx, k, sess); err != nil && !(i%3 == 0 && errors.Is(err, session.ErrExpired)) {
						t.Error(err)
					}
				case 2:
					if err := s.Delete(ctx, k); err != nil {
						t.Error(err)
					}
				case 3:
					if _, err := s.Sweep(ctx); err != nil {
						t.Error(err)
					}
				case 4:
					err := s.Replace(ctx, k, Sample(clock.Now(), fmt.Sprintf("g%d", g)))
					if err != nil && !errors.Is(err, session.ErrNotFound) {
						t.Error(err)
					}
				default:
					if got, err := s.Get(ctx, k); err == nil {
						got.OwnershipEntityRefs = append(got.OwnershipEntityRefs, "x")
					} else if !errors.Is(err, session.ErrNotFound) {
						t.Error(err)
					}
				}
				if g == 0 && i%10 == 0 {
					clock.Advance(3 * time.Minute)
				}
			}
		}()
	}
	wg.Wait()
}

// testByUser: ListByUser finds a user's live sessions and no one else's;
// DeleteByUser ends them all (sign out everywhere) and leaves others alone.
func testByUser(t *testing.T, s session.Store, clock *Clock) {
	ctx := context.Background()
	alice := []session.Key{Key(t), Key(t), Key(t)}
	for _, k := range alice {
		if err := s.Put(ctx, k, Sample(clock.Now(), "alice")); err != nil {
			t.Fatal(err)
		}
	}
	short := Sample(clock.Now(), "alice")
	short.ExpiresAt = clock.Now().Add(time.Minute)
	expired := Key(t)
	if err := s.Put(ctx, expired, short); err != nil {
		t.Fatal(err)
	}
	bob := Key(t)
	if err := s.Put(ctx, bob, Sample(clock.Now(), "bob")); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)

	got, err := s.ListByUser(ctx, "user:default/alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(alice) {
		t.Fatalf("ListByUser(alice) = %d sessions, want %d (live ones only)", len(got), len(alice))
	}
	for _, e := range got {
		if !slices.Contains(alice, e.Key) || e.Session.UserEntityRef != "user:default/alice" {
			t.Fatalf("ListByUser(alice) returned %s of %s", e.Key, e.Session.UserEntityRef)
		}
	}
	if none, err := s.ListByUser(ctx, "user:default/nobody"); err != nil || len(none) != 0 {
		t.Fatalf("ListByUser(nobody) = %d, %v", len(none), err)
	}

	n, err := s.DeleteByUser(ctx, "user:default/alice")
	if err != nil {
		t.Fatal(err)
	}
	if n < len(alice) {
		t.Fatalf("DeleteByUser(alice) = %d, want at least %d", n, len(alice))
	}
	for _, k := range alice {
		if _, err := s.Get(ctx, k); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("alice's session after DeleteByUser: %v", err)
		}
		if err := s.Replace(ctx, k, Sample(clock.Now(), "alice")); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Replace revived a session DeleteByUser ended: %v", err)
		}
	}
	if _, err := s.Get(ctx, bob); err != nil {
		t.Fatalf("bob's session after DeleteByUser(alice): %v", err)
	}
	if left, err := s.ListByUser(ctx, "user:default/alice"); err != nil || len(left) != 0 {
		t.Fatalf("ListByUser(alice) after DeleteByUser = %d, %v", len(left), err)
	}
}
