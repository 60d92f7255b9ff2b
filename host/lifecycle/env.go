package lifecycle

import (
	"context"
	"time"

	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// Upstream is the SpectroCloud OpenID Connect client of one environment
// (*upstream.Provider).
type Upstream interface {
	AuthCodeURL(upstream.AuthRequest) string
	Exchange(ctx context.Context, code, redirectURL, pkceVerifier, expectedNonce string) (*upstream.Tokens, error)
	Refresh(ctx context.Context, t *upstream.Tokens) (*upstream.Tokens, error)
	Revoke(ctx context.Context, t *upstream.Tokens) error
	// CheckUserinfo revalidates a session without a refresh grant; it
	// answers upstream.ErrNoUserinfo when the provider has no userinfo.
	CheckUserinfo(ctx context.Context, t *upstream.Tokens) error
	CheckAuthorizationResponseIssuer(iss string) error
}

var _ Upstream = (*upstream.Provider)(nil)

// Env is one Backstage environment of the provider.
type Env struct {
	// Upstream is the environment's SpectroCloud client.
	Upstream Upstream
	// SignIn resolves the Backstage identity. It is only ever called
	// through its interface, so a reload can hand in a resolver that reads
	// the serving configuration generation (host/daemon).
	SignIn signin.Resolver
	// Scopes are requested on top of what the app asks for.
	Scopes []string
	// CallbackURL is the redirect URI registered with SpectroCloud.
	CallbackURL string
	// RefreshMargin: upstream tokens are refreshed when they have less left.
	RefreshMargin time.Duration
	// SessionDuration bounds a session and the refresh cookie.
	SessionDuration time.Duration
	// RevalidateInterval: each session asks the provider at least this
	// often (its refresh grant, or userinfo without one), however long its
	// ID token lives; zero means DefaultRevalidateInterval.
	RevalidateInterval time.Duration
	// LogoutURL, when https or localhost, is returned from /logout so the app
	// navigates there (e.g. the provider's end-session page).
	LogoutURL string
	// TrustEmailWithoutVerifiedClaim accepts email when email_verified is absent.
	TrustEmailWithoutVerifiedClaim bool

	name string
}

// Name is the environment's name (its key in Config.Envs).
func (e *Env) Name() string { return e.name }

// DefaultRevalidateInterval is Env.RevalidateInterval's default: at most
// four provider calls per session-hour.
const DefaultRevalidateInterval = 15 * time.Minute

// Policy is the environment's renewal policy.
func (e *Env) Policy() Policy {
	iv := e.RevalidateInterval
	if iv <= 0 {
		iv = DefaultRevalidateInterval
	}
	return Policy{RefreshMargin: e.RefreshMargin, RevalidateInterval: iv}
}
