package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/internal/atomicfile"
)

// FileOption configures the file-backed stores of this package.
type FileOption func(*fileOptions)

type fileOptions struct {
	logger hclog.Logger
}

// WithLogger sets the logger a file store reports skipped (corrupt) files
// to. The default is hclog.Default().
func WithLogger(l hclog.Logger) FileOption {
	return func(o *fileOptions) { o.logger = l }
}

func applyFileOptions(opts []FileOption) fileOptions {
	o := fileOptions{}
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = hclog.Default()
	}
	return o
}

// FileKeyStore is a KeyStore on local disk: one file per key under
// <dir>/keys/, named <kid>.json, mode 0600 in a 0700 directory, each written
// atomically. It suits one daemon per data directory.
type FileKeyStore struct {
	dir    string
	logger hclog.Logger
}

// keyFile is the on-disk form of a Key. The private key is a JWK (with "d").
type keyFile struct {
	Version   int             `json:"version"`
	CreatedAt time.Time       `json:"createdAt"`
	Key       jose.JSONWebKey `json:"key"`
}

const keyFileVersion = 1

// OpenFileKeyStore opens (creating it if needed) the key store under
// <dir>/keys/ and removes temporary files a crash left there.
func OpenFileKeyStore(dir string, opts ...FileOption) (*FileKeyStore, error) {
	o := applyFileOptions(opts)
	kdir := filepath.Join(dir, "keys")
	if err := atomicfile.MkdirPrivate(kdir); err != nil {
		return nil, fmt.Errorf("identity: opening key store: %w", err)
	}
	if n, err := atomicfile.CleanTemp(kdir); err != nil {
		return nil, fmt.Errorf("identity: opening key store: %w", err)
	} else if n > 0 {
		o.logger.Warn("removed unfinished key files left by an earlier crash", "dir", kdir, "count", n)
	}
	return &FileKeyStore{dir: kdir, logger: o.logger}, nil
}

// ReadFileKeys returns the keys of the file key store under dir (the
// directory OpenFileKeyStore takes) without opening it: it writes and
// removes nothing, so a daemon may be using the directory meanwhile.
// Unreadable files are logged and skipped, as ListKeys does; a missing
// <dir>/keys/ is an error.
func ReadFileKeys(ctx context.Context, dir string, opts ...FileOption) ([]Key, error) {
	o := applyFileOptions(opts)
	s := &FileKeyStore{dir: filepath.Join(dir, "keys"), logger: o.logger}
	return s.ListKeys(ctx)
}

// AddKey implements KeyStore: it writes <kid>.json atomically.
func (s *FileKeyStore) AddKey(ctx context.Context, k Key) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("identity: storing key %s: %w", k.ID, err)
	}
	if err := k.validate(); err != nil {
		return err
	}
	if k.Private == nil {
		return fmt.Errorf("identity: storing key %s: the file store keeps private keys and this key has none", k.ID)
	}
	data, err := EncodeKey(k)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(s.path(k.ID), data, 0o600); err != nil {
		return fmt.Errorf("identity: storing key %s: %w", k.ID, err)
	}
	return nil
}

// ListKeys implements KeyStore. A file that cannot be read as a key is
// logged and skipped: one damaged file must not stop the daemon from
// signing.
func (s *FileKeyStore) ListKeys(ctx context.Context) ([]Key, error) {
	names, err := s.names()
	if err != nil {
		return nil, err
	}
	keys := make([]Key, 0, len(names))
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("identity: listing keys: %w", err)
		}
		k, err := s.read(name)
		if err != nil {
			// The error names the file and what was wrong, never key material.
			s.logger.Error("skipping unreadable signing key file", "file", filepath.Join(s.dir, name), "error", err)
			continue
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// DeleteKeysBefore implements KeyStore.
func (s *FileKeyStore) DeleteKeysBefore(ctx context.Context, cutoff time.Time) error {
	names, err := s.names()
	if err != nil {
		return err
	}
	removed := 0
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("identity: deleting old keys: %w", err)
		}
		k, err := s.read(name)
		if err != nil || !k.CreatedAt.Before(cutoff) {
			continue // unreadable files are reported by ListKeys, not removed
		}
		if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("identity: deleting old key %s: %w", k.ID, err)
		}
		removed++
	}
	if removed > 0 {
		if err := atomicfile.SyncDir(s.dir); err != nil {
			return fmt.Errorf("identity: deleting old keys: %w", err)
		}
	}
	return nil
}

func (s *FileKeyStore) path(kid string) string { return filepath.Join(s.dir, kid+".json") }

// names lists the key files, skipping temporary files and anything else.
func (s *FileKeyStore) names() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("identity: listing key directory %s: %w", s.dir, err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || atomicfile.IsTemp(n) || !strings.HasSuffix(n, ".json") {
			continue
		}
		names = append(names, n)
	}
	return names, nil
}

func (s *FileKeyStore) read(name string) (Key, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return Key{}, fmt.Errorf("reading: %w", err)
	}
	k, err := DecodeKey(data)
	if err != nil {
		return Key{}, err
	}
	if k.Private == nil {
		return Key{}, errors.New("not an ECDSA private key")
	}
	if name != k.ID+".json" {
		return Key{}, fmt.Errorf("file name does not match kid %s", k.ID)
	}
	return k, nil
}

// EncodeKey is a key's stored form, the same for every store: JSON with a
// format version, the creation time (to the nanosecond) and the key as a
// JWK, private ("d") when k has its private half. It is secret when it holds
// the private key. k must be valid (Validate).
func EncodeKey(k Key) ([]byte, error) {
	if err := k.validate(); err != nil {
		return nil, err
	}
	var jk any = k.Public
	if k.Private != nil {
		jk = k.Private
	}
	data, err := json.Marshal(keyFile{
		Version:   keyFileVersion,
		CreatedAt: k.CreatedAt.UTC(),
		Key:       jose.JSONWebKey{Key: jk, KeyID: k.ID, Algorithm: string(jose.ES256), Use: "sig"},
	})
	if err != nil {
		return nil, fmt.Errorf("identity: encoding key %s: %w", k.ID, err)
	}
	return data, nil
}

// DecodeKey reads what EncodeKey wrote and validates it. Its errors say what
// is wrong, never quoting key material.
func DecodeKey(data []byte) (Key, error) {
	var kf keyFile
	if err := json.Unmarshal(data, &kf); err != nil {
		return Key{}, errors.New("not valid key JSON")
	}
	if kf.Version != keyFileVersion {
		return Key{}, fmt.Errorf("unsupported key file version %d", kf.Version)
	}
	k := Key{ID: kf.Key.KeyID, CreatedAt: kf.CreatedAt}
	switch jk := kf.Key.Key.(type) {
	case *ecdsa.PrivateKey:
		k.Private, k.Public = jk, &jk.PublicKey
	case *ecdsa.PublicKey:
		k.Public = jk
	default:
		return Key{}, errors.New("not an ECDSA key")
	}
	if err := k.validate(); err != nil {
		return Key{}, err
	}
	return k, nil
}

// Validate checks what every store relies on: a UUID kid (it becomes a
// file name or a primary key), a creation time and a P-256 public key that
// matches the private key, if any. Stores call it in AddKey.
func (k Key) Validate() error { return k.validate() }

func (k Key) validate() error {
	if _, err := uuid.Parse(k.ID); err != nil || len(k.ID) != 36 {
		return fmt.Errorf("identity: key id %q is not a UUID", k.ID)
	}
	if k.CreatedAt.IsZero() {
		return fmt.Errorf("identity: key %s has no creation time", k.ID)
	}
	if k.Public == nil || k.Public.Curve != elliptic.P256() {
		return fmt.Errorf("identity: key %s is not a P-256 key", k.ID)
	}
	if k.Private != nil && !k.Private.PublicKey.Equal(k.Public) {
		return fmt.Errorf("identity: key %s: public key does not match the private key", k.ID)
	}
	return nil
}
