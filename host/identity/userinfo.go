package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/internal/atomicfile"
)

// ErrUserInfoNotFound is returned by UserInfoStore.Get for an unknown user.
var ErrUserInfoNotFound = errors.New("identity: user info not found")

// UserInfo is what GET /v1/userinfo answers for a user: marshalled with
// encoding/json it is exactly Backstage's body, {"claims":{"sub":...,"ent":[...]}}.
type UserInfo struct {
	Claims UserInfoClaims `json:"claims"`
}

// UserInfoClaims are the user's entity ref and ownership refs.
type UserInfoClaims struct {
	Sub string   `json:"sub"`
	Ent []string `json:"ent"`
}

// Equal reports whether two user infos hold the same claims.
func (u UserInfo) Equal(o UserInfo) bool {
	return u.Claims.Sub == o.Claims.Sub && slices.Equal(u.Claims.Ent, o.Claims.Ent)
}

func (u UserInfo) clone() UserInfo {
	u.Claims.Ent = slices.Clone(u.Claims.Ent)
	return u
}

// UserInfoStore keeps the latest user info per user entity ref. Issue writes
// it on every token; the /v1/userinfo route reads it, since tokens leave
// "ent" out. Implementations must be safe for concurrent use and should make
// Put cheap when nothing changed (it runs on every sign-in and refresh). A
// PostgreSQL implementation is one row per user (user_entity_ref primary
// key, JSON user_info), upserted.
type UserInfoStore interface {
	// Put stores info for the user sub, replacing what was there.
	Put(ctx context.Context, sub string, info UserInfo) error
	// Get returns the info stored for sub, or ErrUserInfoNotFound.
	Get(ctx context.Context, sub string) (UserInfo, error)
}

// MemoryUserInfoStore is a UserInfoStore in memory only, for tests and
// throw-away instances.
type MemoryUserInfoStore struct {
	m sync.Map // sub → UserInfo
}

// NewMemoryUserInfoStore returns an empty in-memory user info store.
func NewMemoryUserInfoStore() *MemoryUserInfoStore { return &MemoryUserInfoStore{} }

// Put implements UserInfoStore.
func (s *MemoryUserInfoStore) Put(_ context.Context, sub string, info UserInfo) error {
	if err := checkUserInfo(sub, info); err != nil {
		return err
	}
	if old, ok := s.m.Load(sub); ok && old.(UserInfo).Equal(info) {
		return nil
	}
	s.m.Store(sub, info.clone())
	return nil
}

// Get implements UserInfoStore.
func (s *MemoryUserInfoStore) Get(_ context.Context, sub string) (UserInfo, error) {
	v, ok := s.m.Load(sub)
	if !ok {
		return UserInfo{}, ErrUserInfoNotFound
	}
	return v.(UserInfo).clone(), nil
}

// FileUserInfoStore is a UserInfoStore on local disk: one file per user
// under <dir>/userinfo/, named by the SHA-256 of the entity ref, mode 0600
// in a 0700 directory, written atomically. Everything is loaded into memory
// at open, so Get never touches disk and an unchanged Put costs one map
// lookup.
type FileUserInfoStore struct {
	dir    string
	logger hclog.Logger
	m      sync.Map   // sub → UserInfo
	wmu    sync.Mutex // serialises writes so disk and memory agree
}

// OpenFileUserInfoStore opens (creating it if needed) the user info store
// under <dir>/userinfo/ and loads it. Unreadable files are logged and
// skipped; temporary files a crash left are removed.
func OpenFileUserInfoStore(dir string, opts ...FileOption) (*FileUserInfoStore, error) {
	o := applyFileOptions(opts)
	udir := filepath.Join(dir, "userinfo")
	if err := atomicfile.MkdirPrivate(udir); err != nil {
		return nil, fmt.Errorf("identity: opening user info store: %w", err)
	}
	if _, err := atomicfile.CleanTemp(udir); err != nil {
		return nil, fmt.Errorf("identity: opening user info store: %w", err)
	}
	s := &FileUserInfoStore{dir: udir, logger: o.logger}
	err := readUserInfoDir(udir, o.logger, func(info UserInfo) { s.m.Store(info.Claims.Sub, info) })
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ReadFileUserInfo returns the user info of the file store under dir (the
// directory OpenFileUserInfoStore takes), one per user in no particular
// order, without opening the store: it writes and removes nothing, so a
// daemon may be using the directory meanwhile. Unreadable files are logged
// and skipped, as at open; a missing <dir>/userinfo/ is an error.
func ReadFileUserInfo(dir string, opts ...FileOption) ([]UserInfo, error) {
	o := applyFileOptions(opts)
	var infos []UserInfo
	err := readUserInfoDir(filepath.Join(dir, "userinfo"), o.logger, func(info UserInfo) { infos = append(infos, info) })
	if err != nil {
		return nil, err
	}
	return infos, nil
}

// readUserInfoDir calls fn with each readable user info file in udir.
func readUserInfoDir(udir string, logger hclog.Logger, fn func(UserInfo)) error {
	entries, err := os.ReadDir(udir)
	if err != nil {
		return fmt.Errorf("identity: loading user info from %s: %w", udir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || atomicfile.IsTemp(name) || !strings.HasSuffix(name, ".json") {
			continue
		}
		p := filepath.Join(udir, name)
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("identity: loading user info file %s: %w", p, err)
		}
		var info UserInfo
		if err := json.Unmarshal(data, &info); err != nil || name != userInfoFileName(info.Claims.Sub) {
			logger.Error("skipping unreadable user info file", "file", p)
			continue
		}
		fn(info)
	}
	return nil
}

// Put implements UserInfoStore. When info equals what is stored it returns
// at once, without writing.
func (s *FileUserInfoStore) Put(ctx context.Context, sub string, info UserInfo) error {
	if err := checkUserInfo(sub, info); err != nil {
		return err
	}
	if old, ok := s.m.Load(sub); ok && old.(UserInfo).Equal(info) {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if old, ok := s.m.Load(sub); ok && old.(UserInfo).Equal(info) {
		return nil // a concurrent Put wrote the same
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("identity: storing user info: %w", err)
	}
	info = info.clone()
	data, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("identity: encoding user info: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(s.dir, userInfoFileName(sub)), data, 0o600); err != nil {
		return fmt.Errorf("identity: storing user info: %w", err)
	}
	s.m.Store(sub, info)
	return nil
}

// Get implements UserInfoStore; it does not touch disk.
func (s *FileUserInfoStore) Get(_ context.Context, sub string) (UserInfo, error) {
	v, ok := s.m.Load(sub)
	if !ok {
		return UserInfo{}, ErrUserInfoNotFound
	}
	return v.(UserInfo).clone(), nil
}

func userInfoFileName(sub string) string {
	h := sha256.Sum256([]byte(sub))
	return hex.EncodeToString(h[:]) + ".json"
}

// ValidateUserInfo checks what a UserInfoStore's Put is given: a non-empty
// user whose claims are its own. Stores outside this package call it.
func ValidateUserInfo(sub string, info UserInfo) error { return checkUserInfo(sub, info) }

func checkUserInfo(sub string, info UserInfo) error {
	if sub == "" {
		return errors.New("identity: storing user info: empty user entity ref")
	}
	if info.Claims.Sub != sub {
		return fmt.Errorf("identity: storing user info for %s: claims are for %s", sub, info.Claims.Sub)
	}
	return nil
}
