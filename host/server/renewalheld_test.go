package server_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/session"
)

// heldStore is a shared session store whose renewal lock is held elsewhere
// for good: another replica renewing, or the lease of one that was killed
// renewing, which lasts until it runs out.
type heldStore struct{ session.Store }

var _ session.RenewalLocker = heldStore{}

func (heldStore) LockRenewal(ctx context.Context, key session.Key) (func(), error) {
	return nil, fmt.Errorf("postgres: locking the renewal of session %s: another replica holds it: %w", key, context.DeadlineExceeded)
}

// A renewal lock that cannot be had says nothing against the session: while
// its tokens hold, /refresh serves them (200, the same user, the cookie
// kept) rather than 401; once the ID token has expired, there is nothing to
// serve and the refresh fails, still keeping the cookie.
func TestRefreshServesSessionWhileRenewalHeldElsewhere(t *testing.T) {
	first := newFixture(t, fixtureOptions{RefreshTokens: true, IDTokenTTL: time.Hour})
	br := newBrowser(t)
	signedIn := signIn(t, first, br)
	replica := newFixture(t, fixtureOptions{OP: first, Sessions: heldStore{first.Sessions}})

	replica.Advance(56 * time.Minute) // within the margin: the refresh would renew
	first.OP.ResetCounters()
	r := refresh(br, replica)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("refresh while another replica holds the renewal: %d, want 200 with the current tokens", r.StatusCode)
	}
	if clearsSessionCookie(r) {
		t.Error("the session cookie was cleared")
	}
	// Served as it is: the lock is the only thing that keeps two replicas
	// from spending the same rotated refresh token, so nothing is renewed
	// without it.
	got := decodeJSON(t, r)
	for _, k := range [][2]string{{"providerInfo", "idToken"}, {"backstageIdentity", "token"}} {
		if want := signedIn[k[0]].(map[string]any)[k[1]]; got[k[0]].(map[string]any)[k[1]] != want {
			t.Errorf("%s.%s changed without the renewal lock", k[0], k[1])
		}
	}
	if c := first.OP.Counters(); c.Refresh != 0 {
		t.Errorf("provider refreshes without the renewal lock = %d, want 0", c.Refresh)
	}

	replica.Advance(5 * time.Minute) // the ID token has expired
	r = refresh(br, replica)
	if r.StatusCode == http.StatusOK {
		t.Fatal("refresh served a session whose ID token has expired")
	}
	if clearsSessionCookie(r) {
		t.Error("the session cookie was cleared although nothing was said against the session")
	}
}
