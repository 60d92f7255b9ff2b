package server

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/session"
)

// authResponse is the body of /refresh and the frame's response: Backstage's
// ClientAuthResponse.
type authResponse struct {
	Profile           profile            `json:"profile"`
	ProviderInfo      providerInfo       `json:"providerInfo"`
	BackstageIdentity *backstageIdentity `json:"backstageIdentity,omitempty"`
}

type profile struct {
	Email       string `json:"email,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
	Picture     string `json:"picture,omitempty"`
}

type providerInfo struct {
	IDToken          string `json:"idToken,omitempty"`
	AccessToken      string `json:"accessToken,omitempty"`
	Scope            string `json:"scope"`
	ExpiresInSeconds int64  `json:"expiresInSeconds,omitempty"`
}

type backstageIdentity struct {
	Token            string           `json:"token"`
	ExpiresInSeconds int64            `json:"expiresInSeconds"`
	Identity         identityResponse `json:"identity"`
}

type identityResponse struct {
	Type                string   `json:"type"`
	UserEntityRef       string   `json:"userEntityRef"`
	OwnershipEntityRefs []string `json:"ownershipEntityRefs"`
}

// responseFor renders a session for the app. The Palette session token is
// never part of it: Kubernetes and the app only ever see the ID token.
func (s *Server) responseFor(sess *session.Session) *authResponse {
	now := s.now()
	res := &authResponse{
		Profile: profile{Email: sess.Profile.Email, DisplayName: sess.Profile.DisplayName, Picture: sess.Profile.Picture},
		ProviderInfo: providerInfo{
			IDToken:          sess.Upstream.IDToken,
			AccessToken:      sess.Upstream.AccessToken,
			Scope:            sess.Scope,
			ExpiresInSeconds: secondsLeft(providerExpiry(sess), now),
		},
	}
	if b := sess.Backstage; b != nil {
		refs := sess.OwnershipEntityRefs
		if refs == nil {
			refs = []string{}
		}
		res.BackstageIdentity = &backstageIdentity{
			Token:            b.Token,
			ExpiresInSeconds: secondsLeft(b.ExpiresAt, now),
			Identity:         identityResponse{Type: "user", UserEntityRef: sess.UserEntityRef, OwnershipEntityRefs: refs},
		}
	}
	return res
}

// providerExpiry is when the app must come back for fresh provider tokens:
// the ID token's expiry. The ID token is what Backstage (getIdToken) and
// Kubernetes use; the access token is passed through as the provider issued it.
func providerExpiry(sess *session.Session) time.Time {
	return sess.Upstream.IDTokenExpiry
}

func secondsLeft(t, now time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	d := t.Sub(now).Round(time.Second) / time.Second
	if d < 0 {
		return 0
	}
	return int64(d)
}

// scriptCall checks what Backstage requires of the app's script calls
// (/refresh and /logout): the X-Requested-With header, which browsers never
// send cross-site without a CORS preflight, and an allowed Origin when one
// is sent. It returns the selected environment and the caller's origin.
func (s *Server) scriptCall(r *http.Request) (*Env, string, error) {
	if r.Header.Get("X-Requested-With") != "XMLHttpRequest" {
		return nil, "", backstageerr.Authentication("Invalid X-Requested-With header")
	}
	origin := r.Header.Get("Origin")
	if origin != "" && !s.origins.allowed(origin) {
		return nil, "", backstageerr.NotAllowed("Origin '%s' is not allowed", origin)
	}
	env, err := s.env(r.URL.Query().Get("env"))
	return env, origin, err
}

// refresh answers GET/POST /api/auth/spectrocloud/refresh.
func (s *Server) refresh(w http.ResponseWriter, r *http.Request) error {
	env, origin, err := s.scriptCall(r)
	if err != nil {
		return err
	}
	handles, duplicate := s.jar(env).sessionHandles(r)
	if duplicate {
		// Which session is ours cannot be told: end every one named and
		// clear every copy, rather than serve another user's session.
		s.lc.EndNamed(r.Context(), env, handles, lifecycle.EndDuplicateCookies)
		s.jar(env).clearPlanted(w, origin)
		return refreshFailed(backstageerr.Authentication("Duplicate session cookies"))
	}
	if len(handles) == 0 || handles[0] == "" {
		return refreshFailed(backstageerr.Input("Missing session cookie"))
	}
	key, err := session.KeyOf(handles[0])
	if err != nil {
		s.jar(env).clearSession(w, origin)
		return refreshFailed(err)
	}
	sess, err := s.lc.Refresh(r.Context(), env, key)
	if err != nil {
		if errors.Is(err, ErrSessionEnded) {
			s.jar(env).clearSession(w, origin)
		}
		return refreshFailed(err)
	}
	backstageerr.WriteJSON(w, http.StatusOK, s.responseFor(sess))
	return nil
}

func refreshFailed(cause error) error {
	return backstageerr.Authentication("Refresh failed").WithCause(cause)
}

// logout answers POST /api/auth/spectrocloud/logout: revoke upstream where
// the provider supports it, end every session the request names (a planted
// cookie sent first must not leave the real session alive), clear the
// cookies. With ?everywhere=true it ends every session of the user the
// request's session belongs to, browser and command-line alike.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	env, origin, err := s.scriptCall(r)
	if err != nil {
		return err
	}
	handles, duplicate := s.jar(env).sessionHandles(r)
	if r.URL.Query().Get("everywhere") == "true" {
		if err := s.lc.SignOutEverywhere(r.Context(), env, handles); err != nil {
			return err
		}
	} else if err := s.lc.EndNamed(r.Context(), env, handles, lifecycle.EndSignedOut); err != nil {
		return err
	}
	if duplicate {
		s.jar(env).clearPlanted(w, origin)
	} else {
		s.jar(env).clearSession(w, origin)
	}
	if allowedLogoutURL(env.LogoutURL) {
		backstageerr.WriteJSON(w, http.StatusOK, map[string]string{"logoutUrl": env.LogoutURL})
		return nil
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// allowedLogoutURL mirrors Backstage: only an https or localhost URL is sent.
func allowedLogoutURL(raw string) bool {
	if raw == "" {
		return false
	}
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "https" || u.Hostname() == "localhost")
}
