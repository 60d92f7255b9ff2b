package devprovider

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// Authorization requests past their lifetime are dropped to make room:
// a full provider accepts sign-ins again once the old requests expire.
func TestExpiredAuthRequestsMakeRoom(t *testing.T) {
	s := newStorage(&Config{}, nil)
	req := &oidc.AuthRequest{ClientID: "c", CodeChallenge: "x", CodeChallengeMethod: oidc.CodeChallengeMethodS256}
	ctx := context.Background()
	for range MaxAuthRequests {
		if _, err := s.CreateAuthRequest(ctx, req, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateAuthRequest(ctx, req, ""); err == nil {
		t.Fatal("a request past the bound was accepted")
	}
	s.mu.Lock()
	for _, a := range s.authRequests {
		a.created = a.created.Add(-AuthRequestLifetime - time.Second)
	}
	s.mu.Unlock()
	if _, err := s.CreateAuthRequest(ctx, req, ""); err != nil {
		t.Fatalf("a request after the old ones expired: %v", err)
	}
	if n := len(s.authRequests); n != 1 {
		t.Fatalf("%d requests held, want 1 (the expired ones dropped)", n)
	}
}

// Remembered refresh tokens stay bounded: past the prune threshold, a
// rotation forgets the expired ones (live, spent within a grace, and
// rotated), while a rotated token not yet expired is still remembered and
// replaying it still revokes its chain.
func TestRotatedRefreshTokensArePruned(t *testing.T) {
	cfg := &Config{RefreshTokens: true, RefreshReuseGrace: time.Minute, RefreshTokenLifetime: time.Hour, Logger: hclog.NewNullLogger()}
	s := newStorage(cfg, nil)
	ctx := context.Background()
	signIn := func() string {
		_, rt, _, err := s.CreateAccessAndRefreshTokens(ctx, &authRequest{clientID: "c", userID: "u"}, "")
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	rotate := func(rt string) string {
		req, err := s.TokenRequestByRefreshToken(ctx, rt)
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		_, next, _, err := s.CreateAccessAndRefreshTokens(ctx, req, rt)
		if err != nil {
			t.Fatal(err)
		}
		return next
	}
	remembered := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.refreshTokens) + len(s.rotated) + len(s.accessTokens)
	}

	// A chain rotated past the threshold, then all of it expired.
	old := signIn()
	oldRotated := old
	old = rotate(old)
	for range minPruneAt {
		old = rotate(old)
	}
	s.mu.Lock()
	for _, rt := range s.refreshTokens {
		rt.expiration = time.Now().Add(-time.Second)
	}
	for tok, r := range s.rotated {
		r.expiration = time.Now().Add(-time.Second)
		s.rotated[tok] = r
	}
	s.pruneAt = 0 // prune at the next rotation
	s.mu.Unlock()

	// A live chain: its first token is rotated, not expired.
	live := signIn()
	next := rotate(live)
	if n := remembered(); n > 8 {
		t.Fatalf("%d tokens remembered after pruning, want the live chain's few", n)
	}
	s.mu.Lock()
	pruneAt := s.pruneAt
	s.mu.Unlock()
	if pruneAt != minPruneAt {
		t.Errorf("pruneAt = %d, want %d", pruneAt, minPruneAt)
	}
	if _, err := s.TokenRequestByRefreshToken(ctx, oldRotated); err == nil {
		t.Error("an expired rotated token was accepted")
	}
	// The live chain's rotated token, past its grace, still revokes the chain.
	s.mu.Lock()
	s.refreshTokens[live].graceUntil = time.Now().Add(-time.Second)
	s.mu.Unlock()
	if _, err := s.TokenRequestByRefreshToken(ctx, live); err == nil {
		t.Fatal("a rotated token past its grace was accepted")
	}
	if _, err := s.TokenRequestByRefreshToken(ctx, next); err == nil {
		t.Fatal("the chain of a replayed token still works")
	}
}

// Access tokens issued without a refresh token (no offline_access) are
// forgotten too once expired: a provider signing people in for hours stays
// bounded.
func TestExpiredAccessTokensArePruned(t *testing.T) {
	s := newStorage(&Config{AccessTokenLifetime: time.Hour, Logger: hclog.NewNullLogger()}, nil)
	ctx := context.Background()
	req := &authRequest{clientID: "c", userID: "u"}
	for range minPruneAt - 1 {
		if _, _, err := s.CreateAccessToken(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	for _, at := range s.accessTokens {
		at.expiration = time.Now().Add(-time.Second)
	}
	s.mu.Unlock()
	id, _, err := s.CreateAccessToken(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.accessTokens); n != 1 || s.accessTokens[id] == nil {
		t.Fatalf("%d access tokens held after pruning, want only the live one", n)
	}
}
