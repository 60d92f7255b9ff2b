package lifecycle

import (
	"errors"

	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// Errors of the routes that authenticate a caller's session for other
// front ends (Kubernetes credentials).
var (
	// ErrUnauthenticated: the caller's token or cookie names no session of
	// this daemon (or is not the kind of credential the route takes).
	ErrUnauthenticated = errors.New("not a valid token of this daemon")
	// ErrSessionEnded: the credential was valid but its session has ended
	// (signed out, expired, refused by the provider or the resolvers).
	ErrSessionEnded = errors.New("session ended")
)

// UserSession is a signed-in user's session as front ends other than
// Backstage's routes (Kubernetes credentials) need it: with upstream tokens
// fresh enough to hand on.
type UserSession struct {
	// Key names the session in the store.
	Key session.Key
	// Env is the Backstage environment the user signed in to.
	Env string
	// Session is a copy of the stored session.
	Session *session.Session
	// Tokens are the upstream tokens, renewed first when the session's
	// policy said the provider was due.
	Tokens *upstream.Tokens
}
