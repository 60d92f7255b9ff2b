package identity

import (
	"context"
	"errors"
	"testing"
	"time"
)

const testAccessAud = "https://backstage.example.com/api/auth/spectrocloud/kubernetes"

func TestAccessTokenRoundTrip(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	tok, err := f.iss.IssueAccess(ctx, AccessClaims{Type: TypeCLIAccess, Subject: "user:default/alice", Audience: testAccessAud, SessionID: "ab12", Lifetime: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if got := TokenType(tok.Raw); got != TypeCLIAccess {
		t.Fatalf("TokenType = %q", got)
	}
	v, err := f.iss.VerifyAccess(ctx, tok.Raw, TypeCLIAccess, testAccessAud)
	if err != nil {
		t.Fatal(err)
	}
	if v.Subject != "user:default/alice" || v.SessionID != "ab12" || v.ID == "" || !v.ExpiresAt.Equal(tok.ExpiresAt) {
		t.Fatalf("claims = %+v", v)
	}
	// Backstage's verifier never accepts it: it is not a user token.
	if _, err := f.iss.Verify(ctx, tok.Raw); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("Verify(access token) = %v, want ErrInvalidToken", err)
	}
}

func TestAccessTokenRefusals(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	good := AccessClaims{Type: TypeCLIAccess, Subject: "user:default/alice", Audience: testAccessAud, SessionID: "ab12", Lifetime: 10 * time.Minute}
	access, err := f.iss.IssueAccess(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	user := f.issue(t, Claims{Subject: "user:default/alice", Extra: map[string]any{"sid": "ab12"}})
	other := newFixture(t, nil)
	foreign, err := other.iss.IssueAccess(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, raw, typ, aud string
		want                error
	}{
		{"backstage user token", user.Raw, TypeCLIAccess, testAccessAud, ErrInvalidToken},
		{"wrong audience", access.Raw, TypeCLIAccess, "https://elsewhere.example.com", ErrInvalidToken},
		{"wrong type asked", access.Raw, "vnd.other", testAccessAud, ErrInvalidToken},
		{"another issuer's key", foreign.Raw, TypeCLIAccess, testAccessAud, ErrInvalidToken},
		{"garbage", "a.b.c", TypeCLIAccess, testAccessAud, ErrInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.iss.VerifyAccess(ctx, tc.raw, tc.typ, tc.aud); !errors.Is(err, tc.want) {
				t.Fatalf("VerifyAccess = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		f.clock.Advance(11 * time.Minute)
		if _, err := f.iss.VerifyAccess(ctx, access.Raw, TypeCLIAccess, testAccessAud); !errors.Is(err, ErrExpiredToken) {
			t.Fatalf("VerifyAccess = %v, want ErrExpiredToken", err)
		}
	})
	for _, bad := range []AccessClaims{
		{Type: TypeUser, Subject: "user:default/a", Audience: testAccessAud, SessionID: "x", Lifetime: time.Minute},
		{Type: TypeCLIAccess, Subject: "user:default/a", Audience: testAccessAud, SessionID: "x", Lifetime: 16 * time.Minute},
		{Type: TypeCLIAccess, Subject: "user:default/a", Audience: testAccessAud, Lifetime: time.Minute},
	} {
		if _, err := f.iss.IssueAccess(ctx, bad); err == nil {
			t.Errorf("IssueAccess(%+v) succeeded", bad)
		}
	}
}
