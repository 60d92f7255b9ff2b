package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"

	"github.com/spectroauth/spectroauth/host/identity"
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
// returns the browser session it was issued for. Upstream tokens are
// refreshed first when they would expire within the margin, exactly as
// /refresh does.
func (s *Server) UserSession(ctx context.Context, backstageToken string) (*UserSession, error) {
	claims, err := s.cfg.Identity.Verify(ctx, backstageToken)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	if claims.Type != identity.TypeUser || claims.SessionID == "" {
		return nil, fmt.Errorf("%w: the token names no session (a limited or foreign token)", ErrUnauthenticated)
	}
	return s.sessionFor(ctx, claims.SessionID, claims.Subject, session.KindBrowser)
}

// CLISession authenticates a command-line access token (identity.TypeCLIAccess,
// audience CLIAudience) and returns its command-line session, with upstream
// tokens refreshed as UserSession does.
func (s *Server) CLISession(ctx context.Context, accessToken string) (*UserSession, error) {
	claims, err := s.cfg.Identity.VerifyAccess(ctx, accessToken, identity.TypeCLIAccess, s.CLIAudience())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	return s.sessionFor(ctx, claims.SessionID, claims.Subject, session.KindCLI)
}

// sessionFor reads the session a verified token names (sid, the hex store
// key) for subject, and refreshes its upstream tokens within the margin.
func (s *Server) sessionFor(ctx context.Context, sid, subject string, kind session.Kind) (*UserSession, error) {
	raw, err := hex.DecodeString(sid)
	var key session.Key
	if err != nil || len(raw) != len(key) {
		return nil, fmt.Errorf("%w: malformed sid", ErrUnauthenticated)
	}
	copy(key[:], raw)
	return s.sessionOf(ctx, key, subject, kind)
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
	key, err := session.KeyOf(cookieValue(r, env.cookies.refreshName))
	if err != nil {
		return nil, fmt.Errorf("%w: no session cookie", ErrUnauthenticated)
	}
	us, err := s.sessionOf(r.Context(), key, "", session.KindBrowser)
	if err == nil && us.Env != env.name {
		return nil, fmt.Errorf("%w: the session belongs to another environment", ErrUnauthenticated)
	}
	return us, err
}

// CORS wraps h with the daemon's credentialed CORS policy (allowed origins
// only), as the provider routes have it.
func (s *Server) CORS(h http.Handler) http.Handler { return s.cors(h) }

// sessionOf reads the session under key of the given kind for subject (""
// for whoever it belongs to), refreshing upstream tokens within the margin.
func (s *Server) sessionOf(ctx context.Context, key session.Key, subject string, kind session.Kind) (*UserSession, error) {
	sess, err := s.cfg.Sessions.Get(ctx, key)
	if errors.Is(err, session.ErrNotFound) {
		return nil, fmt.Errorf("%w: %v", ErrSessionEnded, err)
	}
	if err != nil {
		// Not a verdict on the session: the caller may try again.
		return nil, fmt.Errorf("reading the session: %w", err)
	}
	if sess.Kind != kind {
		return nil, fmt.Errorf("%w: the token names a session of another kind", ErrUnauthenticated)
	}
	env, ok := s.cfg.Envs[sess.Env]
	if !ok {
		return nil, fmt.Errorf("%w: environment %q is no longer configured", ErrSessionEnded, sess.Env)
	}
	if subject != "" && sess.UserEntityRef != subject {
		return nil, fmt.Errorf("%w: the session belongs to another user", ErrUnauthenticated)
	}
	if s.upstreamDue(env, sess) {
		if sess, err = s.renewOnce(ctx, env, key); err != nil {
			return nil, err
		}
	}
	tokens, err := upstreamTokens(sess, env.TrustEmailWithoutVerifiedClaim)
	if err != nil {
		return nil, err
	}
	return &UserSession{Key: key, Env: sess.Env, Session: sess, Tokens: tokens}, nil
}
