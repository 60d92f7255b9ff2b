package pluginhost

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/spectroauth/spectroauth/host/internal/atomicfile"
)

// The plugin content store.
//
// Copying and hashing every plugin binary is most of what a daemon start
// spends on its plugins (33 MB of binaries: about 70 ms of CPU). So, the way
// container runtimes verify a layer once and then trust their own content
// store, the daemon keeps a copy of each binary it has verified in a
// directory only its user can write, Options.StoreDir (the daemon's is
// plugin-store in storage.path):
//
//	<digest>          the verified bytes, mode 0500, written from the sealed memfd
//	<digest>.source   JSON: the identity (device, inode, size, mode, mtime,
//	                  ctime) of that file as written, and of each source file
//	                  the bytes were verified from, at the time
//
// At the next start, a plugin whose configured digest has an entry, and
// whose source file (checked as always by openChecked) still has the
// recorded identity, is executed from the entry (a read-only descriptor,
// as /proc/self/fd/N) without copying or hashing anything. Any difference
// in the source's identity (a rewrite changes its ctime, a replacement its
// inode) means a full verification from the source, as without the store,
// which fails with the digest mismatch an operator expects when the file no
// longer has the configured digest. The entry itself must be a regular
// file, not a symbolic link (opened with O_NOFOLLOW, checked with fstat on
// that descriptor), owned by the daemon's effective uid, mode 0500, with
// exactly the recorded identity: chmod, chown, a write, truncation or a
// replacement all change its ctime or inode. The directory must be owned by
// that uid, not accessible to group or others, and not on a noexec mount.
// An entry that fails a check is removed and written again after the next
// verification; a store that fails one is not used (logged once, at warn)
// and the start goes through the memfd. The store never fails a start.
//
// Why this is as strong as hashing at every start: what runs is still
// exactly bytes that were hashed against a configured digest, by this
// daemon, from a sealed memfd. Between the write and the next start only
// the daemon's uid (or root) can change the entry, its record or the
// directory, and doing so without leaving the recorded identity requires
// root. That uid already holds, in the same data directory, the signing
// keys and the sessions: whoever can write as it can sign in as anyone
// without touching a plugin. Plugins, which run as that uid too, cannot
// reach the store: each may read and execute only its own entry (the
// Landlock rule names that one file, see sandbox_linux.go), may not list
// the directory or open any other entry, and may write nothing in it; so
// the store is used only where Landlock restricts plugins. Without
// Landlock a plugin could rewrite another plugin's entry, and every start
// copies and hashes as before. A plugin restarted after its entry changed
// (ctime, inode, mode, owner or size differ from what the start saw) is
// verified from its source again, into a memfd.

// storeRecordMax bounds a record file, and storeMaxSources the source paths
// a record remembers.
const (
	storeRecordMax  = 64 << 10
	storeMaxSources = 16
)

// fileIdentity is what tells a file apart from a changed one: any write,
// chmod, chown or rename updates the ctime, which only root can set.
type fileIdentity struct {
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	Size    int64  `json:"size"`
	Mode    uint32 `json:"mode"`
	UID     uint32 `json:"uid"`
	MtimeNs int64  `json:"mtimeNs"`
	CtimeNs int64  `json:"ctimeNs"`
}

func identityOf(st *unix.Stat_t) fileIdentity {
	return fileIdentity{
		Dev: st.Dev, Ino: st.Ino, Size: st.Size, Mode: st.Mode, UID: st.Uid,
		MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano(),
	}
}

// storeRecord is a <digest>.source file.
type storeRecord struct {
	// Entry is the identity of <digest> as the daemon wrote it.
	Entry fileIdentity `json:"entry"`
	// Sources are the files, by absolute path, whose bytes were verified
	// against the digest, as they were then.
	Sources map[string]fileIdentity `json:"sources"`
}

// contentStore is the verified plugin content store in one directory. One
// exists per directory in the process (openStore), shared by its hosts, so
// that it knows every entry a running plugin uses. Its methods are safe for
// concurrent use.
type contentStore struct {
	dir  string // absolute
	log  hclog.Logger
	euid int

	// mu serializes every change to the directory, and guards the fields
	// below.
	mu sync.Mutex
	// unusable says why the store is not used, since the last prepare;
	// empty when it is.
	unusable string
	warned   map[string]bool
	// inUse counts, by digest, the open entries plugins run from.
	inUse map[string]int
	// referenced are the digests the newest running configuration pins;
	// nil until one has started.
	referenced map[string]bool
}

var stores struct {
	sync.Mutex
	m map[string]*contentStore
}

// Test hooks: testHookStatfs may change what fstatfs says of the store
// directory; testHookHashed runs whenever a binary is hashed.
var (
	testHookStatfs func(*unix.Statfs_t)
	testHookHashed func(path string)
)

// openStore returns the content store in dir, shared by every host of the
// process, checked for use (prepare); nil when dir is empty.
func openStore(dir string, log hclog.Logger, landlock int) *contentStore {
	if dir == "" {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		log.Warn("plugin content store unused: every start copies and hashes the plugin binaries", "dir", dir, "reason", err.Error())
		return nil
	}
	stores.Lock()
	s, ok := stores.m[abs]
	if !ok {
		s = &contentStore{dir: abs, log: log, euid: os.Geteuid(), warned: map[string]bool{}, inUse: map[string]int{}}
		if stores.m == nil {
			stores.m = map[string]*contentStore{}
		}
		stores.m[abs] = s
	}
	stores.Unlock()
	s.prepare(landlock)
	return s
}

// prepare creates the directory if need be, checks that it may be used,
// and removes the temporary files a crash left; a store that may not be
// used says why in the log, once.
func (s *contentStore) prepare(landlock int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unusable = s.check(landlock)
	if s.unusable != "" {
		if !s.warned[s.unusable] {
			s.warned[s.unusable] = true
			s.log.Warn("plugin content store unused: every start copies and hashes the plugin binaries", "dir", s.dir, "reason", s.unusable)
		}
		return
	}
	if n, err := atomicfile.CleanTemp(s.dir); err != nil {
		s.log.Warn("plugin content store: removing what an interrupted write left", "error", err)
	} else if n > 0 {
		s.log.Debug("plugin content store: removed what an interrupted write left", "files", n)
	}
}

// check says why the store may not be used, or "".
func (s *contentStore) check(landlock int) string {
	if landlock < 1 {
		return "without Landlock, plugins run as the daemon's user and could change the stored copies"
	}
	if err := os.MkdirAll(filepath.Dir(s.dir), 0o700); err != nil {
		return err.Error()
	}
	if err := os.Mkdir(s.dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err.Error()
	}
	fd, err := unix.Open(s.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Sprintf("opening %s: %v (a symbolic link or not a directory?)", s.dir, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err.Error()
	}
	switch {
	case int(st.Uid) != s.euid:
		return fmt.Sprintf("%s is owned by uid %d, not the daemon's uid %d", s.dir, st.Uid, s.euid)
	case st.Mode&0o077 != 0:
		return fmt.Sprintf("%s has mode %04o: group or others may reach it; chmod 700 it", s.dir, st.Mode&0o7777)
	case st.Mode&0o700 != 0o700:
		return fmt.Sprintf("%s has mode %04o: the daemon's user may not use it; chmod 700 it", s.dir, st.Mode&0o7777)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return err.Error()
	}
	if testHookStatfs != nil {
		testHookStatfs(&sfs)
	}
	if sfs.Flags&unix.ST_NOEXEC != 0 {
		return s.dir + " is on a file system mounted noexec"
	}
	return ""
}

// isDigest reports whether d is a digest as entries are named: 64
// lowercase hex digits.
func isDigest(d string) bool {
	if len(d) != 64 {
		return false
	}
	for _, c := range d {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (s *contentStore) entryPath(digest string) string { return filepath.Join(s.dir, digest) }
func (s *contentStore) recordPath(digest string) string {
	return filepath.Join(s.dir, digest+".source")
}

// errNotStored: the store has no entry for a digest.
var errNotStored = errors.New("not stored")

// readRecord reads the record of digest, checked as an entry is (a regular
// file of the daemon's uid that group and others may not write).
func (s *contentStore) readRecord(digest string) (*storeRecord, error) {
	f, st, err := openOwn(s.recordPath(digest), s.euid)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.Size > storeRecordMax {
		return nil, fmt.Errorf("its record is %d bytes", st.Size)
	}
	var r storeRecord
	if err := json.NewDecoder(io.LimitReader(f, storeRecordMax)).Decode(&r); err != nil {
		return nil, fmt.Errorf("its record: %w", err)
	}
	return &r, nil
}

// openOwn opens path read-only without following a symbolic link and
// checks the open file: regular, owned by euid, not writable by group or
// others.
func openOwn(path string, euid int) (*os.File, *unix.Stat_t, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil, errNotStored
	}
	if err != nil {
		return nil, nil, fmt.Errorf("opening %s: %w", filepath.Base(path), err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, nil, err
	}
	var problem string
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		problem = "is not a regular file"
	case int(st.Uid) != euid:
		problem = fmt.Sprintf("is owned by uid %d, not %d", st.Uid, euid)
	case st.Mode&0o022 != 0:
		problem = fmt.Sprintf("is writable by group or others (mode %04o)", st.Mode&0o7777)
	}
	if problem != "" {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("%s %s", filepath.Base(path), problem)
	}
	return os.NewFile(uintptr(fd), path), &st, nil
}

// lookup returns the stored copy of the binary at path (absolute) with
// digest (lowercase hex), whose source file, open and checked, has the
// identity src; nil when the store has none that passes every check, and
// then the caller verifies the source. An entry that fails a check is
// removed.
func (s *contentStore) lookup(path, digest string, src *unix.Stat_t) *verifiedBinary {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unusable != "" || !isDigest(digest) {
		return nil
	}
	rec, err := s.readRecord(digest)
	if errors.Is(err, errNotStored) {
		return nil
	}
	if err != nil {
		s.discard(digest, err)
		return nil
	}
	if was, ok := rec.Sources[path]; !ok || was != identityOf(src) {
		s.log.Debug("plugin binary changed (or is new) since it was stored: verifying it", "path", path, "sha256", digest)
		return nil
	}
	f, st, err := openOwn(s.entryPath(digest), s.euid)
	if err == nil && identityOf(st) != rec.Entry {
		err = fmt.Errorf("the stored copy changed since it was written (mode %04o, %d bytes)", st.Mode&0o7777, st.Size)
	}
	if err == nil && st.Mode&0o7777 != 0o500 {
		err = fmt.Errorf("the stored copy has mode %04o, not 0500", st.Mode&0o7777)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		s.discard(digest, err)
		return nil
	}
	var head [2]byte
	n, _ := f.ReadAt(head[:], 0)
	s.inUse[digest]++
	b := &verifiedBinary{path: path, digest: digest, mem: f, fd: int(f.Fd()), script: string(head[:n]) == "#!",
		stored: &storedCopy{store: s, identity: rec.Entry}}
	b.refs.Store(1)
	return b
}

// discard removes the entry of digest and its record, which failed a
// check; the next verification writes them again. s.mu is held.
func (s *contentStore) discard(digest string, why error) {
	s.log.Warn("plugin content store: removing a stored copy that fails its checks; the binary is verified from its source", "sha256", digest, "reason", why.Error())
	for _, p := range []string{s.recordPath(digest), s.entryPath(digest)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("plugin content store: removing a file", "error", err)
		}
	}
}

// release counts out one running plugin's entry of digest.
func (s *contentStore) release(digest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inUse[digest]--; s.inUse[digest] <= 0 {
		delete(s.inUse, digest)
	}
}

// keep stores b, a binary just verified from its source into a sealed
// memfd (b.source set), unless the store holds it already, and records
// b's source. Errors are logged: the store is an optimisation.
func (s *contentStore) keep(b *verifiedBinary) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unusable != "" || b.source == nil || !isDigest(b.digest) {
		return
	}
	if err := s.write(b); err != nil {
		s.log.Warn("plugin content store: storing a verified plugin binary", "path", b.path, "sha256", b.digest, "error", err)
	}
}

// write is keep's work; s.mu is held.
func (s *contentStore) write(b *verifiedBinary) error {
	rec, err := s.readRecord(b.digest)
	if err != nil && !errors.Is(err, errNotStored) {
		s.log.Debug("plugin content store: rewriting a record", "sha256", b.digest, "reason", err.Error())
	}
	// The entry is kept only if it is exactly what the daemon wrote.
	fresh := rec == nil
	if !fresh {
		f, st, err := openOwn(s.entryPath(b.digest), s.euid)
		if err != nil || identityOf(st) != rec.Entry || st.Mode&0o7777 != 0o500 {
			fresh = true
		}
		if f != nil {
			f.Close()
		}
	}
	if fresh {
		fi, err := b.mem.Stat()
		if err != nil {
			return err
		}
		data := []byte{}
		if fi.Size() > 0 {
			if data, err = unix.Mmap(b.fd, 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED); err != nil {
				return fmt.Errorf("mapping the verified copy: %w", err)
			}
			defer unix.Munmap(data)
		}
		if err := atomicfile.WriteFile(s.entryPath(b.digest), data, 0o500); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(s.entryPath(b.digest), &st); err != nil {
			return err
		}
		rec = &storeRecord{Entry: identityOf(&st)}
	}
	if was, ok := rec.Sources[b.path]; ok && was == *b.source {
		return nil
	}
	if rec.Sources == nil || len(rec.Sources) >= storeMaxSources {
		rec.Sources = map[string]fileIdentity{}
	}
	rec.Sources[b.path] = *b.source
	j, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(s.recordPath(b.digest), j, 0o600); err != nil {
		return err
	}
	s.log.Debug("plugin content store: stored a verified plugin binary", "path", b.path, "sha256", b.digest, "bytes", rec.Entry.Size)
	return nil
}

// setReferenced records the digests the newest running configuration pins:
// prune keeps their entries.
func (s *contentStore) setReferenced(digests []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.referenced = map[string]bool{}
	for _, d := range digests {
		s.referenced[strings.ToLower(d)] = true
	}
}

// prune removes the entries (and records) that the newest running
// configuration does not pin and no running plugin uses, and what an
// interrupted write left. Names that are none of these are left alone.
func (s *contentStore) prune() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unusable != "" || s.referenced == nil {
		return
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		s.log.Warn("plugin content store: listing it to remove unused copies", "error", err)
		return
	}
	removed := 0
	for _, e := range entries {
		name := e.Name()
		digest := strings.TrimSuffix(name, ".source")
		switch {
		case atomicfile.IsTemp(name):
			// Only writes hold s.mu: this one was interrupted.
		case !isDigest(digest) || s.referenced[digest] || s.inUse[digest] > 0:
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("plugin content store: removing an unused copy", "error", err)
			continue
		}
		removed++
	}
	if removed > 0 {
		if err := atomicfile.SyncDir(s.dir); err != nil {
			s.log.Warn("plugin content store", "error", err)
		}
		s.log.Debug("plugin content store: removed what no running configuration uses", "files", removed)
	}
}

// backgroundThread locks the calling goroutine to its OS thread, for good
// (the thread ends with the goroutine), and lowers that thread's CPU
// priority to the lowest (nice 19): the store's writes, which come right
// after the plugins are up, then take no CPU from the rest of the daemon's
// start or its first requests.
func backgroundThread() {
	runtime.LockOSThread()
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
}

// storedCopy is what a verifiedBinary run from the store knows of its
// entry.
type storedCopy struct {
	store    *contentStore
	identity fileIdentity // the entry as checked when it was opened
}
