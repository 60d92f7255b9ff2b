// Package postgres is the PostgreSQL storage of spectroauthd
// (storage.type: postgres): what several replicas behind one URL share so
// that any of them can serve any request.
//
// One database holds, in tables named spectroauth_*:
//
//   - the Backstage token signing keys (identity.KeyStore): one row per key,
//     the private key as a JWK, exactly as the file store writes it. Every
//     replica signs with keys from here and publishes all of them in its
//     JWKS; the issuer re-reads them for a JWKS request, for a token
//     naming a key newer than its last read, and when it rotates.
//   - the user info behind /v1/userinfo (identity.UserInfoStore), upserted
//     only when it changed.
//   - the sessions (session.Store), keyed by the SHA-256 of the cookie
//     handle, so a sign-out on one replica ends the session on all of them.
//     Replace is an UPDATE of a row that must exist and be unexpired, so a
//     renewal finishing after a sign-out cannot revive the session.
//   - the flow key that derives each sign-in's PKCE verifier and OpenID
//     nonce (a row created once, by whichever replica starts first).
//   - the used-once set of sign-in responses and command-line codes
//     (server.OnceSet), so a response replayed to another replica is refused.
//
// The database must be protected like the file store's data directory: it
// holds private signing keys, the flow key and the users' SpectroCloud
// tokens. Give spectroauthd its own database or at least its own role, over
// TLS (sslmode=verify-full) when the server is not local.
//
// The schema is created and migrated at Open, under an advisory lock, in
// one transaction per start, and recorded in spectroauth_schema_migrations;
// replicas starting together wait for each other and migrate once.
//
// Every statement runs under Options.QueryTimeout, and again on another
// connection should it fail on a pooled connection the database ended (it
// restarted, or an operator ended the backend): every statement is
// idempotent, so running it again is safe even when the first run might
// have happened. The pool is bounded (DefaultMaxConns unless the connection
// string sets pool_max_conns).
// Errors say what was being done and never carry the connection string's
// password or a token.
//
// Session reads are not cached: Get, on the /refresh hot path, is one
// primary-key SELECT (about a tenth of a millisecond over a local socket,
// see BenchmarkSessionGet), and a cache would let a replica serve a
// session another replica had just ended.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spectroauth/spectroauth/host/internal/periodic"
	"github.com/spectroauth/spectroauth/host/session"
)

// Defaults of Options.
const (
	// DefaultQueryTimeout bounds each statement.
	DefaultQueryTimeout = 5 * time.Second
	// DefaultMaxConns bounds the pool unless the connection string sets
	// pool_max_conns.
	DefaultMaxConns = 8
	// DefaultRenewalLease bounds how long a replica that died while renewing
	// a session blocks the others from renewing it. A live holder's
	// heartbeat extends the lease every third of it until unlock, so a
	// renewal may outlast it.
	DefaultRenewalLease = 30 * time.Second
	// connectTimeout bounds the first connection at Open.
	connectTimeout = 15 * time.Second
	// migrateTimeout bounds the schema migration at Open, including the wait
	// for another replica that is migrating.
	migrateTimeout = 2 * time.Minute
)

// Options configure a DB.
type Options struct {
	// Logger; nil means a null logger.
	Logger hclog.Logger
	// Now is the clock for session and used-once expiry; nil means time.Now.
	Now func() time.Time
	// QueryTimeout bounds each statement; zero means DefaultQueryTimeout.
	QueryTimeout time.Duration
	// SweepInterval is how often expired sessions and used-once entries are
	// deleted. Zero means session.DefaultSweepInterval; negative disables
	// the background sweep.
	SweepInterval time.Duration
	// RenewalLease is how long a session's renewal lock lasts without its
	// holder's heartbeat, which extends it every third of it until unlock
	// (see SessionStore.LockRenewal); zero means DefaultRenewalLease. The
	// database's clock judges it, not Now.
	RenewalLease time.Duration
}

// DB is an open PostgreSQL store. Its stores share one connection pool.
type DB struct {
	pool   *pgxpool.Pool
	opts   Options
	log    hclog.Logger
	secret string // the connection password, scrubbed from errors
	// maxConns is the pool's bound: how many dead connections it may hold.
	maxConns int32
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closeMu  sync.Once

	keys     *KeyStore
	userInfo *UserInfoStore
	sessions *SessionStore
	once     *OnceSet
}

// Open connects to the database named by dsn (a postgres:// URL or
// key=value pairs), creates or migrates the schema, and starts the
// background sweep. Close releases it.
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	return openWith(ctx, dsn, opts, migrations)
}

// openWith is Open migrating to the last of schema (tests open older
// schemas).
func openWith(ctx context.Context, dsn string, opts Options, schema []migration) (*DB, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = DefaultQueryTimeout
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = session.DefaultSweepInterval
	}
	if opts.RenewalLease <= 0 {
		opts.RenewalLease = DefaultRenewalLease
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message quotes the connection string, which may hold a
		// password it cannot always find: say nothing of it.
		return nil, errors.New("postgres: the connection string cannot be parsed (it is not shown: it may hold a password)")
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "spectroauthd"
	}
	db := &DB{opts: opts, log: opts.Logger, secret: cfg.ConnConfig.Password, maxConns: cfg.MaxConns}
	db.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, db.wrap("connecting to the database", err)
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	err = db.pool.Ping(pctx)
	cancel()
	if err != nil {
		db.pool.Close()
		return nil, db.wrap("connecting to the database", err)
	}
	mctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	if err := db.migrate(mctx, schema); err != nil {
		db.pool.Close()
		return nil, err
	}
	db.keys = &KeyStore{db: db}
	db.userInfo = &UserInfoStore{db: db}
	db.sessions = &SessionStore{db: db}
	db.once = &OnceSet{db: db}
	if opts.SweepInterval > 0 {
		sctx, cancel := context.WithCancel(context.Background())
		db.cancel = cancel
		db.wg.Add(1)
		go db.sweepLoop(sctx, opts.SweepInterval)
	}
	return db, nil
}

// Keys is the signing key store.
func (db *DB) Keys() *KeyStore { return db.keys }

// UserInfo is the user info store.
func (db *DB) UserInfo() *UserInfoStore { return db.userInfo }

// Sessions is the session store. Closing it stops its use; the pool stays
// open until DB.Close.
func (db *DB) Sessions() *SessionStore { return db.sessions }

// UsedOnce is the shared used-once set of sign-in responses.
func (db *DB) UsedOnce() *OnceSet { return db.once }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	if err := db.retry(ctx, func() error { return db.pool.Ping(ctx) }); err != nil {
		return db.wrap("reaching the database", err)
	}
	return nil
}

// Close stops the background sweep and closes the pool, waiting for
// connections in use to be returned. It is idempotent.
func (db *DB) Close() error {
	db.closeMu.Do(func() {
		if db.cancel != nil {
			db.cancel()
		}
		db.wg.Wait()
		db.pool.Close()
	})
	return nil
}

func (db *DB) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, db.opts.QueryTimeout)
}

// retry runs f, an idempotent statement on the pool (running it twice does
// what running it once does), and runs it again on another connection
// while it failed in a way that a dead pooled connection fails: see
// retryable. Each such failure discards its dead connection, so of one
// attempt more than the pool holds connections, the last gets a new one.
// Every store statement is idempotent (OnceSet.Claim by a mark of its
// own).
func (db *DB) retry(ctx context.Context, f func() error) error {
	err := f()
	for tries := db.maxConns; err != nil && tries > 0 && retryable(err) && ctx.Err() == nil; tries-- {
		err = f()
	}
	return err
}

// retryable reports whether a statement that failed with err may run again
// if it is idempotent: when none of it reached the server
// (pgconn.SafeToRetry: a write to a connection the server closed that
// failed), or when the server ended the connection's session, whose last
// message is then the answer: 57P01 (admin_shutdown: pg_terminate_backend,
// or a fast shutdown for a restart or a failover), 57P02 (crash_shutdown:
// the server restarts after another backend crashed), 57P03
// (cannot_connect_now: the server is starting up or shutting down) or
// 57P05 (idle_session_timeout). The session may have ended while running
// the statement, so it may have run: only idempotent statements are
// retried.
func retryable(err error) bool {
	if pgconn.SafeToRetry(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "57P01", "57P02", "57P03", "57P05":
		return true
	}
	return false
}

// exec is pool.Exec, retried (see retry). The stores run every statement
// through exec, queryRow or retry.
func (db *DB) exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	err := db.retry(ctx, func() (err error) {
		tag, err = db.pool.Exec(ctx, sql, args...)
		return err
	})
	return tag, err
}

// queryRow is pool.QueryRow, its Scan retried (see retry).
func (db *DB) queryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return retriedRow{db: db, ctx: ctx, sql: sql, args: args}
}

type retriedRow struct {
	db   *DB
	ctx  context.Context
	sql  string
	args []any
}

func (r retriedRow) Scan(dest ...any) error {
	return r.db.retry(r.ctx, func() error { return r.db.pool.QueryRow(r.ctx, r.sql, r.args...).Scan(dest...) })
}

// wrap names what was being done, and scrubs the connection password from
// the driver's message should it ever appear there.
func (db *DB) wrap(doing string, err error) error {
	if err == nil {
		return nil
	}
	if len(db.secret) >= 4 && strings.Contains(err.Error(), db.secret) {
		return &scrubbedError{msg: "postgres: " + doing + ": " + strings.ReplaceAll(err.Error(), db.secret, "xxxxx"), err: err}
	}
	return fmt.Errorf("postgres: %s: %w", doing, err)
}

// scrubbedError keeps the cause for errors.Is (context errors) while its
// text has the password removed.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }

// Is matches the context errors only: Unwrap would hand out the unscrubbed
// text.
func (e *scrubbedError) Is(target error) bool {
	return (target == context.Canceled || target == context.DeadlineExceeded) && errors.Is(e.err, target)
}

func (db *DB) sweepLoop(ctx context.Context, every time.Duration) {
	defer db.wg.Done()
	periodic.Every(ctx, every, func(ctx context.Context) {
		for what, sweep := range map[string]func(context.Context) (int, error){
			"sessions": db.sessions.Sweep, "used-once entries": db.once.Sweep,
		} {
			if n, err := sweep(ctx); err != nil && ctx.Err() == nil {
				db.log.Warn("sweeping expired "+what, "removed", n, "error", err)
			} else if n > 0 {
				db.log.Debug("swept expired "+what, "removed", n)
			}
		}
	})
}
