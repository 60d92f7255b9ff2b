package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"time"
)

// flowKeyName is the spectroauth_secrets row of the flow key.
const flowKeyName = "flow-key"

// FlowKeyBytes is the size of a flow key made here.
const FlowKeyBytes = 32

// FlowKey returns the flow key every replica shares (it derives each
// sign-in's PKCE verifier and OpenID nonce, and seals command-line codes),
// creating it on first use: the first replica's random key is inserted,
// later ones find it (INSERT … ON CONFLICT DO NOTHING, then a read).
func (db *DB) FlowKey(ctx context.Context) ([]byte, error) {
	fresh := make([]byte, FlowKeyBytes)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("postgres: making a flow key: %w", err)
	}
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	if _, err := db.exec(ctx,
		`INSERT INTO spectroauth_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
		flowKeyName, fresh); err != nil {
		return nil, db.wrap("storing the flow key", err)
	}
	var key []byte
	if err := db.queryRow(ctx, `SELECT value FROM spectroauth_secrets WHERE name = $1`, flowKeyName).Scan(&key); err != nil {
		return nil, db.wrap("reading the flow key", err)
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("postgres: the stored flow key is too short (%d bytes); delete its row in spectroauth_secrets to have a new one made", len(key))
	}
	return key, nil
}

// SetFlowKeyIfNone makes key the flow key unless the database has one
// already, which it then leaves as it is (storage-copy brings a file
// daemon's flow key along this way). It reports whether it stored key now
// (set) and whether the stored flow key is key (same; set implies same).
// key must be at least 32 bytes, as FlowKey requires of a stored one.
func (db *DB) SetFlowKeyIfNone(ctx context.Context, key []byte) (set, same bool, err error) {
	if len(key) < 32 {
		return false, false, fmt.Errorf("postgres: the flow key to store is too short (%d bytes, at least 32)", len(key))
	}
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	tag, err := db.exec(ctx,
		`INSERT INTO spectroauth_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
		flowKeyName, key)
	if err != nil {
		return false, false, db.wrap("storing the flow key", err)
	}
	if tag.RowsAffected() == 1 {
		return true, true, nil
	}
	var stored []byte
	if err := db.queryRow(ctx, `SELECT value FROM spectroauth_secrets WHERE name = $1`, flowKeyName).Scan(&stored); err != nil {
		return false, false, db.wrap("reading the flow key", err)
	}
	return false, subtle.ConstantTimeCompare(stored, key) == 1, nil
}

// OnceSet is the shared used-once set (server.OnceSet) in
// spectroauth_used_once: one row per used value, keyed by its SHA-256, with
// an expiry after which the row is swept.
type OnceSet struct{ db *DB }

// Claim records id until expires and reports whether it was fresh: a new
// row, or one whose expiry had passed at now (taken over). One statement,
// so of two replicas claiming the same id at once, exactly one wins.
//
// Each call marks the row with a random claimant id, which makes the
// statement idempotent: run again after the database ended its connection
// (see retryable), a claim whose first run did commit finds its own mark
// and still reports the id fresh, where a claim by anyone else is refused.
func (s *OnceSet) Claim(ctx context.Context, id string, now, expires time.Time) (bool, error) {
	claimant := make([]byte, 16)
	if _, err := rand.Read(claimant); err != nil {
		return false, fmt.Errorf("postgres: recording a used sign-in response: %w", err)
	}
	return s.claim(ctx, id, now, expires, claimant)
}

// claim is Claim as claimant.
func (s *OnceSet) claim(ctx context.Context, id string, now, expires time.Time, claimant []byte) (bool, error) {
	h := sha256.Sum256([]byte(id))
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	tag, err := s.db.exec(ctx,
		`INSERT INTO spectroauth_used_once (id, expires_at, claimant) VALUES ($1, $2, $4)
		 ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, claimant = excluded.claimant
		 WHERE spectroauth_used_once.expires_at <= $3 OR spectroauth_used_once.claimant = $4`,
		h[:], expires, now, claimant)
	if err != nil {
		return false, s.db.wrap("recording a used sign-in response", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Sweep deletes expired entries and returns how many it deleted.
func (s *OnceSet) Sweep(ctx context.Context) (int, error) {
	return s.db.sweep(ctx, "used-once entries", `WITH doomed AS (
			SELECT id FROM spectroauth_used_once WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
		DELETE FROM spectroauth_used_once u USING doomed WHERE u.id = doomed.id AND u.expires_at <= $1`)
}
