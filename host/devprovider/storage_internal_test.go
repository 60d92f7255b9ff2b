package devprovider

import (
	"context"
	"testing"
	"time"

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
