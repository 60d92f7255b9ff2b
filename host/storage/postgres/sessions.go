package postgres

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spectroauth/spectroauth/host/session"
)

// sessionFormat is the version of a stored session's JSON.
const sessionFormat = 1

// storedSession is a session row's JSON. It never holds the handle.
type storedSession struct {
	Version int              `json:"version"`
	Session *session.Session `json:"session"`
}

// sweepBatch bounds the rows one sweep statement deletes, so a sweep never
// holds many row locks (or one long transaction) at once.
const sweepBatch = 1000

// SessionStore is a session.Store in PostgreSQL: one row per session in
// spectroauth_sessions, keyed by the session Key (the SHA-256 of the
// handle). Session expiry is judged by the store's clock, passed to every
// statement, as the file store judges it; the renewal lease is judged by
// the database's (see LockRenewal).
type SessionStore struct {
	db     *DB
	closed atomic.Bool
}

var (
	_ session.Store         = (*SessionStore)(nil)
	_ session.RenewalLocker = (*SessionStore)(nil)
)

// renewalPollPeriod is how often a replica waiting for another's renewal
// lease tries again.
const renewalPollPeriod = 50 * time.Millisecond

// LockRenewal implements session.RenewalLocker: it takes the session's
// renewal lease, polling while another replica holds it. The lease is a
// column pair in the session's row, so that waiting for it holds no
// connection; it lasts Options.RenewalLease by the database's clock
// (clock_timestamp()), so replicas whose clocks disagree still agree on who
// holds it. Until unlock, a heartbeat extends it every third of a lease, so
// a renewal that takes longer than a lease keeps it; only a holder that
// died (or lost the database) lets it run out.
func (s *SessionStore) LockRenewal(ctx context.Context, key session.Key) (func(), error) {
	owner, err := s.takeRenewal(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.holdRenewal(key, owner), nil
}

// takeRenewal takes the lease for a random owner and returns the owner.
func (s *SessionStore) takeRenewal(ctx context.Context, key session.Key) ([]byte, error) {
	if s.closed.Load() {
		return nil, session.ErrClosed
	}
	owner := make([]byte, 16)
	if _, err := rand.Read(owner); err != nil {
		return nil, fmt.Errorf("postgres: locking the renewal of session %s: %w", key, err)
	}
	for {
		taken, err := s.tryRenewal(ctx, key, owner)
		if err != nil {
			return nil, err
		}
		if taken {
			return owner, nil
		}
		t := time.NewTimer(renewalPollPeriod)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("postgres: locking the renewal of session %s: another replica holds it: %w", key, ctx.Err())
		case <-t.C:
		}
	}
}

// tryRenewal takes the lease for owner if it is free, or owner's already
// (so that the statement is idempotent: run again after the database ended
// its connection, it finds the lease its first run took), and reports
// whether owner holds it.
func (s *SessionStore) tryRenewal(ctx context.Context, key session.Key, owner []byte) (bool, error) {
	now := s.db.opts.Now()
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	tag, err := s.db.exec(ctx,
		`UPDATE spectroauth_sessions SET renewal_owner = $2, renewal_until = clock_timestamp() + $3::interval
		 WHERE key = $1 AND expires_at > $4
		   AND (renewal_until IS NULL OR renewal_until <= clock_timestamp() OR renewal_owner = $2)`,
		key[:], owner, s.db.opts.RenewalLease, now)
	if err == nil && tag.RowsAffected() == 0 {
		var one int
		err = s.db.queryRow(ctx, `SELECT 1 FROM spectroauth_sessions WHERE key = $1 AND expires_at > $2`, key[:], now).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, session.ErrNotFound
		}
	}
	if err != nil {
		return false, s.db.wrap("locking the renewal of session "+key.String(), err)
	}
	return tag.RowsAffected() == 1, nil
}

// holdRenewal starts the heartbeat of the lease owner holds and returns
// its unlock: idempotent, it stops the heartbeat, waits for it to end, and
// ends the lease.
func (s *SessionStore) holdRenewal(key session.Key, owner []byte) (unlock func()) {
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		s.heartbeat(key, owner, stop)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			<-stopped
			s.unlockRenewal(key, owner)
		})
	}
}

// heartbeat extends the lease every third of it until stop is closed, or
// until it finds the lease no longer owner's (the session was signed out,
// or the lease ran out while the database could not be reached and another
// replica may have taken it): then it warns, as the renewal under way may
// now race another replica's.
func (s *SessionStore) heartbeat(key session.Key, owner []byte, stop <-chan struct{}) {
	lease := s.db.opts.RenewalLease
	t := time.NewTicker(lease / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ctx, cancel := s.db.timeout(context.Background())
		tag, err := s.db.exec(ctx,
			`UPDATE spectroauth_sessions SET renewal_until = clock_timestamp() + $3::interval WHERE key = $1 AND renewal_owner = $2`,
			key[:], owner, lease)
		cancel()
		switch {
		case err != nil:
			s.db.log.Warn("could not extend a session renewal lease; trying again", "session", key.String(), "lease", lease, "error", s.db.wrap("extending the lease", err))
		case tag.RowsAffected() == 0:
			s.db.log.Warn("a session renewal lease is no longer this replica's: the session was signed out, or the lease ran out and another replica may renew it too", "session", key.String(), "lease", lease)
			return
		}
	}
}

// unlockRenewal ends the lease if it is still ours. Failing that, the
// lease runs out by itself.
func (s *SessionStore) unlockRenewal(key session.Key, owner []byte) {
	ctx, cancel := s.db.timeout(context.Background())
	defer cancel()
	if _, err := s.db.exec(ctx,
		`UPDATE spectroauth_sessions SET renewal_owner = NULL, renewal_until = NULL WHERE key = $1 AND renewal_owner = $2`,
		key[:], owner); err != nil {
		s.db.log.Warn("could not end a session renewal lease; it runs out by itself", "session", key.String(), "lease", s.db.opts.RenewalLease, "error", s.db.wrap("unlocking", err))
	}
}

// Get implements session.Store: one primary-key SELECT.
func (s *SessionStore) Get(ctx context.Context, key session.Key) (*session.Session, error) {
	if s.closed.Load() {
		return nil, session.ErrClosed
	}
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	now := s.db.opts.Now()
	var data []byte
	err := s.db.queryRow(ctx,
		`SELECT session FROM spectroauth_sessions WHERE key = $1 AND expires_at > $2`,
		key[:], now).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, session.ErrNotFound
	}
	if err != nil {
		return nil, s.db.wrap("reading session "+key.String(), err)
	}
	var st storedSession
	if err := json.Unmarshal(data, &st); err != nil || st.Version != sessionFormat || st.Session == nil {
		// Never the content: it holds tokens.
		return nil, fmt.Errorf("postgres: reading session %s: the stored session is not readable (format %d)", key, st.Version)
	}
	// The column has microseconds; the session's own expiry is exact.
	if st.Session.Expired(now) {
		return nil, session.ErrNotFound
	}
	return st.Session, nil
}

// Put implements session.Store: an upsert, durable when it returns.
func (s *SessionStore) Put(ctx context.Context, key session.Key, sess *session.Session) error {
	data, err := s.encode(sess)
	if err != nil {
		return err
	}
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	_, err = s.db.exec(ctx,
		`INSERT INTO spectroauth_sessions (key, expires_at, session, user_ref) VALUES ($1, $2, $3, $4)
		 ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at, session = excluded.session, user_ref = excluded.user_ref`,
		key[:], sess.ExpiresAt, data, sess.UserEntityRef)
	if err != nil {
		return s.db.wrap("storing session "+key.String(), err)
	}
	return nil
}

// Replace implements session.Store: an UPDATE of the row only while it is
// there and unexpired. A concurrent Delete either commits first (then the
// UPDATE finds no row) or waits for the UPDATE and removes its result.
func (s *SessionStore) Replace(ctx context.Context, key session.Key, sess *session.Session) error {
	data, err := s.encode(sess)
	if err != nil {
		return err
	}
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	tag, err := s.db.exec(ctx,
		`UPDATE spectroauth_sessions SET expires_at = $2, session = $3, user_ref = $5 WHERE key = $1 AND expires_at > $4`,
		key[:], sess.ExpiresAt, data, s.db.opts.Now(), sess.UserEntityRef)
	if err != nil {
		return s.db.wrap("replacing session "+key.String(), err)
	}
	if tag.RowsAffected() == 0 {
		return session.ErrNotFound
	}
	return nil
}

func (s *SessionStore) encode(sess *session.Session) ([]byte, error) {
	if s.closed.Load() {
		return nil, session.ErrClosed
	}
	if err := session.Validate(sess, s.db.opts.Now()); err != nil {
		return nil, err
	}
	data, err := json.Marshal(storedSession{Version: sessionFormat, Session: sess})
	if err != nil {
		return nil, fmt.Errorf("postgres: encoding session: %w", err)
	}
	return data, nil
}

// Delete implements session.Store.
func (s *SessionStore) Delete(ctx context.Context, key session.Key) error {
	if s.closed.Load() {
		return session.ErrClosed
	}
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	if _, err := s.db.exec(ctx, `DELETE FROM spectroauth_sessions WHERE key = $1`, key[:]); err != nil {
		return s.db.wrap("deleting session "+key.String(), err)
	}
	return nil
}

// byUser selects the rows of user $1: by the user_ref index, and rows a
// replica of an earlier release wrote during a rolling upgrade (user_ref
// NULL) by their JSON.
const byUser = `(user_ref = $1 OR (user_ref IS NULL AND convert_from(session, 'UTF8')::jsonb -> 'session' ->> 'userEntityRef' = $1))`

// ListByUser implements session.Store: the user's unexpired rows, by the
// user_ref index.
func (s *SessionStore) ListByUser(ctx context.Context, user string) ([]session.Entry, error) {
	if s.closed.Load() {
		return nil, session.ErrClosed
	}
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	now := s.db.opts.Now()
	type sessionRow struct {
		Key  []byte
		Data []byte
	}
	var stored []sessionRow
	err := s.db.retry(ctx, func() (err error) {
		rows, _ := s.db.pool.Query(ctx,
			`SELECT key, session FROM spectroauth_sessions WHERE `+byUser+` AND expires_at > $2`, user, now)
		stored, err = pgx.CollectRows(rows, pgx.RowToStructByPos[sessionRow])
		return err
	})
	if err != nil {
		return nil, s.db.wrap("listing the sessions of a user", err)
	}
	var out []session.Entry
	for _, row := range stored {
		var key session.Key
		var st storedSession
		if len(row.Key) != len(key) || json.Unmarshal(row.Data, &st) != nil || st.Version != sessionFormat || st.Session == nil || st.Session.Expired(now) {
			continue
		}
		copy(key[:], row.Key)
		out = append(out, session.Entry{Key: key, Session: st.Session})
	}
	return out, nil
}

// DeleteByUser implements session.Store: one DELETE by the user_ref index.
func (s *SessionStore) DeleteByUser(ctx context.Context, user string) (int, error) {
	if s.closed.Load() {
		return 0, session.ErrClosed
	}
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	tag, err := s.db.exec(ctx, `DELETE FROM spectroauth_sessions WHERE `+byUser, user)
	if err != nil {
		return 0, s.db.wrap("deleting the sessions of a user", err)
	}
	return int(tag.RowsAffected()), nil
}

// Sweep implements session.Store: it deletes expired rows in batches,
// skipping rows another replica's sweep holds, until none is left or ctx
// ends.
func (s *SessionStore) Sweep(ctx context.Context) (int, error) {
	if s.closed.Load() {
		return 0, session.ErrClosed
	}
	return s.db.sweep(ctx, "sessions", `WITH doomed AS (
			SELECT key FROM spectroauth_sessions WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
		DELETE FROM spectroauth_sessions s USING doomed WHERE s.key = doomed.key AND s.expires_at <= $1`)
}

// Close implements session.Store: the store refuses further use. The pool
// belongs to the DB, which DB.Close closes.
func (s *SessionStore) Close() error {
	s.closed.Store(true)
	return nil
}

// sweep runs a batched delete of expired rows: stmt takes $1 now and $2 the
// batch size.
func (db *DB) sweep(ctx context.Context, what, stmt string) (int, error) {
	now := db.opts.Now()
	removed := 0
	for {
		if err := ctx.Err(); err != nil {
			return removed, fmt.Errorf("postgres: sweeping expired %s: %w", what, err)
		}
		qctx, cancel := db.timeout(ctx)
		tag, err := db.exec(qctx, stmt, now, sweepBatch)
		cancel()
		if err != nil {
			return removed, db.wrap("sweeping expired "+what, err)
		}
		removed += int(tag.RowsAffected())
		if tag.RowsAffected() < sweepBatch {
			return removed, nil
		}
	}
}
