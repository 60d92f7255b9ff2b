package server_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/spectroauth/spectroauth/host/server"
)

func TestUserSessionFromBackstageToken(t *testing.T) {
	f := newFixture(t, fixtureOptions{RefreshTokens: true})
	b := newBrowser(t)
	res := signIn(t, f, b)
	token := res["backstageIdentity"].(map[string]any)["token"].(string)
	if sid, _ := jwtClaims(t, token)["sid"].(string); len(sid) != 64 {
		t.Fatalf("Backstage token has no session id: %q", sid)
	}
	ctx := context.Background()

	us, err := f.Server.UserSession(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if us.Session.UserEntityRef != "user:default/alice" || us.Env != "development" || us.Tokens.IDToken == "" {
		t.Errorf("user session = %+v", us.Session)
	}
	if us.Tokens.Profile.Email != "alice@example.com" || len(us.Tokens.Profile.Groups) != 2 {
		t.Errorf("profile = %+v", us.Tokens.Profile)
	}

	for name, tok := range map[string]string{
		"garbage":           "not-a-token",
		"tampered":          token[:len(token)-3] + "AAA",
		"limited token":     limitedToken(t, token),
		"provider ID token": us.Tokens.IDToken,
	} {
		if _, err := f.Server.UserSession(ctx, tok); !errors.Is(err, server.ErrUnauthenticated) {
			t.Errorf("%s: err = %v, want ErrUnauthenticated", name, err)
		}
	}

	b.Do(http.MethodPost, f.URL("/api/auth/spectrocloud/logout?env=development"), false, "X-Requested-With", "XMLHttpRequest")
	if _, err := f.Server.UserSession(ctx, token); !errors.Is(err, server.ErrSessionEnded) {
		t.Errorf("after logout: err = %v, want ErrSessionEnded", err)
	}
}

// limitedToken rebuilds Backstage's limited user token from a user token.
func limitedToken(t *testing.T, token string) string {
	t.Helper()
	claims := jwtClaims(t, token)
	h := `{"typ":"vnd.backstage.limited-user","alg":"ES256","kid":"` + jwtHeader(t, token)["kid"].(string) + `"}`
	p := `{"sub":"` + claims["sub"].(string) + `","iat":` + jsonNumber(claims["iat"]) + `,"exp":` + jsonNumber(claims["exp"]) + `}`
	return b64(h) + "." + b64(p) + "." + claims["uip"].(string)
}
