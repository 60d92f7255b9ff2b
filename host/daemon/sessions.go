package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/config"
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
// storage (sign out everywhere, by an operator) and logs an audit line. The
// upstream tokens are revoked first where the environment's provider has a
// revocation endpoint and can be reached (failures are logged: the sessions
// end here anyway). On PostgreSQL every replica refuses the sessions at
// once; a daemon on file storage keeps them in memory and refuses them at
// their next renewal, within the environment's revalidateInterval.
func RevokeUserSessions(ctx context.Context, cfg *config.Config, userEntityRef string, log hclog.Logger) (int, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	store, closeStore, err := openSessionStore(ctx, cfg, log)
	if err != nil {
		return 0, err
	}
	defer closeStore()
	entries, err := store.ListByUser(ctx, userEntityRef)
	if err != nil {
		return 0, fmt.Errorf("listing the sessions of %s: %w", userEntityRef, err)
	}
	providers := map[string]*upstream.Provider{}
	for _, e := range entries {
		p, ok := providers[e.Session.Env]
		if !ok {
			p = revocationProvider(ctx, cfg, e.Session.Env, log)
			providers[e.Session.Env] = p
		}
		if p == nil {
			continue
		}
		u := e.Session.Upstream
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := p.Revoke(rctx, &upstream.Tokens{RefreshToken: u.RefreshToken, AccessToken: u.AccessToken})
		cancel()
		if err != nil {
			log.Warn("upstream revocation failed; the session is ended here anyway", "env", e.Session.Env, "session", e.Key.String(), "error", err)
		}
	}
	n, err := store.DeleteByUser(ctx, userEntityRef)
	if err != nil {
		return n, fmt.Errorf("deleting the sessions of %s: %w", userEntityRef, err)
	}
	log.Info("signed out everywhere", "audit", "sessions-revoked", "by", "operator", "user", userEntityRef, "sessions", n)
	return n, nil
}

// revocationProvider is env's provider client for revocation, or nil when
// the environment is not configured or its provider cannot be reached.
func revocationProvider(ctx context.Context, cfg *config.Config, env string, log hclog.Logger) *upstream.Provider {
	pe, ok := cfg.Auth.Providers.SpectroCloud[env]
	if !ok {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ucfg := upstreamConfig(pe)
	ucfg.Logger = log.Named("upstream").With("env", env)
	p, err := upstream.New(dctx, ucfg)
	if err != nil {
		log.Warn("the provider could not be reached; upstream tokens are not revoked", "env", env, "error", err)
		return nil
	}
	return p
}
