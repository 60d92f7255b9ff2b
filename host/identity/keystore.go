package identity

import (
	"context"
	"crypto/ecdsa"
	"slices"
	"sync"
	"time"
)

// Key is one ES256 signing key as a KeyStore keeps it.
type Key struct {
	// ID is the key's "kid": a random UUID.
	ID string
	// CreatedAt is when the key was made; it drives rotation (after one token
	// lifetime) and removal from the JWKS (after three).
	CreatedAt time.Time
	// Private is the private key. A store shared by several replicas may
	// hold only the public half of keys other replicas made; then Private is
	// nil and the key is only used to verify and published in the JWKS.
	Private *ecdsa.PrivateKey
	// Public is the public key; it must be set (it is Private's public half
	// when Private is set).
	Public *ecdsa.PublicKey
}

// KeyStore persists signing keys. An Issuer loads all keys once at start,
// adds a key on each rotation (and uses it only after AddKey succeeded), and
// deletes keys too old to have signed any token still valid.
//
// Implementations must be safe for concurrent use. A store shared by
// several replicas (PostgreSQL: one row per key with kid, created_at and the
// JWK) lets each replica publish the others' keys; Issuer.Reload picks up
// keys added elsewhere.
type KeyStore interface {
	// AddKey stores k durably. It is called before k signs anything.
	AddKey(ctx context.Context, k Key) error
	// ListKeys returns every stored key, in any order.
	ListKeys(ctx context.Context) ([]Key, error)
	// DeleteKeysBefore removes keys created before cutoff.
	DeleteKeysBefore(ctx context.Context, cutoff time.Time) error
}

// MemoryKeyStore is a KeyStore that keeps keys in memory only: tokens it
// signed stop verifying when the process ends. For tests and throw-away
// instances.
type MemoryKeyStore struct {
	mu   sync.Mutex
	keys []Key
}

// NewMemoryKeyStore returns an empty in-memory key store.
func NewMemoryKeyStore() *MemoryKeyStore { return &MemoryKeyStore{} }

// AddKey implements KeyStore.
func (s *MemoryKeyStore) AddKey(_ context.Context, k Key) error {
	if err := k.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, k)
	return nil
}

// ListKeys implements KeyStore.
func (s *MemoryKeyStore) ListKeys(context.Context) ([]Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.keys), nil
}

// DeleteKeysBefore implements KeyStore.
func (s *MemoryKeyStore) DeleteKeysBefore(_ context.Context, cutoff time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = slices.DeleteFunc(s.keys, func(k Key) bool { return k.CreatedAt.Before(cutoff) })
	return nil
}
