package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/session"
)

// The session view and errors other front ends use live in lifecycle;
// these names keep host/server's callers reading as before.
var (
	// ErrUnauthenticated: the token is not a valid token of this daemon for the route.
	ErrUnauthenticated = lifecycle.ErrUnauthenticated
	// ErrSessionEnded: the token is valid but its session has ended (signed
	// out, expired, refused by the provider or the resolvers).
	ErrSessionEnded = lifecycle.ErrSessionEnded
)

// UserSession is lifecycle.UserSession: a session with fresh upstream tokens.
type UserSession = lifecycle.UserSession

// UserSession authenticates a Backstage user token issued by this daemon and
// returns the browser session it was issued for, renewed first when the
// policy says the provider is due ((*lifecycle.Manager).UserSession).
func (s *Server) UserSession(ctx context.Context, backstageToken string) (*UserSession, error) {
	return s.lc.UserSession(ctx, backstageToken)
}

// BrowserSession authenticates a call from Backstage's app in the browser
// exactly as /refresh does: an allowed Origin, X-Requested-With (which makes
// the browser ask a CORS preflight first), and the HttpOnly refresh cookie
// of the environment named by the env query parameter. It is how
// Backstage's Kubernetes plugin, in the user's browser, fetches a cluster
// credential that then goes only to the kubernetes backend.
func (s *Server) BrowserSession(r *http.Request) (*UserSession, error) {
	origin := r.Header.Get("Origin")
	if origin == "" || !s.origins.allowed(origin) {
		return nil, fmt.Errorf("%w: origin %q is not allowed", ErrUnauthenticated, origin)
	}
	if r.Header.Get("X-Requested-With") == "" {
		return nil, fmt.Errorf("%w: the X-Requested-With header is required", ErrUnauthenticated)
	}
	env, ok := s.cfg.Envs[r.URL.Query().Get("env")]
	if !ok {
		return nil, fmt.Errorf("%w: the env query parameter names no environment", ErrUnauthenticated)
	}
	key, err := session.KeyOf(cookieValue(r, s.jar(env).refreshName))
	if err != nil {
		return nil, fmt.Errorf("%w: no session cookie", ErrUnauthenticated)
	}
	us, err := s.lc.SessionOf(r.Context(), key, "", session.KindBrowser)
	if err == nil && us.Env != env.Name() {
		return nil, fmt.Errorf("%w: the session belongs to another environment", ErrUnauthenticated)
	}
	return us, err
}

// CORS wraps h with the daemon's credentialed CORS policy (allowed origins
// only), as the provider routes have it.
func (s *Server) CORS(h http.Handler) http.Handler { return s.cors(h) }
