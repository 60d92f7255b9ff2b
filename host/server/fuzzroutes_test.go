package server_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzRefreshCookie sends made-up Cookie and Origin headers to /refresh of a
// daemon (real OP, real file store) that holds one signed-in session: only
// a request carrying that session's exact handle gets a 200, and nothing
// made up gets a server error.
func FuzzRefreshCookie(f *testing.F) {
	fx := newFixture(f, fixtureOptions{RefreshTokens: true})
	b := newBrowser(f)
	signIn(f, fx, b)
	u, _ := url.Parse(fx.URL("/api/auth/spectrocloud/refresh"))
	var handle string
	for _, c := range b.Client.Jar.Cookies(u) {
		if c.Name == "spectrocloud-refresh-token" {
			handle = c.Value
		}
	}
	if handle == "" {
		f.Fatal("no session cookie after sign-in")
	}
	f.Add("spectrocloud-refresh-token="+handle, appOrigin)
	f.Fuzz(func(t *testing.T, cookie, origin string) {
		r := httptest.NewRequest(http.MethodGet, "/api/auth/spectrocloud/refresh?optional&env=development", nil)
		r.Header.Set("X-Requested-With", "XMLHttpRequest")
		r.Header.Set("Origin", origin)
		r.Header.Set("Cookie", cookie)
		rec := httptest.NewRecorder()
		fx.Server.ServeHTTP(rec, r)
		if rec.Code >= 500 {
			t.Fatalf("cookie %q, origin %q: %d %s", cookie, origin, rec.Code, rec.Body)
		}
		if rec.Code == http.StatusOK && !strings.Contains(cookie, handle) {
			t.Fatalf("cookie %q without the session's handle refreshed: %s", cookie, rec.Body)
		}
	})
}
