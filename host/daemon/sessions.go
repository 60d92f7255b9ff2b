package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/storage/postgres"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// UserSession is one session as the operator command lists it: what names
// and dates it, never a token.
type UserSession struct {
	// Key is the session's store key (the SHA-256 of its cookie handle);
	// it cannot be turned back into the handle.
	Key       string
	Env       string
	CreatedAt time.Time
	ExpiresAt time.Time
	// CheckedAt is when the provider last vouched for it.
	CheckedAt time.Time
	// RefreshGrant says whether the session holds an upstream refresh token.
	RefreshGrant bool
}

// openSessionStore opens the session store cfg's storage names, for an
// operator command run beside (or instead of) the daemon. close releases it.
func openSessionStore(ctx context.Context, cfg *config.Config, log hclog.Logger) (_ session.Store, closeFn func(), _ error) {
	switch cfg.Storage.Type {
	case "", "file":
		s, err := session.OpenFileStore(cfg.Storage.Path, session.Options{SweepInterval: -1, Logger: log.Named("sessions")})
		if err != nil {
			return nil, nil, fmt.Errorf("storage.path: %w", err)
		}
		return s, func() { _ = s.Close() }, nil
	case "postgres":
		db, err := postgres.Open(ctx, cfg.Storage.PostgresURL.Reveal(), postgres.Options{SweepInterval: -1, Logger: log.Named("postgres")})
		if err != nil {
			return nil, nil, fmt.Errorf("storage.postgresUrl: %w", err)
		}
		return db.Sessions(), func() { db.Close() }, nil
	default:
		return nil, nil, fmt.Errorf("storage.type: must be file or postgres, not %q", cfg.Storage.Type)
	}
}

// ListUserSessions lists the live sessions of userEntityRef (browser and
// command-line) in the configured storage.
func ListUserSessions(ctx context.Context, cfg *config.Config, userEntityRef string, log hclog.Logger) ([]UserSession, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	store, closeStore, err := openSessionStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	entries, err := store.ListByUser(ctx, userEntityRef)
	if err != nil {
		return nil, fmt.Errorf("listing the sessions of %s: %w", userEntityRef, err)
	}
	out := make([]UserSession, 0, len(entries))
	for _, e := range entries {
		s := e.Session
		checked := s.Upstream.CheckedAt
		if checked.IsZero() {
			checked = s.CreatedAt
		}
		out = append(out, UserSession{
			Key: e.Key.String(), Env: s.Env, CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt,
			CheckedAt: checked, RefreshGrant: s.Upstream.RefreshToken != "",
		})
	}
	return out, nil
}

// RevokeUserSessions ends every session of userEntityRef in the configured
// storage (sign out everywhere, by an operator) through the session
// lifecycle, as the user's own sign out everywhere does
// (lifecycle.Manager.EndUserSessions): the upstream tokens are revoked
// first where the environment's provider has a revocation endpoint and can
// be reached (failures are logged: the sessions end here anyway), then the
// sessions deleted and an audit line logged. On PostgreSQL every replica
// refuses the sessions at once; a daemon on file storage reads the deletes
// from the session journal within about a second
// (session.DefaultCatchUpInterval) and refuses the sessions from then on.
// The daemon's ended-sessions metric is not counted: this command is
// another process.
func RevokeUserSessions(ctx context.Context, cfg *config.Config, userEntityRef string, log hclog.Logger) (int, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	store, closeStore, err := openSessionStore(ctx, cfg, log)
	if err != nil {
		return 0, err
	}
	defer closeStore()
	return endUserSessions(ctx, store, operatorEnvs(cfg, log), userEntityRef, log)
}

// endUserSessions ends userEntityRef's sessions in store with the
// lifecycle's operator sign out everywhere.
func endUserSessions(ctx context.Context, store session.Store, envs map[string]*lifecycle.Env, userEntityRef string, log hclog.Logger) (int, error) {
	op, err := lifecycle.NewOperator(lifecycle.OperatorConfig{Envs: envs, Sessions: store, Logger: log})
	if err != nil {
		return 0, err
	}
	return op.EndUserSessions(ctx, userEntityRef)
}

// operatorEnvs are cfg's environments as the operator's sign out
// everywhere needs them: each with a provider client that reaches the
// provider only when a session of its environment is revoked.
func operatorEnvs(cfg *config.Config, log hclog.Logger) map[string]*lifecycle.Env {
	envs := make(map[string]*lifecycle.Env, len(cfg.Auth.Providers.SpectroCloud))
	for name, pe := range cfg.Auth.Providers.SpectroCloud {
		envs[name] = &lifecycle.Env{
			Upstream:                       &revocationUpstream{env: name, cfg: upstreamConfig(pe), log: log},
			TrustEmailWithoutVerifiedClaim: pe.TrustEmailWithoutVerifiedClaim,
		}
	}
	return envs
}

// operatorTimeout bounds the operator's provider discovery and each
// revocation.
const operatorTimeout = 10 * time.Second

// revocationUpstream is an environment's provider client for revocation
// only: it discovers the provider at its first revocation (so environments
// without sessions of the user cost nothing), and when the provider cannot
// be reached it says so once and revokes nothing. Not for sign-in.
type revocationUpstream struct {
	env string
	cfg upstream.Config
	log hclog.Logger

	once sync.Once
	p    *upstream.Provider
}

var _ lifecycle.Upstream = (*revocationUpstream)(nil)

// errRevocationOnly: the operator's provider client only revokes.
var errRevocationOnly = errors.New("the operator's provider client only revokes tokens")

// provider discovers the provider once; nil when it cannot be reached.
func (r *revocationUpstream) provider(ctx context.Context) *upstream.Provider {
	r.once.Do(func() {
		dctx, cancel := context.WithTimeout(ctx, operatorTimeout)
		defer cancel()
		r.cfg.Logger = r.log.Named("upstream").With("env", r.env)
		p, err := upstream.New(dctx, r.cfg)
		if err != nil {
			r.log.Warn("the provider could not be reached; upstream tokens are not revoked", "env", r.env, "error", err)
			return
		}
		r.p = p
	})
	return r.p
}

// Revoke revokes t at the provider, if it can be reached.
func (r *revocationUpstream) Revoke(ctx context.Context, t *upstream.Tokens) error {
	p := r.provider(ctx)
	if p == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, operatorTimeout)
	defer cancel()
	return p.Revoke(rctx, t)
}

func (r *revocationUpstream) AuthCodeURL(upstream.AuthRequest) string { return "" }

func (r *revocationUpstream) Exchange(context.Context, string, string, string, string) (*upstream.Tokens, error) {
	return nil, errRevocationOnly
}

func (r *revocationUpstream) Refresh(context.Context, *upstream.Tokens) (*upstream.Tokens, error) {
	return nil, errRevocationOnly
}

func (r *revocationUpstream) CheckUserinfo(context.Context, *upstream.Tokens) error {
	return errRevocationOnly
}

func (r *revocationUpstream) CheckAuthorizationResponseIssuer(string) error {
	return errRevocationOnly
}
