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
	signIn(t, first, br)
	replica := newFixture(t, fixtureOptions{OP: first, Sessions: heldStore{first.Sessions}})

	replica.Advance(56 * time.Minute) // within the margin: the refresh would renew
	r := refresh(br, replica)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("refresh while another replica holds the renewal: %d, want 200 with the current tokens", r.StatusCode)
	}
	if clearsSessionCookie(r) {
		t.Error("the session cookie was cleared")
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
