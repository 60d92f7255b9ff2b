package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// migrationLockID is the advisory lock (in this database) that serialises
// schema migrations of replicas starting together: "spectroauth" in ASCII.
const migrationLockID int64 = 0x73706563_74726f61

// migration is one schema version. Migrations only add (tables, columns,
// indexes), so a replica still running the previous release keeps working
// against a schema a newer one migrated, during a rolling upgrade.
type migration struct {
	version     int
	description string
	statements  []string
}

// migrations, in order. Never edit one that has shipped: add the next.
var migrations = []migration{
	{1, "signing keys, user info, sessions, secrets, used-once set", []string{
		`CREATE TABLE spectroauth_signing_keys (
			kid uuid PRIMARY KEY,
			created_at timestamptz NOT NULL,
			-- exact creation time, Unix nanoseconds: rotation and pruning compare it
			created_at_ns bigint NOT NULL,
			-- identity.EncodeKey: version, creation time, private JWK. Secret.
			key_json bytea NOT NULL
		)`,
		`CREATE TABLE spectroauth_user_info (
			user_entity_ref text PRIMARY KEY,
			-- {"claims":{"sub":…,"ent":[…]}}, as /v1/userinfo answers it
			user_info jsonb NOT NULL,
			updated_at timestamptz NOT NULL DEFAULT now()
		)`,
		`CREATE TABLE spectroauth_sessions (
			-- SHA-256 of the cookie's session handle (never the handle)
			key bytea PRIMARY KEY CHECK (octet_length(key) = 32),
			expires_at timestamptz NOT NULL,
			-- the session as JSON, upstream tokens included. Secret.
			session bytea NOT NULL
		)`,
		`CREATE INDEX spectroauth_sessions_expires_at ON spectroauth_sessions (expires_at)`,
		`CREATE TABLE spectroauth_secrets (
			name text PRIMARY KEY,
			value bytea NOT NULL,
			created_at timestamptz NOT NULL DEFAULT now()
		)`,
		`CREATE TABLE spectroauth_used_once (
			-- SHA-256 of the used value (a sign-in nonce, a CLI code id)
			id bytea PRIMARY KEY CHECK (octet_length(id) = 32),
			expires_at timestamptz NOT NULL
		)`,
		`CREATE INDEX spectroauth_used_once_expires_at ON spectroauth_used_once (expires_at)`,
	}},
	{2, "session renewal leases", []string{
		// Which replica renews the session (a random id) and until when.
		`ALTER TABLE spectroauth_sessions ADD COLUMN renewal_owner bytea, ADD COLUMN renewal_until timestamptz`,
	}},
	{3, "sessions by user (sign out everywhere)", []string{
		// The session's Backstage user, for ListByUser and DeleteByUser.
		`ALTER TABLE spectroauth_sessions ADD COLUMN user_ref text`,
		`UPDATE spectroauth_sessions SET user_ref = convert_from(session, 'UTF8')::jsonb -> 'session' ->> 'userEntityRef'`,
		`CREATE INDEX spectroauth_sessions_user_ref ON spectroauth_sessions (user_ref)`,
	}},
	{4, "used-once claims run twice claim once", []string{
		// The random id of the OnceSet.Claim call that holds the entry, so
		// that the claim, run again after the database ended its
		// connection, recognises its own earlier run.
		`ALTER TABLE spectroauth_used_once ADD COLUMN claimant bytea`,
	}},
}

// A migration waits at most migrationLockTimeout for each table lock it
// needs, then gives way for migrationRetryPause and tries again (until
// Open's migrateTimeout). PostgreSQL queues every later statement on a
// table behind an ALTER waiting for its lock, so an ALTER left waiting on
// a long transaction (a pg_dump, a report left open) would stop the
// replicas still serving, for as long as that transaction lasted; this
// way they stall for at most migrationLockTimeout at a time, well within
// their statement timeout.
const (
	migrationLockTimeout = 2 * time.Second
	migrationRetryPause  = 3 * time.Second
	// lockNotAvailable is the SQLSTATE of a lock_timeout.
	lockNotAvailable = "55P03"
)

// migrate brings the schema to the last of migrations, in one transaction
// under an advisory lock: replicas starting together take turns, and the
// second finds nothing to do.
func (db *DB) migrate(ctx context.Context, migrations []migration) error {
	for {
		err := db.migrateOnce(ctx, migrations)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != lockNotAvailable {
			return err
		}
		db.log.Warn("migrating the schema: a table is locked by another transaction; trying again", "in", migrationRetryPause, "error", err)
		t := time.NewTimer(migrationRetryPause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

func (db *DB) migrateOnce(ctx context.Context, migrations []migration) error {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return db.wrap("migrating the schema: beginning", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockID); err != nil {
		return db.wrap("migrating the schema: waiting for the migration lock", err)
	}
	// Only now: the wait for another replica's migration is not bounded by it.
	if _, err := tx.Exec(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %d`, migrationLockTimeout.Milliseconds())); err != nil {
		return db.wrap("migrating the schema: setting lock_timeout", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS spectroauth_schema_migrations (
			version integer PRIMARY KEY,
			description text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
		return db.wrap("migrating the schema: creating spectroauth_schema_migrations", err)
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM spectroauth_schema_migrations`).Scan(&current); err != nil {
		return db.wrap("migrating the schema: reading the schema version", err)
	}
	latest := migrations[len(migrations)-1].version
	if current > latest {
		// A newer release migrated; migrations only add, so carry on.
		db.log.Warn("the database schema is newer than this release knows; continuing (migrations only add)", "schema", current, "known", latest)
	}
	applied := 0
	for _, m := range migrations {
		if m.version <= current {
			continue
		}
		for i, stmt := range m.statements {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return db.wrap(fmt.Sprintf("migrating the schema to version %d (%s), statement %d", m.version, m.description, i+1), err)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO spectroauth_schema_migrations (version, description) VALUES ($1, $2)`, m.version, m.description); err != nil {
			return db.wrap(fmt.Sprintf("migrating the schema: recording version %d", m.version), err)
		}
		applied++
	}
	if err := tx.Commit(ctx); err != nil {
		return db.wrap("migrating the schema: committing", err)
	}
	if applied > 0 {
		db.log.Info("migrated the database schema", "from", current, "to", latest)
	}
	return nil
}
