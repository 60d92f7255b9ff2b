package session

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/internal/atomicfile"
	"github.com/spectroauth/spectroauth/host/internal/periodic"
)

// DefaultSweepInterval is how often a store removes expired sessions when
// Options.SweepInterval is zero.
const DefaultSweepInterval = 10 * time.Minute

// Options configure a store.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil means hclog.Default().
	Logger hclog.Logger
	// SweepInterval is how often a background goroutine removes expired
	// sessions. Zero means DefaultSweepInterval; negative disables the
	// background sweep (call Sweep yourself).
	SweepInterval time.Duration
}

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = hclog.Default()
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	return o
}

// fileVersion is the version of the on-disk session format.
const fileVersion = 1

// sessionFile is the on-disk form of a session. It never contains the
// handle; the file name is the hex SHA-256 of it.
type sessionFile struct {
	Version int      `json:"version"`
	Session *Session `json:"session"`
}

// numShards is the number of write locks; writes to different sessions
// rarely contend, writes to one session are ordered.
const numShards = 64

// FileStore is a Store on local disk: one file per session under
// <dir>/sessions/, named by the session Key in hex, mode 0600 in a 0700
// directory, written atomically. All live sessions are loaded at open into
// an in-memory index, so Get never touches disk and takes no lock.
type FileStore struct {
	dir string
	// d is dir held open: each write's directory sync uses it rather
	// than opening and closing the directory.
	d      *atomicfile.Dir
	opts   Options
	index  sync.Map // Key → *Session (immutable once stored)
	shards [numShards]sync.Mutex

	closed atomic.Bool
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ Store = (*FileStore)(nil)

// OpenFileStore opens (creating it if needed) the session store under
// <dir>/sessions/. It removes temporary files a crash left, drops expired
// sessions, skips (and logs) files it cannot read, and starts the
// background sweep unless opts disable it. Call Close to stop it.
func OpenFileStore(dir string, opts Options) (*FileStore, error) {
	opts = opts.withDefaults()
	sdir := filepath.Join(dir, "sessions")
	if err := atomicfile.MkdirPrivate(sdir); err != nil {
		return nil, fmt.Errorf("session: opening store: %w", err)
	}
	if n, err := atomicfile.CleanTemp(sdir); err != nil {
		return nil, fmt.Errorf("session: opening store: %w", err)
	} else if n > 0 {
		opts.Logger.Warn("removed unfinished session files left by an earlier crash", "dir", sdir, "count", n)
	}
	d, err := atomicfile.OpenDir(sdir)
	if err != nil {
		return nil, fmt.Errorf("session: opening store: %w", err)
	}
	s := &FileStore{dir: sdir, d: d, opts: opts}
	if err := s.load(); err != nil {
		_ = d.Close()
		return nil, err
	}
	if opts.SweepInterval > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		s.wg.Add(1)
		go s.sweepLoop(ctx, opts.SweepInterval)
	}
	return s, nil
}

// load fills the index from disk. The files are read and decoded in
// parallel (scanSessionFiles): a daemon is not ready before load returns.
func (s *FileStore) load() error {
	files, err := listSessionFiles(s.dir)
	if err != nil {
		return fmt.Errorf("session: loading sessions from %s: %w", s.dir, err)
	}
	now := s.opts.Now()
	var loaded, expired, skipped atomic.Int64
	err = scanSessionFiles(s.dir, files, false, func(key Key, p string, sess *Session, why string) error {
		if why != "" {
			// Only the file name (a hash) and a fixed reason: never content.
			s.opts.Logger.Error("skipping unreadable session file", "file", p, "reason", why)
			skipped.Add(1)
			return nil
		}
		if sess.Expired(now) {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("session: removing expired session file %s: %w", p, err)
			}
			expired.Add(1)
			return nil
		}
		sess.intern()
		s.index.Store(key, sess)
		loaded.Add(1)
		return nil
	})
	if err != nil {
		return err
	}
	if expired.Load() > 0 {
		if err := s.d.Sync(); err != nil {
			return fmt.Errorf("session: loading sessions: %w", err)
		}
	}
	s.opts.Logger.Debug("loaded sessions", "dir", s.dir, "live", loaded.Load(), "expired", expired.Load(), "skipped", skipped.Load())
	return nil
}

// ReadFileSessions reads the sessions of the file store under dir (the
// directory OpenFileStore takes) without opening it: it writes, removes and
// locks nothing, so a daemon may be using the directory meanwhile. It calls
// fn, in no particular order and one call at a time, with each session live
// at now and its key, stopping at fn's first error, which it returns. It
// counts the expired sessions it passed over and the files it could not
// read (logged to log, by file name and reason only; nil means
// hclog.Default()); a file removed while it reads is neither. A missing
// <dir>/sessions/ is an error.
func ReadFileSessions(dir string, now time.Time, log hclog.Logger, fn func(Key, *Session) error) (expired, unreadable int, err error) {
	if log == nil {
		log = hclog.Default()
	}
	sdir := filepath.Join(dir, "sessions")
	files, err := listSessionFiles(sdir)
	if err != nil {
		return 0, 0, fmt.Errorf("session: reading sessions from %s: %w", sdir, err)
	}
	// The files are decoded in parallel; fn is called under mu, so it
	// need not be safe for concurrent use.
	var mu sync.Mutex
	var fnErr error
	_ = scanSessionFiles(sdir, files, true, func(key Key, p string, sess *Session, why string) error {
		if why != "" {
			log.Error("skipping unreadable session file", "file", p, "reason", why)
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case fnErr != nil:
			return fnErr
		case why != "":
			unreadable++
			return nil
		case sess.Expired(now):
			expired++
			return nil
		}
		fnErr = fn(key, sess)
		return fnErr
	})
	// The scan's only error is fn's.
	return expired, unreadable, fnErr
}

// decodeSessionFile decodes a session file given what reading it returned
// (atomicfile.Reader.ReadFile, or os.ReadFile: errors are *fs.PathError). On failure
// it returns a fixed reason safe to log (decoder errors can quote file
// content).
func decodeSessionFile(data []byte, err error) (*Session, string) {
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, "cannot read: " + pe.Err.Error()
		}
		return nil, "cannot read"
	}
	var f sessionFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, "not valid session JSON"
	}
	if f.Version != fileVersion {
		return nil, fmt.Sprintf("unsupported version %d", f.Version)
	}
	if f.Session == nil || f.Session.ExpiresAt.IsZero() {
		return nil, "no session or no expiry"
	}
	return f.Session, ""
}

// Get implements Store. It reads only the in-memory index.
func (s *FileStore) Get(_ context.Context, key Key) (*Session, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	v, ok := s.index.Load(key)
	if !ok {
		return nil, ErrNotFound
	}
	sess := v.(*Session)
	if sess.Expired(s.opts.Now()) {
		return nil, ErrNotFound
	}
	return sess.Clone(), nil
}

// Put implements Store: the session is on disk before Put returns.
func (s *FileStore) Put(ctx context.Context, key Key, sess *Session) error {
	return s.store(ctx, key, sess, false)
}

// Replace implements Store: like Put, but only over a live session.
func (s *FileStore) Replace(ctx context.Context, key Key, sess *Session) error {
	return s.store(ctx, key, sess, true)
}

// store writes sess under key; existing requires a live session there,
// checked under the same lock as Delete takes.
func (s *FileStore) store(ctx context.Context, key Key, sess *Session, existing bool) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := validate(sess, s.opts.Now()); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("session: storing: %w", err)
	}
	sess = sess.Clone()
	data, err := json.Marshal(sessionFile{Version: fileVersion, Session: sess})
	if err != nil {
		return fmt.Errorf("session: encoding session: %w", err)
	}
	mu := s.shard(key)
	mu.Lock()
	defer mu.Unlock()
	if existing {
		if v, ok := s.index.Load(key); !ok || v.(*Session).Expired(s.opts.Now()) {
			return ErrNotFound
		}
		// Another process (`spectroauthd sessions revoke`) may have removed
		// the file: a renewal must not bring the session back. One stat per
		// renewal, never on Get.
		if _, err := os.Stat(s.path(key)); errors.Is(err, fs.ErrNotExist) {
			s.index.Delete(key)
			return ErrNotFound
		}
	}
	if err := s.d.WriteFile(fileName(key), data, 0o600); err != nil {
		return fmt.Errorf("session: storing session %s: %w", key, err)
	}
	sess.intern()
	s.index.Store(key, sess)
	return nil
}

// Delete implements Store.
func (s *FileStore) Delete(_ context.Context, key Key) error {
	if s.closed.Load() {
		return ErrClosed
	}
	mu := s.shard(key)
	mu.Lock()
	defer mu.Unlock()
	// Forget it first: even if the disk fails, the session is gone for
	// this process.
	s.index.Delete(key)
	if err := s.d.Remove(fileName(key)); err != nil {
		return fmt.Errorf("session: deleting session %s: %w", key, err)
	}
	return nil
}

// Sweep implements Store: it removes the expired sessions from memory and
// disk, with one directory sync at the end. It stops early, returning
// ctx's error, when ctx is cancelled.
func (s *FileStore) Sweep(ctx context.Context) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	now := s.opts.Now()
	var expired []Key
	s.index.Range(func(k, v any) bool {
		if v.(*Session).Expired(now) {
			expired = append(expired, k.(Key))
		}
		return true
	})
	removed := 0
	var firstErr error
	for _, key := range expired {
		if err := ctx.Err(); err != nil {
			firstErr = fmt.Errorf("session: sweeping: %w", err)
			break
		}
		mu := s.shard(key)
		mu.Lock()
		// A Put may have replaced it with a live session meanwhile.
		if v, ok := s.index.Load(key); ok && v.(*Session).Expired(now) {
			err := s.d.Unlink(fileName(key))
			if err == nil {
				s.index.CompareAndDelete(key, v)
				removed++
			} else if firstErr == nil {
				firstErr = fmt.Errorf("session: sweeping session %s: %w", key, err)
			}
		}
		mu.Unlock()
	}
	if removed > 0 {
		if err := s.d.Sync(); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("session: sweeping: %w", err)
		}
	}
	return removed, firstErr
}

// ListByUser implements Store from the in-memory index.
func (s *FileStore) ListByUser(_ context.Context, user string) ([]Entry, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	now := s.opts.Now()
	var out []Entry
	s.index.Range(func(k, v any) bool {
		if sess := v.(*Session); sess.UserEntityRef == user && !sess.Expired(now) {
			out = append(out, Entry{Key: k.(Key), Session: sess.Clone()})
		}
		return true
	})
	return out, nil
}

// DeleteByUser implements Store: each of the user's sessions is deleted
// as Delete does, expired ones too.
func (s *FileStore) DeleteByUser(ctx context.Context, user string) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	var keys []Key
	s.index.Range(func(k, v any) bool {
		if v.(*Session).UserEntityRef == user {
			keys = append(keys, k.(Key))
		}
		return true
	})
	n := 0
	for _, k := range keys {
		if err := s.Delete(ctx, k); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Len returns the number of sessions in the index, expired or not.
func (s *FileStore) Len() int {
	n := 0
	s.index.Range(func(any, any) bool { n++; return true })
	return n
}

// Close stops the background sweep, waits for it and closes the
// directory. The store cannot be used afterwards. Close is idempotent.
func (s *FileStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	return s.d.Close()
}

func (s *FileStore) sweepLoop(ctx context.Context, every time.Duration) {
	defer s.wg.Done()
	periodic.Every(ctx, every, func(ctx context.Context) {
		n, err := s.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("sweeping expired sessions", "removed", n, "error", err)
		} else if n > 0 {
			s.opts.Logger.Debug("swept expired sessions", "removed", n)
		}
	})
}

func (s *FileStore) shard(k Key) *sync.Mutex { return &s.shards[k[0]%numShards] }

func (s *FileStore) path(k Key) string { return filepath.Join(s.dir, fileName(k)) }

// fileName is the name of k's file in the sessions directory.
func fileName(k Key) string { return k.String() + ".json" }

// keyFromFileName parses "<64 hex>.json".
func keyFromFileName(name string) (Key, bool) {
	h, ok := strings.CutSuffix(name, ".json")
	if !ok || len(h) != 2*len(Key{}) {
		return Key{}, false
	}
	var k Key
	if _, err := hex.Decode(k[:], []byte(h)); err != nil {
		return Key{}, false
	}
	return k, true
}
