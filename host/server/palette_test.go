package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/server"
)

// A session's Palette session token is renewed when it is used with less
// than the margin left, stored, and dropped when Palette refuses it or the
// session ends.
func TestPaletteSessionRenewsBeforeExpiry(t *testing.T) {
	f := newFixture(t, fixtureOptions{RefreshTokens: true})
	f.Advance(0) // freeze the daemon's clock
	b := newBrowser(t)
	res := signIn(t, f, b)
	token := res["backstageIdentity"].(map[string]any)["token"].(string)
	ctx := context.Background()
	us, err := f.Server.UserSession(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	// The provider handed out a Palette session token at sign-in.
	sess, err := f.Sessions.Get(ctx, us.Key)
	if err != nil {
		t.Fatal(err)
	}
	sess.Upstream.PaletteSessionToken = "palette-0"
	sess.Upstream.PaletteSessionTokenExpiry = f.Now().Add(lifecycle.PaletteSessionLifetime)
	if err := f.Sessions.Replace(ctx, us.Key, sess); err != nil {
		t.Fatal(err)
	}

	var calls []string
	refuse := false
	renew := func(_ context.Context, tok string) (string, time.Time, error) {
		calls = append(calls, tok)
		if refuse {
			return "", time.Time{}, fmt.Errorf("status 401: %w", lifecycle.ErrPaletteTokenRefused)
		}
		return fmt.Sprintf("palette-%d", len(calls)), time.Time{}, nil
	}
	use := func() (*server.UserSession, error) {
		t.Helper()
		us, err := f.Server.UserSession(ctx, token)
		if err != nil {
			t.Fatal(err)
		}
		return f.Server.PaletteSession(ctx, us, renew)
	}

	for _, step := range []struct {
		name      string
		advance   time.Duration
		wantToken string
		wantCalls int
	}{
		{"fresh token: used as it is", 0, "palette-0", 0},
		{"10 minutes left: still used", 5 * time.Minute, "palette-0", 0},
		{"under 2 minutes left: renewed", 8*time.Minute + time.Second, "palette-1", 1},
		{"renewed token: 15 minutes again", 10 * time.Minute, "palette-1", 1},
		{"renewed again near its end", 4 * time.Minute, "palette-2", 2},
	} {
		f.Advance(step.advance)
		got, err := use()
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got.Tokens.PaletteSessionToken != step.wantToken || len(calls) != step.wantCalls {
			t.Fatalf("%s: token %q after %d renewals, want %q after %d", step.name, got.Tokens.PaletteSessionToken, len(calls), step.wantToken, step.wantCalls)
		}
		if stored, _ := f.Sessions.Get(ctx, us.Key); stored.Upstream.PaletteSessionToken != step.wantToken {
			t.Fatalf("%s: stored token %q, want %q", step.name, stored.Upstream.PaletteSessionToken, step.wantToken)
		}
	}
	if calls[0] != "palette-0" || calls[1] != "palette-1" {
		t.Errorf("renewals sent %v, want each the current token", calls)
	}

	// Palette refuses: the token is dropped, the session stays.
	f.Advance(14 * time.Minute)
	refuse = true
	if _, err := use(); !errors.Is(err, lifecycle.ErrPaletteTokenRefused) {
		t.Fatalf("refused renewal: err = %v", err)
	}
	got, err := use()
	if err != nil || got.Tokens.PaletteSessionToken != "" || len(calls) != 3 {
		t.Fatalf("after a refusal: token %q, %d renewals, err %v; want none, 3, nil", got.Tokens.PaletteSessionToken, len(calls), err)
	}

	// Signing out drops the session and its Palette token with it.
	b.Do(http.MethodPost, f.URL("/api/auth/spectrocloud/logout?env=development"), false, "X-Requested-With", "XMLHttpRequest")
	if _, err := f.Server.PaletteSession(ctx, got, renew); err != nil {
		t.Fatalf("a session without a token needs no renewal: %v", err)
	}
	got.Session.Upstream.PaletteSessionToken = "palette-x"
	got.Session.Upstream.PaletteSessionTokenExpiry = time.Time{}
	if _, err := f.Server.PaletteSession(ctx, got, renew); !errors.Is(err, server.ErrSessionEnded) {
		t.Errorf("after sign-out: err = %v, want ErrSessionEnded", err)
	}
	if len(calls) != 3 {
		t.Errorf("an ended session's token was renewed: %v", calls)
	}
}
