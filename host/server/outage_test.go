package server_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/host/session"
)

// outageStore is a shared session store whose database can go away: while
// down, every read fails as a driver's does (neither ErrNotFound nor any
// other verdict on the session). downOnLock takes it down once a renewal
// lock is granted, as a database that fails between two statements.
type outageStore struct {
	session.Store
	down, downOnLock atomic.Bool
}

var _ session.RenewalLocker = (*outageStore)(nil)

var errDBDown = errors.New("postgres: reading session: failed to connect: connection refused")

func (s *outageStore) Get(ctx context.Context, key session.Key) (*session.Session, error) {
	if s.down.Load() {
		return nil, errDBDown
	}
	return s.Store.Get(ctx, key)
}

func (s *outageStore) LockRenewal(context.Context, session.Key) (func(), error) {
	if s.downOnLock.Swap(false) {
		s.down.Store(true)
	}
	return func() {}, nil
}

// clearsSessionCookie reports whether res tells the browser to forget its
// session cookie.
func clearsSessionCookie(res *http.Response) bool {
	for _, c := range res.Cookies() {
		if c.Name == "spectrocloud-refresh-token" && (c.MaxAge < 0 || c.Value == "") {
			return true
		}
	}
	return false
}

// A session store that fails (the shared database restarting) is no verdict
// on the session: a renewal whose re-read of the session fails must not
// clear the browser's session cookie, or every user renewing during a
// database blip is signed out for good although their session is intact.
// The same holds for routes that take a Backstage token: a failed read is
// unavailability, not ErrSessionEnded.
func TestSessionStoreOutageDoesNotEndSessions(t *testing.T) {
	first := newFixture(t, fixtureOptions{RefreshTokens: true, IDTokenTTL: time.Hour})
	br := newBrowser(t)
	signIn(t, first, br)
	store := &outageStore{Store: first.Sessions}
	replica := newFixture(t, fixtureOptions{OP: first, Sessions: store})
	replica.Advance(56 * time.Minute) // within the margin: the refresh renews

	store.downOnLock.Store(true)
	r := refresh(br, replica)
	if r.StatusCode == http.StatusOK {
		t.Fatal("refresh succeeded although the session could not be read")
	}
	if clearsSessionCookie(r) {
		t.Error("a failed read of the session under the renewal lock cleared the session cookie")
	}

	store.down.Store(false)
	r = refresh(br, replica)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("refresh once the store is back: %d, want 200 (the session was given up)", r.StatusCode)
	}
	token := decodeJSON(t, r)["backstageIdentity"].(map[string]any)["token"].(string)

	store.down.Store(true)
	if _, err := replica.Server.UserSession(context.Background(), token); err == nil || errors.Is(err, server.ErrSessionEnded) {
		t.Errorf("UserSession while the store is down: %v; want an error that is not ErrSessionEnded", err)
	}
	store.down.Store(false)
	if _, err := replica.Server.UserSession(context.Background(), token); err != nil {
		t.Errorf("UserSession once the store is back: %v", err)
	}
}
