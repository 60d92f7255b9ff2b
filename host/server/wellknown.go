package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
)

// openIDConfiguration describes the daemon as Backstage's auth backend
// describes itself, so Backstage backends find the JWKS and user info.
func (s *Server) openIDConfiguration() ([]byte, error) {
	doc := map[string]any{
		"issuer":                                s.authBase,
		"token_endpoint":                        s.authBase + "/v1/token",
		"userinfo_endpoint":                     s.authBase + "/v1/userinfo",
		"jwks_uri":                              s.authBase + "/.well-known/jwks.json",
		"response_types_supported":              []string{"code", "id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"scopes_supported":                      []string{"openid"},
		"token_endpoint_auth_methods_supported": []string{},
		"claims_supported":                      []string{"sub", "ent"},
		"grant_types_supported":                 []string{"authorization_code"},
		"authorization_endpoint":                s.authBase + "/v1/authorize",
		"code_challenge_methods_supported":      []string{"S256"},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("server: encoding the OpenID configuration: %w", err)
	}
	return b, nil
}

func (s *Server) openIDConfigurationRoute(w http.ResponseWriter, _ *http.Request) {
	writeRawJSON(w, s.oidcConf)
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	writeRawJSON(w, s.cfg.Identity.FreshJWKS(r.Context()))
}

func writeRawJSON(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// userinfo answers GET /api/auth/v1/userinfo for a user or limited user token
// with the claims stored when the token was issued (ownership included).
func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) error {
	authz := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(authz, " ")
	token = strings.TrimLeft(token, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return backstageerr.Authentication("No token provided")
	}
	claims, err := s.cfg.Identity.Verify(r.Context(), token)
	if err != nil {
		return backstageerr.Authentication("Invalid token").WithCause(err)
	}
	info, err := s.cfg.UserInfo.Get(r.Context(), claims.Subject)
	if errors.Is(err, identity.ErrUserInfoNotFound) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("User info not found"))
		return nil
	}
	if err != nil {
		// Not "not found": the user may well exist, and Backstage must not
		// act as if they did not over a store that failed for a moment.
		// The cause is logged (stores' errors hold no secret), not sent.
		return backstageerr.New(http.StatusServiceUnavailable, backstageerr.NameServiceUnavailable,
			"User info cannot be read right now", err)
	}
	backstageerr.WriteJSON(w, http.StatusOK, info)
	return nil
}
