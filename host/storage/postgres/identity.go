package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spectroauth/spectroauth/host/identity"
)

// KeyStore is an identity.KeyStore in PostgreSQL: one row per key in
// spectroauth_signing_keys, the key in identity.EncodeKey's form (the file
// store's JSON, private JWK included).
type KeyStore struct{ db *DB }

var _ identity.KeyStore = (*KeyStore)(nil)

// AddKey implements identity.KeyStore. Adding the same key again (a retry
// after a timeout that did commit) succeeds; a different key under a kid
// already used fails.
func (s *KeyStore) AddKey(ctx context.Context, k identity.Key) error {
	data, err := identity.EncodeKey(k)
	if err != nil {
		return err
	}
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	tag, err := s.db.exec(ctx,
		`INSERT INTO spectroauth_signing_keys (kid, created_at, created_at_ns, key_json) VALUES ($1, $2, $3, $4)
		 ON CONFLICT (kid) DO UPDATE SET key_json = excluded.key_json
		 WHERE spectroauth_signing_keys.key_json = excluded.key_json`,
		k.ID, k.CreatedAt, k.CreatedAt.UnixNano(), data)
	if err != nil {
		return s.db.wrap("storing signing key "+k.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: storing signing key %s: a different key with that id is stored", k.ID)
	}
	return nil
}

// ListKeys implements identity.KeyStore. A row that cannot be read as a
// key is logged and skipped, as the file store skips a damaged file.
func (s *KeyStore) ListKeys(ctx context.Context) ([]identity.Key, error) {
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	type keyRow struct {
		Kid  string
		Data []byte
	}
	var stored []keyRow
	err := s.db.retry(ctx, func() (err error) {
		rows, _ := s.db.pool.Query(ctx, `SELECT kid::text, key_json FROM spectroauth_signing_keys`)
		stored, err = pgx.CollectRows(rows, pgx.RowToStructByPos[keyRow])
		return err
	})
	if err != nil {
		return nil, s.db.wrap("listing signing keys", err)
	}
	var keys []identity.Key
	for _, row := range stored {
		k, err := identity.DecodeKey(row.Data)
		if err == nil && k.ID != row.Kid {
			err = fmt.Errorf("the stored key's id is %s", k.ID)
		}
		if err != nil {
			// The error names what is wrong, never key material.
			s.db.log.Error("skipping unreadable signing key row", "kid", row.Kid, "error", err)
			continue
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// DeleteKeysBefore implements identity.KeyStore, to the nanosecond.
func (s *KeyStore) DeleteKeysBefore(ctx context.Context, cutoff time.Time) error {
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	if _, err := s.db.exec(ctx, `DELETE FROM spectroauth_signing_keys WHERE created_at_ns < $1`, cutoff.UnixNano()); err != nil {
		return s.db.wrap("deleting old signing keys", err)
	}
	return nil
}

// UserInfoStore is an identity.UserInfoStore in PostgreSQL: one row per
// user in spectroauth_user_info.
type UserInfoStore struct{ db *DB }

var _ identity.UserInfoStore = (*UserInfoStore)(nil)

// Put implements identity.UserInfoStore: one upsert that writes nothing
// (no new row version) when the stored info is the same.
func (s *UserInfoStore) Put(ctx context.Context, sub string, info identity.UserInfo) error {
	if err := identity.ValidateUserInfo(sub, info); err != nil {
		return err
	}
	data, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("postgres: encoding user info for %s: %w", sub, err)
	}
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	_, err = s.db.exec(ctx,
		`INSERT INTO spectroauth_user_info (user_entity_ref, user_info) VALUES ($1, $2::jsonb)
		 ON CONFLICT (user_entity_ref) DO UPDATE SET user_info = excluded.user_info, updated_at = now()
		 WHERE spectroauth_user_info.user_info IS DISTINCT FROM excluded.user_info`,
		sub, string(data))
	if err != nil {
		return s.db.wrap("storing user info for "+sub, err)
	}
	return nil
}

// Get implements identity.UserInfoStore.
func (s *UserInfoStore) Get(ctx context.Context, sub string) (identity.UserInfo, error) {
	ctx, cancel := s.db.timeout(ctx)
	defer cancel()
	var data []byte
	err := s.db.queryRow(ctx, `SELECT user_info::text FROM spectroauth_user_info WHERE user_entity_ref = $1`, sub).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return identity.UserInfo{}, identity.ErrUserInfoNotFound
	}
	if err != nil {
		return identity.UserInfo{}, s.db.wrap("reading user info for "+sub, err)
	}
	var info identity.UserInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return identity.UserInfo{}, fmt.Errorf("postgres: reading user info for %s: the stored value is not readable", sub)
	}
	return info, nil
}
