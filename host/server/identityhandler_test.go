package server_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/server"
)

// While the daemon starts, token verifiers already get the JWKS and user
// info; sign-in routes say "starting".
func TestIdentityHandlerWhileStarting(t *testing.T) {
	iss, err := identity.New(identity.Config{Issuer: "http://localhost:7007/api/auth", KeyStore: identity.NewMemoryKeyStore(), UserInfo: identity.NewMemoryUserInfoStore()})
	if err != nil {
		t.Fatal(err)
	}
	h, err := server.NewIdentityHandler(server.Config{BaseURL: "http://localhost:7007", AppBaseURL: "http://localhost:3000", Identity: iss, UserInfo: identity.NewMemoryUserInfoStore()})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{
		"/api/auth/.well-known/jwks.json":            200,
		"/api/auth/.well-known/openid-configuration": 200,
		"/healthz":              200,
		"/api/auth/v1/userinfo": 401,
		"/readyz":               503,
		"/api/auth/spectrocloud/start?env=development": 503,
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("GET %s: %d, want %d", path, rec.Code, want)
		}
	}
}
