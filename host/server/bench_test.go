package server_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// BenchmarkRefresh is the /refresh hot path in-process: a signed-in session
// whose tokens need nothing renewed, as on every Backstage page load.
func BenchmarkRefresh(b *testing.B) {
	f := newFixture(b, fixtureOptions{RefreshTokens: true})
	br := newBrowser(b)
	signIn(b, f, br)
	u, _ := url.Parse(f.URL("/api/auth/spectrocloud/refresh"))
	var cookie *http.Cookie
	for _, c := range br.Client.Jar.Cookies(u) {
		if c.Name == "spectrocloud-refresh-token" {
			cookie = c
		}
	}
	target := "/api/auth/spectrocloud/refresh?optional&scope=openid%20profile%20email&env=development"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodGet, target, nil)
			req.Header.Set("X-Requested-With", "XMLHttpRequest")
			req.Header.Set("Origin", appOrigin)
			req.AddCookie(cookie)
			rec := httptest.NewRecorder()
			f.Server.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("refresh: %d", rec.Code)
			}
		}
	})
}
