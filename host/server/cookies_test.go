package server_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/session/sessiontest"
)

// rawCall sends a script call (refresh or logout) with exactly the given
// Cookie header, as a browser holding planted cookies sends it.
func (f *fakeFixture) rawCall(method, path, cookie string) *http.Response {
	f.T.Helper()
	req, _ := http.NewRequest(method, f.Srv.URL+path, nil)
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	req.Header.Set("Origin", appOrigin)
	req.Header.Set("Cookie", cookie)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.T.Fatal(err)
	}
	f.T.Cleanup(func() { res.Body.Close() })
	return res
}

func (f *fakeFixture) live(handle string) bool {
	key, _ := session.KeyOf(handle)
	_, err := f.Sessions.Get(context.Background(), key)
	return err == nil
}

const (
	refreshPath = "/api/auth/spectrocloud/refresh?optional&env=development"
	logoutPath  = "/api/auth/spectrocloud/logout?env=development"
)

// Two refresh cookies (one planted by a sibling subdomain) are refused:
// serving the first would hand the browser another user's session.
func TestDuplicateSessionCookiesRefused(t *testing.T) {
	f := newFakeFixture(t)
	_, victim := f.signIn()
	_, planted := f.signIn()
	for _, cookie := range []string{
		"spectrocloud-refresh-token=" + planted + "; spectrocloud-refresh-token=" + victim,
		"spectrocloud-refresh-token=" + victim + "; spectrocloud-granted-scope=openid; spectrocloud-granted-scope=admin",
	} {
		res := f.rawCall(http.MethodGet, refreshPath, cookie)
		if res.StatusCode != http.StatusUnauthorized || !clearsSessionCookie(res) {
			t.Fatalf("refresh with %q: %d (cleared %v), want 401 and the cookies cleared", cookie, res.StatusCode, clearsSessionCookie(res))
		}
		if body := decodeJSON(t, res); body["error"].(map[string]any)["name"] != "AuthenticationError" {
			t.Fatalf("error body = %v", body)
		}
	}
	if f.live(victim) || f.live(planted) {
		t.Fatal("sessions named by duplicate cookies outlived the refusal")
	}
	if got := f.endedCount(lifecycle.EndDuplicateCookies); got != 2 {
		t.Errorf("sessions ended for duplicate cookies = %d, want 2", got)
	}
}

// Logout with a planted cookie sent first ends the real session too.
func TestLogoutWithPlantedCookieEndsRealSession(t *testing.T) {
	f := newFakeFixture(t)
	_, real := f.signIn()
	_, planted := f.signIn()
	res := f.rawCall(http.MethodPost, logoutPath, "spectrocloud-refresh-token="+planted+"; spectrocloud-refresh-token="+real)
	if res.StatusCode != http.StatusOK || !clearsSessionCookie(res) {
		t.Fatalf("logout: %d (cleared %v)", res.StatusCode, clearsSessionCookie(res))
	}
	if f.live(real) {
		t.Fatal("the real session survived a logout with a planted cookie first")
	}
	if f.live(planted) {
		t.Fatal("the planted session survived the logout")
	}
}

// Sign out everywhere ends every session of the user (other browsers, the
// command line) and no one else's.
func TestSignOutEverywhere(t *testing.T) {
	f := newFakeFixture(t)
	_, here := f.signIn()
	other, elsewhere := f.signIn()
	ctx := context.Background()
	cli, bob := sessiontest.Key(t), sessiontest.Key(t)
	cliSess := sessiontest.Sample(f.Now(), "alice") // a command-line session of the same user
	if err := f.Sessions.Put(ctx, cli, cliSess); err != nil {
		t.Fatal(err)
	}
	if err := f.Sessions.Put(ctx, bob, sessiontest.Sample(f.Now(), "bob")); err != nil {
		t.Fatal(err)
	}

	// Same checks as logout: the header is required.
	req, _ := http.NewRequest(http.MethodPost, f.Srv.URL+logoutPath+"&everywhere=true", nil)
	req.Header.Set("Cookie", "spectrocloud-refresh-token="+here)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("sign out everywhere without X-Requested-With: %v %v", err, res)
	}
	if !f.live(here) {
		t.Fatal("a refused sign-out ended the session")
	}

	res := f.rawCall(http.MethodPost, logoutPath+"&everywhere=true", "spectrocloud-refresh-token="+here)
	if res.StatusCode != http.StatusOK || !clearsSessionCookie(res) {
		t.Fatalf("sign out everywhere: %d", res.StatusCode)
	}
	if f.live(here) || f.live(elsewhere) {
		t.Fatal("a browser session of the user survived sign out everywhere")
	}
	if _, err := f.Sessions.Get(ctx, cli); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("the user's command-line session survived: %v", err)
	}
	if _, err := f.Sessions.Get(ctx, bob); err != nil {
		t.Fatalf("another user's session was ended: %v", err)
	}
	if got := f.refresh(other); got != http.StatusUnauthorized {
		t.Fatalf("refresh in the other browser: %d, want 401", got)
	}
	if got := f.endedCount(lifecycle.EndSignedOutEverywhere); got != 3 {
		t.Errorf("sessions ended everywhere = %d, want 3", got)
	}
	// Without a live session there is no one to sign out.
	if res := f.rawCall(http.MethodPost, logoutPath+"&everywhere=true", "spectrocloud-refresh-token="+here); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("sign out everywhere without a live session: %d, want 401", res.StatusCode)
	}
}
