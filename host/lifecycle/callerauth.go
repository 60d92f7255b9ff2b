package lifecycle

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/spectroauth/spectroauth/host/identity"
)

// Refusals of CredentialCallers.Authenticate before any session is read.
// Each wraps ErrUnauthenticated.
var (
	// ErrNoCredential: the request carries neither a bearer token nor a
	// session cookie the route accepts.
	ErrNoCredential = fmt.Errorf("%w: no command-line access token and no browser session", ErrUnauthenticated)
	// ErrBackstageToken: the caller sent a Backstage user token. Backstage
	// hands that token to every backend plugin, so it never buys a user's
	// credentials.
	ErrBackstageToken = fmt.Errorf("%w: a Backstage user token is not accepted here", ErrUnauthenticated)
	// ErrNotCLIToken: the bearer token is not a command-line access token.
	ErrNotCLIToken = fmt.Errorf("%w: not a command-line access token", ErrUnauthenticated)
)

// CredentialCallers authenticates the callers of routes that use a user's
// upstream credentials on the user's behalf (a Kubernetes credential, a
// call to Palette's API as the user): a command-line access token, or
// Backstage's app in the user's browser with its session cookie. It never
// accepts a Backstage user token alone. It is the one implementation the
// Kubernetes credential route and the Palette API route share.
type CredentialCallers struct {
	// CLISessions authenticates command-line access tokens
	// ((*cliauth.Handler).Session). Nil refuses every bearer token.
	CLISessions func(ctx context.Context, accessToken string) (*UserSession, error)
	// BrowserSessions authenticates a call from Backstage's app in the
	// browser ((*server.Server).BrowserSession: allowed origin,
	// X-Requested-With, the refresh cookie), used when no bearer token is
	// sent. Nil disables it.
	BrowserSessions func(*http.Request) (*UserSession, error)
}

// Authenticate returns the caller's session. Its errors wrap
// ErrUnauthenticated (ErrNoCredential, ErrBackstageToken, ErrNotCLIToken or
// an invalid credential), ErrSessionEnded, or a failure to read the session
// (neither: the caller may try again).
func (c CredentialCallers) Authenticate(r *http.Request) (*UserSession, error) {
	token := BearerToken(r)
	if token == "" {
		if c.BrowserSessions != nil && r.Header.Get("Cookie") != "" {
			return c.BrowserSessions(r)
		}
		return nil, ErrNoCredential
	}
	switch typ := identity.TokenType(token); {
	case typ == identity.TypeCLIAccess && c.CLISessions != nil:
		return c.CLISessions(r.Context(), token)
	case typ == identity.TypeUser || typ == identity.TypeLimitedUser:
		return nil, ErrBackstageToken
	default:
		return nil, ErrNotCLIToken
	}
}

// BearerToken returns the token of an "Authorization: Bearer" header, ""
// when there is none.
func BearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}
