package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/storage/postgres"
)

// readinessPingTimeout bounds the database check behind /readyz.
const readinessPingTimeout = 2 * time.Second

// storage is what storage.type selects: the stores and, for shared storage,
// what replicas need on top of them.
type storage struct {
	keys     identity.KeyStore
	userInfo identity.UserInfoStore
	// openSessions opens the session store and reads (or makes) the flow key.
	openSessions func(context.Context) (session.Store, []byte, error)
	// usedOnce is shared by replicas; nil means the server's in-memory set.
	usedOnce server.OnceSet
	// sharedKeys says other replicas add keys: the issuer re-reads the
	// store when a JWKS is asked for or a token names a newer key.
	sharedKeys bool
	// ping, when set, is part of readiness.
	ping func() error
}

// openStorage opens the stores storage.type names. What it opens is closed
// by Close.
func (d *Daemon) openStorage(ctx context.Context) (*storage, error) {
	switch d.cfg.Storage.Type {
	case "", "file":
		return d.openFileStorage()
	case "postgres":
		return d.openPostgresStorage(ctx)
	default:
		// Validation refuses this first; a config built in code may not be validated.
		return nil, fmt.Errorf("storage.type: must be file or postgres, not %q", d.cfg.Storage.Type)
	}
}

func (d *Daemon) openFileStorage() (*storage, error) {
	dir := d.cfg.Storage.Path
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating storage.path %s: %w", dir, err)
	}
	keys, err := identity.OpenFileKeyStore(dir, identity.WithLogger(d.log.Named("keys")))
	if err != nil {
		return nil, fmt.Errorf("opening the signing key store: %w", err)
	}
	userInfo, err := identity.OpenFileUserInfoStore(dir, identity.WithLogger(d.log.Named("userinfo")))
	if err != nil {
		return nil, fmt.Errorf("opening the user info store: %w", err)
	}
	// The session store, once open: a store whose journal failed to sync
	// refuses every write until the daemon restarts, so /readyz says so.
	var opened atomic.Pointer[session.FileStore]
	return &storage{
		keys:     keys,
		userInfo: userInfo,
		openSessions: func(context.Context) (session.Store, []byte, error) {
			sessions, err := session.OpenFileStore(dir, session.Options{Logger: d.log.Named("sessions")})
			if err != nil {
				return nil, nil, fmt.Errorf("opening the session store: %w", err)
			}
			flowKey, err := loadOrCreateSecret(filepath.Join(dir, "flow.key"))
			if err != nil {
				_ = sessions.Close()
				return nil, nil, err
			}
			opened.Store(sessions)
			return sessions, flowKey, nil
		},
		ping: func() error {
			// /readyz is public: a fixed reason, not the path and errno
			// (the failed write logged them).
			if s := opened.Load(); s != nil && s.Err() != nil {
				return errSessionsUnusable
			}
			return nil
		},
	}, nil
}

func (d *Daemon) openPostgresStorage(ctx context.Context) (*storage, error) {
	db, err := postgres.Open(ctx, d.cfg.Storage.PostgresURL.Reveal(), postgres.Options{Logger: d.log.Named("postgres")})
	if err != nil {
		return nil, fmt.Errorf("storage.postgresUrl: %w", err)
	}
	d.closers = append(d.closers, db.Close)
	return &storage{
		keys:     db.Keys(),
		userInfo: db.UserInfo(),
		openSessions: func(ctx context.Context) (session.Store, []byte, error) {
			flowKey, err := db.FlowKey(ctx)
			if err != nil {
				return nil, nil, fmt.Errorf("storage.postgresUrl: %w", err)
			}
			return db.Sessions(), flowKey, nil
		},
		usedOnce:   db.UsedOnce(),
		sharedKeys: true,
		ping: cachedCheck(time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), readinessPingTimeout)
			defer cancel()
			return db.Ping(ctx)
		}),
	}, nil
}

// errSessionsUnusable is /readyz's reason for a session store that refuses
// writes after a failed sync.
var errSessionsUnusable = errors.New("the session journal refuses writes after a failed disk sync: restart the daemon (its log has the cause)")

// cachedCheck runs check at most once per every, sharing its result: /readyz
// is public, and a flood of it must not take the pool's connections from
// the sessions.
func cachedCheck(every time.Duration, check func() error) func() error {
	var (
		mu   sync.Mutex
		at   time.Time
		last error
	)
	return func() error {
		mu.Lock()
		defer mu.Unlock()
		if at.IsZero() || time.Since(at) >= every {
			last, at = check(), time.Now()
		}
		return last
	}
}
