package session

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// DefaultCatchUpInterval is how often a file store reads what other
// processes appended to its journal when Options.CatchUpInterval is zero.
const DefaultCatchUpInterval = time.Second

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
	// CatchUpInterval is how often a file store checks its journal for
	// records other processes appended (`spectroauthd sessions revoke`
	// beside a running daemon), so that a revocation ends the session here
	// within about that long: one fstat when nothing changed. Zero means
	// DefaultCatchUpInterval; negative disables it (the store still
	// catches up before each write).
	CatchUpInterval time.Duration
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
	if o.CatchUpInterval == 0 {
		o.CatchUpInterval = DefaultCatchUpInterval
	}
	return o
}

// fileVersion is the version of the JSON form of a session.
const fileVersion = 1

// sessionFile is the JSON form of a session: a journal put record's
// payload, and the content of a session file of the one-file-per-session
// layout. It never contains the handle.
type sessionFile struct {
	Version int      `json:"version"`
	Session *Session `json:"session"`
}

// compactMinBytes is the smallest journal a compaction rewrites: below it
// the garbage costs nothing worth a rewrite. A variable for tests.
var compactMinBytes int64 = 4 << 20

// FileStore is a Store on local disk: an append-only journal under
// <dir>/sessions/ (see journal.go for the format), mode 0600 in a 0700
// directory. All live sessions are loaded at open into an in-memory index,
// so Get never touches disk and takes no lock.
//
// Several processes may open one directory (the daemon, and `spectroauthd
// sessions list|revoke` beside it): they append under an exclusive flock
// of the journal, catch up with each other's records before each append
// and every CatchUpInterval, and follow a compaction by another process to
// the new file.
type FileStore struct {
	dir  string // <dir>/sessions
	path string // the journal
	opts Options

	index sync.Map // Key → *Session (immutable once stored)

	// mu orders every change of the journal and of the index (which Get
	// reads without it): the index changes in the order of the records.
	// It is held for appends (the write, not the sync), catching up and
	// compaction.
	mu     sync.Mutex
	jf     *jfile
	end    int64 // offset after the last good record read or written
	live   int64 // the recordSize of the indexed sessions, summed
	broken error // set when the journal cannot be trusted any more
	// brokenErr is broken for Err, which must not wait behind a
	// compaction holding mu: /readyz calls it.
	brokenErr atomic.Pointer[error]
	// unwritten holds the deletes whose keys left the index but whose
	// records failed to append (key → the session's user, for
	// DeleteByUser): the journal still holds those sessions, so a retried
	// delete must write them and a reload must not bring them back. A
	// compaction, which writes only the index, drops them for good.
	unwritten map[Key]string

	// openTail is where the last record open's unlocked load read was
	// and its header, for initLocked to check under the lock.
	openTail *loaded

	closed atomic.Bool
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ Store = (*FileStore)(nil)

// OpenFileStore opens (creating it if needed) the session store under
// <dir>/sessions/. It truncates a torn tail a crash left at the end of the
// journal, imports the session files of the one-file-per-session layout
// (and removes them), drops expired sessions, compacts the journal when
// most of it is garbage, and starts the background sweep and catch-up
// unless opts disable them. Call Close to stop them.
func OpenFileStore(dir string, opts Options) (*FileStore, error) {
	opts = opts.withDefaults()
	sdir := filepath.Join(dir, "sessions")
	if err := atomicfile.MkdirPrivate(sdir); err != nil {
		return nil, fmt.Errorf("session: opening store: %w", err)
	}
	s := &FileStore{dir: sdir, path: filepath.Join(sdir, journalName), opts: opts}
	if err := s.open(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if opts.SweepInterval > 0 {
		s.wg.Add(1)
		go s.sweepLoop(ctx, opts.SweepInterval)
	}
	if opts.CatchUpInterval > 0 {
		s.wg.Go(func() {
			periodic.Every(ctx, opts.CatchUpInterval, func(context.Context) {
				if err := s.catchUp(); err != nil && !s.closed.Load() {
					s.opts.Logger.Warn("reading the session journal", "error", err)
				}
			})
		})
	}
	return s, nil
}

// open opens and loads the journal, and under its lock catches up with
// what was appended meanwhile, cuts a torn tail, migrates the session files
// of the earlier layout and compacts.
//
// The load itself takes no lock: a daemon's writes wait for the lock, and
// an operator's `spectroauthd sessions` loading 10,000 sessions under it
// would hold up sign-ins for a good part of a second. A record being
// appended meanwhile ends the unlocked load like a torn tail; the catch-up
// under the lock reads it whole (or cuts it, if its writer died).
func (s *FileStore) open() error {
	f, err := openJournalFile(s.path, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return fmt.Errorf("session: opening store: opening the session journal: %w", err)
	}
	if s.jf, err = newJFile(f, 0); err != nil {
		_ = f.Close()
		return fmt.Errorf("session: opening store: %w", err)
	}
	// A journal restored or copied with a looser mode is made private.
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm() != 0o600 {
		if err := f.Chmod(0o600); err != nil {
			_ = f.Close()
			return fmt.Errorf("session: opening store: restricting the journal's mode: %w", err)
		}
	}
	read, err := s.load(false)
	if err == nil {
		err = s.jf.lock()
	}
	if err != nil {
		_ = s.jf.f.Close()
		return fmt.Errorf("session: opening store: %w", err)
	}
	err = s.initLocked(read)
	// s.jf, not jf: a compaction at open replaced it.
	if uerr := s.jf.unlock(); err == nil && uerr != nil {
		err = fmt.Errorf("session: opening store: unlocking the journal: %w", uerr)
	}
	if err != nil {
		_ = s.jf.f.Close()
		return err
	}
	return nil
}

// initLocked finishes open under the lock; read says whether the
// unlocked load read the journal (it leaves a new one to this).
func (s *FileStore) initLocked(read bool) error {
	if read && s.openTailIntact() {
		if err := s.catchUpLocked(); err != nil {
			return err
		}
	} else if _, err := s.load(true); err != nil {
		return err
	}
	// A compaction a crash interrupted left its temporary file; nobody
	// else writes it while we hold the lock of the journal at the path
	// (which the read above follows to).
	if err := os.Remove(filepath.Join(s.dir, journalTemp)); err == nil {
		s.opts.Logger.Warn("removed an unfinished journal compaction left by an earlier crash", "dir", s.dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("session: opening store: %w", err)
	}
	if n, err := atomicfile.CleanTemp(s.dir); err != nil {
		return fmt.Errorf("session: opening store: %w", err)
	} else if n > 0 {
		s.opts.Logger.Warn("removed unfinished session files left by an earlier crash", "dir", s.dir, "count", n)
	}
	if err := s.migrateLocked(); err != nil {
		return err
	}
	if s.garbageLarge() {
		if err := s.compactLocked(); err != nil {
			// The journal is whole; the next sweep tries again.
			s.opts.Logger.Warn("compacting the session journal", "error", err)
		}
	}
	return nil
}

// openTailIntact reports whether the last record open's unlocked load read
// is still where it was. The load may have read whole records of a batch
// another process was writing that then failed and was cut off again, with
// other records written in their place since: going on from the end of
// that load would read from inside one of them, take it for a torn tail
// and cut it. The caller holds the lock.
func (s *FileStore) openTailIntact() bool {
	t := s.openTail
	s.openTail = nil
	if t == nil {
		return true // no record read: the load ended at the header
	}
	want := t.header()
	got := make([]byte, len(want))
	_, err := s.jf.f.ReadAt(got, t.at)
	return err == nil && bytes.Equal(got, want)
}

// openAndLock opens the journal at its path (creating it) and takes its
// lock. A file that a compaction replaced while this waited for its lock is
// opened again.
func (s *FileStore) openAndLock() (*jfile, error) {
	for range 100 {
		f, err := openJournalFile(s.path, os.O_RDWR|os.O_CREATE)
		if err != nil {
			return nil, fmt.Errorf("opening the session journal: %w", err)
		}
		jf, err := newJFile(f, 0)
		if err == nil {
			err = jf.lock()
		}
		var size int64
		var current bool
		if err == nil {
			size, current, err = jf.state(s.path)
		}
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("locking the session journal %s: %w", s.path, err)
		}
		if current {
			jf.written.Store(size)
			jf.synced = size
			return jf, nil
		}
		_ = f.Close()
	}
	return nil, fmt.Errorf("opening the session journal %s: replaced again and again while opening it", s.path)
}

// load reads the whole journal into the index (replacing what it held).
// With locked (the caller holds the lock) it starts a new journal and cuts
// a torn tail; without, it leaves both to a later catch-up under the lock
// and reports whether it read the journal.
func (s *FileStore) load(locked bool) (bool, error) {
	size, current, err := s.jf.state(s.path)
	if err != nil {
		return false, fmt.Errorf("session: reading the journal %s: %w", s.path, err)
	}
	if locked && !current {
		// Another process compacted it since open opened it, before the
		// lock: what is written from now on goes to the file at the path.
		return true, s.reopenLocked()
	}
	hdr := make([]byte, min(size, int64(journalHdrLen)))
	if _, err := s.jf.f.ReadAt(hdr, 0); err != nil {
		return false, fmt.Errorf("session: reading the journal %s: %w", s.path, err)
	}
	partial, err := checkHeader(hdr)
	if err != nil {
		return false, fmt.Errorf("session: reading the journal %s: %w", s.path, err)
	}
	if partial {
		if !locked {
			return false, nil
		}
		// New, or a crash while creating it: nothing in it yet.
		if err := s.writeHeaderLocked(); err != nil {
			return false, err
		}
		s.setIndex(nil)
		return true, nil
	}
	last, end, err := loadJournal(s.jf.f, size)
	if !locked && errors.Is(err, io.EOF) {
		// Another process cut a tail off it (under the lock) since the
		// fstat: leave the reading to the load under the lock.
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("session: reading the journal %s: %w", s.path, err)
	}
	if end < size && locked {
		if err := s.truncateLocked(end, size); err != nil {
			return false, err
		}
	}
	if !locked {
		s.openTail = nil
		for _, l := range last {
			if s.openTail == nil || l.at > s.openTail.at {
				l.sess = nil
				s.openTail = &l
			}
		}
	}
	s.end = end
	s.jf.written.Store(end)
	s.jf.syncMu.Lock()
	s.jf.synced = max(s.jf.synced, end) // synced by whoever wrote it
	s.jf.syncMu.Unlock()
	s.setIndex(last)
	return true, nil
}

// writeHeaderLocked starts the journal afresh: the header alone, synced,
// and the directory synced as the file may have just been created.
func (s *FileStore) writeHeaderLocked() error {
	err := s.jf.f.Truncate(0)
	if err == nil {
		_, err = s.jf.f.WriteAt(journalHeader(), 0)
	}
	if err == nil {
		err = s.jf.control(datasync)
	}
	if err == nil {
		err = atomicfile.SyncDir(s.dir)
	}
	if err != nil {
		return fmt.Errorf("session: creating the journal %s: %w", s.path, err)
	}
	s.end = int64(journalHdrLen)
	s.jf.written.Store(s.end)
	s.jf.syncMu.Lock()
	s.jf.synced = s.end
	s.jf.syncMu.Unlock()
	return nil
}

// truncateLocked cuts the journal at end, the end of its last good record,
// dropping a torn or corrupt tail (a write a crash interrupted) so that
// new records do not follow it, and syncs it.
//
// A crash can only tear the last write, so a tail that cannot be one (see
// suspiciousTail) is damage to the middle of the journal, which may have
// taken later records with it, revocations among them. That tail is kept
// beside the journal (journal.cut-<time>, 0600) before the cut, and logged
// at error, so an operator can see what was lost and revoke again.
func (s *FileStore) truncateLocked(end, size int64) error {
	if kept, good, err := s.keepSuspiciousTail(end, size); err != nil {
		return fmt.Errorf("session: keeping the journal's damaged end before cutting it: %w", err)
	} else if kept != "" {
		s.opts.Logger.Error("the session journal is damaged in its middle, not just torn at its end by a crash: dropping everything after its first bad record, which may include revocations (revoke the users concerned again)",
			"file", s.path, "offset", end, "bytes", size-end, "good_records_after_it", good, "kept_in", kept)
	} else {
		s.opts.Logger.Warn("dropping the torn end of the session journal, a write an earlier crash interrupted",
			"file", s.path, "offset", end, "bytes", size-end)
	}
	if err := s.jf.f.Truncate(end); err != nil {
		return fmt.Errorf("session: truncating the journal's torn end: %w", err)
	}
	if err := s.jf.control(datasync); err != nil {
		return fmt.Errorf("session: truncating the journal's torn end: %w", &os.PathError{Op: "fdatasync", Path: s.path, Err: err})
	}
	return nil
}

// maxTornTail is the longest tail one interrupted write of a single record
// leaves.
const maxTornTail = int64(recordHdrLen + maxPayload)

// keepSuspiciousTail copies the journal's bytes from end to size into a
// new file beside it, synced, when suspiciousTail says they cannot be a
// torn write, and returns its path and the good records found in them.
func (s *FileStore) keepSuspiciousTail(end, size int64) (kept string, good int, err error) {
	suspicious, good, err := suspiciousTail(s.jf.f, end, size)
	if err != nil || !suspicious {
		return "", good, err
	}
	kept = filepath.Join(s.dir, fmt.Sprintf("%s.cut-%d", journalName, s.opts.Now().UnixNano()))
	f, err := openJournalFile(kept, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return "", good, err
	}
	_, err = io.Copy(f, io.NewSectionReader(s.jf.f, end, size-end))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = atomicfile.SyncDir(s.dir)
	}
	if err != nil {
		_ = os.Remove(kept)
		return "", good, err
	}
	return kept, good, nil
}

// suspiciousTail reports whether the bytes of r from end (where a bad or
// short record starts) to size cannot be the remains of one interrupted
// write: longer than one record can be, or holding a good record after
// the bad one. It counts the good records it finds at any offset after
// end. (A large batch, PutMany or DeleteByUser, torn by a crash can also
// look like this: then keeping it aside costs a file and a log line.)
func suspiciousTail(r io.ReaderAt, end, size int64) (bool, int, error) {
	n := size - end
	if n > maxTornTail {
		return true, 0, nil
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, end); err != nil {
		return false, 0, err
	}
	// Only where a record could start is its CRC computed, and those
	// bytes are bounded, so a tail crafted to look like records
	// everywhere costs at most crcBudget: then it is suspicious anyway.
	const crcBudget = 64 << 20
	good, checked := 0, 0
	for off := 1; off+recordHdrLen <= len(buf); off++ {
		rest := buf[off:]
		l, op := int(binary.LittleEndian.Uint32(rest[:4])), rest[8]
		if !(op == opDelete && l == 0) && !(op == opPut && l > 0 && l <= len(rest)-recordHdrLen && rest[recordHdrLen] == '{') {
			continue
		}
		if checked += recordHdrLen + l; checked > crcBudget {
			return true, good, nil
		}
		if scanRecords(rest[:recordHdrLen+l], func(record) {}) > 0 {
			good++
		}
	}
	return good > 0, good, nil
}

// setIndex makes the index hold the live sessions of last (each key's
// last record, as loadJournal returns them), and nothing else.
func (s *FileStore) setIndex(last []loaded) {
	now := s.opts.Now()
	var live int64
	loaded, expired := 0, 0
	keep := map[Key]bool{} // only for a reload, over a full index
	reload := s.Len() > 0
	for _, l := range last {
		switch {
		case l.why != "":
			// Only the key and a fixed reason: never content.
			s.opts.Logger.Error("skipping unreadable session in the journal", "key", l.key.String(), "reason", l.why)
		case l.sess == nil: // a delete
		case s.isUnwritten(l.key): // deleted here; its record failed to append
		case l.sess.Expired(now):
			expired++
		default:
			l.sess.recordSize = l.size
			s.index.Store(l.key, l.sess)
			live += l.size
			loaded++
			if reload {
				keep[l.key] = true
			}
		}
	}
	if reload {
		s.index.Range(func(k, _ any) bool {
			if !keep[k.(Key)] {
				s.index.Delete(k)
			}
			return true
		})
	}
	s.live = live
	s.opts.Logger.Debug("loaded sessions", "dir", s.dir, "live", loaded, "expired", expired)
}

// migrateLocked imports the session files of the one-file-per-session
// layout: those whose key has no record in the journal (a put or delete
// there is newer) and that are live are appended, and synced, before any
// file is removed, so a crash between the two leaves both, and the next
// open finds the journal's records win. Unreadable files are left (and
// logged), as the earlier layout left them, and so are sessions over the
// journal's record limit, which that layout did not have.
func (s *FileStore) migrateLocked() error {
	files, err := listSessionFiles(s.dir)
	if err != nil {
		return fmt.Errorf("session: listing session files in %s: %w", s.dir, err)
	}
	if len(files) == 0 {
		return nil
	}
	inJournal := map[Key]bool{}
	if _, err := scanFile(s.jf.f, int64(journalHdrLen), s.end, func(rec record, _ int64) { inJournal[rec.key] = true }); err != nil {
		return fmt.Errorf("session: reading the journal %s: %w", s.path, err)
	}
	now := s.opts.Now()
	var (
		mu               sync.Mutex
		recs             []record
		sessions         []*Session
		remove           []string
		buf              []byte
		expired, skipped int
	)
	err = scanSessionFiles(s.dir, files, true, func(key Key, p string, sess *Session, why string) error {
		mu.Lock()
		defer mu.Unlock()
		if why != "" {
			// Only the file name (a hash) and a fixed reason: never content.
			s.opts.Logger.Error("skipping unreadable session file", "file", p, "reason", why)
			skipped++
			return nil
		}
		if ok := inJournal[key]; ok || sess.Expired(now) {
			if !ok {
				expired++
			}
			remove = append(remove, p)
			return nil
		}
		payload, err := encodePut(sess)
		if err != nil {
			// The earlier layout had no size limit: the file is left, as an
			// unreadable one is, rather than stop every start. A fixed
			// reason: an encoding error can quote content.
			s.opts.Logger.Error("skipping session file", "file", p, "reason", "over the journal's record size limit, or not encodable")
			skipped++
			return nil
		}
		start := len(buf)
		buf = appendRecord(buf, opPut, key, payload)
		recs = append(recs, record{op: opPut, key: key, payload: buf[start+recordHdrLen:]})
		sess.intern()
		sessions = append(sessions, sess)
		remove = append(remove, p)
		return nil
	})
	if err != nil {
		return fmt.Errorf("session: importing session files: %w", err)
	}
	if len(buf) > 0 {
		if _, err := s.appendLocked(buf); err != nil {
			return fmt.Errorf("session: importing session files: %w", err)
		}
		if err := s.jf.syncTo(s.end); err != nil {
			s.setBrokenLocked(err)
			return fmt.Errorf("session: importing session files: %w", err)
		}
		for i, rec := range recs {
			s.applyLocked(rec, sessions[i])
		}
	}
	for _, p := range remove {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("session: removing an imported session file: %w", err)
		}
	}
	if err := atomicfile.SyncDir(s.dir); err != nil {
		return fmt.Errorf("session: importing session files: %w", err)
	}
	s.opts.Logger.Info("moved session files into the session journal", "dir", s.dir,
		"imported", len(recs), "expired", expired, "superseded", len(remove)-len(recs)-expired, "skipped", skipped)
	return nil
}

// lockJournal takes the store's mutex and the journal's lock, and catches
// up with what other processes appended. unlockJournal releases both.
func (s *FileStore) lockJournal() error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.broken != nil {
		err := s.broken
		s.mu.Unlock()
		return fmt.Errorf("session: the journal is unusable after an earlier failure: %w", err)
	}
	if err := s.jf.lock(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("session: locking the journal %s: %w", s.path, err)
	}
	if err := s.catchUpLocked(); err != nil {
		s.unlockJournal()
		return err
	}
	return nil
}

func (s *FileStore) unlockJournal() {
	_ = s.jf.unlock() // fails only for a closed file, whose lock is gone
	s.mu.Unlock()
}

// catchUpLocked applies the records other processes appended since this
// store last read or wrote the journal, follows a compaction to the new
// file, and truncates a torn tail a dead writer left (the caller holds the
// lock, so no live writer is mid-record). It costs an fstat and a stat
// when nothing changed.
func (s *FileStore) catchUpLocked() error {
	size, current, err := s.jf.state(s.path)
	if err != nil {
		return fmt.Errorf("session: checking the journal %s: %w", s.path, err)
	}
	switch {
	case !current:
		return s.reopenLocked()
	case size == s.end:
		return nil
	case size < s.end: // cut under us (by hand): read it all again
		_, err := s.load(true)
		return err
	}
	now := s.opts.Now()
	end, err := scanFile(s.jf.f, s.end, size, func(rec record, _ int64) {
		var sess *Session
		if rec.op == opPut {
			var why string
			if sess, why = decodeSessionFile(rec.payload, nil); why != "" {
				s.opts.Logger.Error("skipping unreadable session in the journal", "key", rec.key.String(), "reason", why)
			} else if sess.Expired(now) || s.isUnwritten(rec.key) {
				sess = nil
			} else {
				sess.intern()
			}
		}
		s.applyLocked(rec, sess)
	})
	if err != nil {
		return fmt.Errorf("session: reading the journal %s: %w", s.path, err)
	}
	if end < size {
		if err := s.truncateLocked(end, size); err != nil {
			return err
		}
	}
	s.end = end
	if s.jf.written.Load() < end {
		s.jf.written.Store(end)
	}
	return nil
}

// reopenLocked follows a compaction (by another process) that replaced
// the journal: it opens and locks the file now at the path, releases the
// old one and reads the new one into the index.
func (s *FileStore) reopenLocked() error {
	jf, err := s.openAndLock()
	if err != nil {
		return fmt.Errorf("session: following a replaced journal: %w", err)
	}
	old := s.jf
	// Whoever replaced it copied, and synced, all of it first.
	old.superseded()
	_ = old.f.Close() // releases its lock
	s.jf = jf
	_, err = s.load(true)
	return err
}

// catchUp is the periodic catch-up: an fstat and a stat of the path
// while nothing changed, the journal's lock only when something did. A
// broken store catches up too: it refuses writes but still answers Get,
// so it must still see revocations by other processes.
func (s *FileStore) catchUp() error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil
	}
	size, current, err := s.jf.state(s.path)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("session: checking the journal %s: %w", s.path, err)
	}
	if current && size == s.end {
		s.mu.Unlock()
		return nil
	}
	if err := s.jf.lock(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("session: locking the journal %s: %w", s.path, err)
	}
	err = s.catchUpLocked()
	s.unlockJournal()
	return err
}

// writeJournal writes to the journal: WriteAt, or a failure injected by a
// test.
var writeJournal = (*os.File).WriteAt

// appendLocked writes recs (whole records) at the end of the journal and
// returns the new end. A failed write is cut off again, so the next record
// does not follow a partial one; if even that fails the store is broken.
func (s *FileStore) appendLocked(recs []byte) (int64, error) {
	if _, err := writeJournal(s.jf.f, recs, s.end); err != nil {
		if terr := s.jf.f.Truncate(s.end); terr != nil {
			s.setBrokenLocked(terr)
		}
		return 0, fmt.Errorf("session: appending to the journal: %w", err)
	}
	s.end += int64(len(recs))
	s.jf.written.Store(s.end)
	return s.end, nil
}

// applyLocked makes the index agree with rec: sess is its decoded session,
// nil for a delete (or a put not to keep).
func (s *FileStore) applyLocked(rec record, sess *Session) {
	if v, ok := s.index.Load(rec.key); ok {
		s.live -= v.(*Session).recordSize
	}
	if sess == nil {
		s.index.Delete(rec.key)
		return
	}
	sess.recordSize = rec.size()
	s.index.Store(rec.key, sess)
	s.live += sess.recordSize
}

// isUnwritten reports whether key's delete failed to append (see
// FileStore.unwritten).
func (s *FileStore) isUnwritten(key Key) bool {
	_, ok := s.unwritten[key]
	return ok
}

// garbageLarge reports whether the journal is worth compacting: over
// compactMinBytes and more than twice what its live sessions take.
func (s *FileStore) garbageLarge() bool {
	return s.end > compactMinBytes && s.end > 2*(s.live+int64(journalHdrLen))
}

// commit syncs the journal up to end (after an append that wrote the
// record ending there) and, when the sync fails, marks the store broken.
func (s *FileStore) commit(jf *jfile, end int64) error {
	if err := jf.syncTo(end); err != nil {
		s.mu.Lock()
		if s.broken == nil && s.jf == jf {
			s.setBrokenLocked(err)
		}
		s.mu.Unlock()
		return fmt.Errorf("session: syncing the journal: %w", err)
	}
	return nil
}

// syncStoreDir makes a compaction's rename durable: atomicfile.SyncDir,
// or a failure injected by a test.
var syncStoreDir = atomicfile.SyncDir

// compactLocked rewrites the journal with only the live sessions, to
// journal.tmp (0600, created exclusively, never through a link), synced,
// renamed over the journal, and the directory synced; expired sessions
// leave the index. Other processes find the old file unlinked and follow.
func (s *FileStore) compactLocked() error {
	tmpPath := filepath.Join(s.dir, journalTemp)
	f, err := openJournalFile(tmpPath, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	if errors.Is(err, fs.ErrExist) {
		// A crashed compaction's: we hold the lock, nobody writes it.
		_ = os.Remove(tmpPath)
		f, err = openJournalFile(tmpPath, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	}
	if err != nil {
		return fmt.Errorf("session: compacting the journal: %w", err)
	}
	renamed := false
	defer func() {
		if !renamed {
			_ = f.Close()
			_ = os.Remove(tmpPath)
		}
	}()
	jf, err := newJFile(f, 0)
	if err == nil {
		err = jf.lock() // taken before the file is at the path
	}
	if err != nil {
		return fmt.Errorf("session: compacting the journal: %w", err)
	}
	now := s.opts.Now()
	w := bufio.NewWriterSize(f, 256<<10)
	_, _ = w.Write(journalHeader())
	size := int64(journalHdrLen)
	var expired []Key
	var resized []Entry // sessions whose record changed size
	var rec []byte
	var encErr error
	s.index.Range(func(k, v any) bool {
		key, sess := k.(Key), v.(*Session)
		if sess.Expired(now) {
			expired = append(expired, key)
			return true
		}
		payload, err := encodePut(sess)
		if err != nil {
			encErr = err
			return false
		}
		rec = appendRecord(rec[:0], opPut, key, payload)
		_, _ = w.Write(rec) // a bufio.Writer keeps its first error for Flush
		if n := int64(len(rec)); n != sess.recordSize {
			c := sess.Clone() // stored sessions are not changed in place
			c.recordSize = n
			resized = append(resized, Entry{key, c})
		}
		size += int64(len(rec))
		return true
	})
	if encErr != nil {
		return fmt.Errorf("session: compacting the journal: %w", encErr)
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return fmt.Errorf("session: compacting the journal: writing %s: %w", tmpPath, err)
	}
	if err := os.Rename(tmpPath, s.path); err != nil {
		return fmt.Errorf("session: compacting the journal: %w", err)
	}
	renamed = true
	// Until the directory sync, a crash may bring the old journal back, and
	// writers still waiting to sync it must not return before it is durable.
	// After a failed one they get an error from the closed file.
	dirErr := syncStoreDir(s.dir)
	old := s.jf
	if dirErr == nil {
		old.superseded()
	}
	_ = old.f.Close() // releases the old file's lock; waiters follow to jf
	jf.written.Store(size)
	jf.synced = size
	s.jf, s.end = jf, size
	s.live = size - int64(journalHdrLen)
	for _, k := range expired {
		s.index.Delete(k)
	}
	for _, e := range resized {
		s.index.Store(e.Key, e.Session)
	}
	if dirErr != nil {
		// The old journal may come back at the path after a crash,
		// without what is appended to the new one from now on.
		s.setBrokenLocked(dirErr)
		return fmt.Errorf("session: compacting the journal: %w", dirErr)
	}
	s.unwritten = nil // the new journal holds none of their sessions
	s.opts.Logger.Debug("compacted the session journal", "file", s.path, "bytes", size)
	return nil
}

// ReadFileSessions reads the sessions of the file store under dir (the
// directory OpenFileStore takes) without opening it: it writes, removes and
// locks nothing, so a daemon may be using the directory meanwhile. It reads
// the journal up to its first torn or bad record (one being appended
// meanwhile ends it) and the session files of the earlier layout whose key
// the journal has no record of. It calls fn, in no particular order and one
// call at a time, with each session live at now and its key, stopping at
// fn's first error, which it returns. It counts the expired sessions it
// passed over and the records and files it could not read (logged to log,
// by key or file name and reason only; nil means hclog.Default()); a file
// removed while it reads is neither. A missing <dir>/sessions/ is an error.
func ReadFileSessions(dir string, now time.Time, log hclog.Logger, fn func(Key, *Session) error) (expired, unreadable int, err error) {
	if log == nil {
		log = hclog.Default()
	}
	sdir := filepath.Join(dir, "sessions")
	files, err := listSessionFiles(sdir)
	if err != nil {
		return 0, 0, fmt.Errorf("session: reading sessions from %s: %w", sdir, err)
	}
	last, err := readJournal(filepath.Join(sdir, journalName))
	if err != nil {
		return 0, 0, fmt.Errorf("session: reading sessions from %s: %w", sdir, err)
	}
	inJournal := make(map[Key]bool, len(last))
	for _, l := range last {
		inJournal[l.key] = true
		switch {
		case l.op != opPut:
		case l.why != "":
			log.Error("skipping unreadable session in the journal", "key", l.key.String(), "reason", l.why)
			unreadable++
		case l.sess.Expired(now):
			expired++
		default:
			if err := fn(l.key, l.sess); err != nil {
				return expired, unreadable, err
			}
		}
	}
	// The journal's records win over files (a crash between importing the
	// files and removing them leaves both).
	legacy := files[:0]
	for _, f := range files {
		if !inJournal[f.key] {
			legacy = append(legacy, f)
		}
	}
	// The files are decoded in parallel; fn is called under mu, so it
	// need not be safe for concurrent use.
	var mu sync.Mutex
	var fnErr error
	_ = scanSessionFiles(sdir, legacy, true, func(key Key, p string, sess *Session, why string) error {
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

// readJournal reads each key's last record in the journal at path,
// read-only and unlocked, up to its first torn or bad record; a missing or
// empty journal has none.
func readJournal(path string) ([]loaded, error) {
	f, err := openJournalFile(path, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: atomicfile.ErrNotRegular}
	}
	hdr := make([]byte, min(fi.Size(), int64(journalHdrLen)))
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return nil, err
	}
	if partial, err := checkHeader(hdr); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	} else if partial {
		return nil, nil
	}
	// A reader past the end (the file cut meanwhile) ends the scan.
	last, _, err := loadJournal(f, fi.Size())
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return last, nil
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

// Replace implements Store: like Put, but only over a live session. It
// sees deletions by other processes: it catches up with the journal first.
func (s *FileStore) Replace(ctx context.Context, key Key, sess *Session) error {
	return s.store(ctx, key, sess, true)
}

// store appends a put of sess under key; existing requires a live session
// there, checked under the same lock as Delete takes.
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
	payload, err := encodePut(sess)
	if err != nil {
		return err
	}
	rec := appendRecord(make([]byte, 0, recordHdrLen+len(payload)), opPut, key, payload)
	sess.intern()
	if err := s.lockJournal(); err != nil {
		return err
	}
	if existing {
		if v, ok := s.index.Load(key); !ok || v.(*Session).Expired(s.opts.Now()) {
			s.unlockJournal()
			return ErrNotFound
		}
	}
	end, err := s.appendLocked(rec)
	if err != nil {
		s.unlockJournal()
		return fmt.Errorf("session: storing session %s: %w", key, err)
	}
	s.applyLocked(record{op: opPut, key: key, payload: rec[recordHdrLen:]}, sess)
	delete(s.unwritten, key)
	jf := s.jf
	s.compactIfLargeLocked()
	s.unlockJournal()
	return s.commit(jf, end)
}

// compactIfLargeLocked compacts the journal after a write when the garbage
// has grown large (between sweeps), so that it stays bounded.
func (s *FileStore) compactIfLargeLocked() {
	if !s.garbageLarge() {
		return
	}
	if err := s.compactLocked(); err != nil {
		s.opts.Logger.Warn("compacting the session journal", "error", err)
	}
}

// Delete implements Store.
func (s *FileStore) Delete(_ context.Context, key Key) error {
	if s.closed.Load() {
		return ErrClosed
	}
	_, err := s.deleteKeys(func() []Key { return []Key{key} })
	return err
}

// deleteKeys appends, in one write and one sync, a delete of each key
// keys returns (called once caught up with the journal) that the journal
// holds a session for, and returns how many. The keys leave the index
// even if the disk fails; unwritten keeps them for a retry.
func (s *FileStore) deleteKeys(keys func() []Key) (int, error) {
	if err := s.lockJournal(); err != nil {
		return 0, err
	}
	var recs []byte
	var del []Key
	var users []string
	for _, k := range keys() {
		user, ok := s.unwritten[k]
		if v, live := s.index.Load(k); live {
			user, ok = v.(*Session).UserEntityRef, true
		}
		if ok {
			recs = appendRecord(recs, opDelete, k, nil)
			del = append(del, k)
			users = append(users, user)
		}
	}
	if len(recs) == 0 {
		s.unlockJournal()
		return 0, nil
	}
	end, err := s.appendLocked(recs)
	if err != nil && s.unwritten == nil {
		s.unwritten = map[Key]string{}
	}
	for i, k := range del {
		s.applyLocked(record{op: opDelete, key: k}, nil)
		if err != nil {
			s.unwritten[k] = users[i]
		} else {
			delete(s.unwritten, k)
		}
	}
	if err != nil {
		s.unlockJournal()
		return 0, fmt.Errorf("session: deleting %d sessions: %w", len(del), err)
	}
	jf := s.jf
	s.compactIfLargeLocked()
	s.unlockJournal()
	if err := s.commit(jf, end); err != nil {
		return 0, err
	}
	return len(del), nil
}

// Sweep implements Store: it removes the expired sessions from memory
// (replay skips them on disk) and compacts the journal when most of it is
// garbage. It returns ctx's error when ctx is cancelled.
func (s *FileStore) Sweep(ctx context.Context) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("session: sweeping: %w", err)
	}
	if err := s.lockJournal(); err != nil {
		return 0, err
	}
	defer s.unlockJournal()
	now := s.opts.Now()
	removed := 0
	s.index.Range(func(k, v any) bool {
		if v.(*Session).Expired(now) {
			s.applyLocked(record{op: opDelete, key: k.(Key)}, nil)
			removed++
		}
		return true
	})
	if s.garbageLarge() {
		if err := s.compactLocked(); err != nil {
			return removed, fmt.Errorf("session: sweeping: %w", err)
		}
	}
	return removed, nil
}

// ListByUser implements Store from the in-memory index, caught up with
// the journal first.
func (s *FileStore) ListByUser(_ context.Context, user string) ([]Entry, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if err := s.catchUp(); err != nil {
		return nil, err
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

// DeleteByUser implements Store: each of the user's sessions, expired ones
// too, in one append and one sync.
func (s *FileStore) DeleteByUser(_ context.Context, user string) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	return s.deleteKeys(func() []Key {
		var keys []Key
		s.index.Range(func(k, v any) bool {
			if v.(*Session).UserEntityRef == user {
				keys = append(keys, k.(Key))
			}
			return true
		})
		for k, u := range s.unwritten {
			if u == user {
				keys = append(keys, k)
			}
		}
		return keys
	})
}

// PutMany stores entries as Put would, with one append and one sync for
// all of them: for seeding a store (benchmarks, imports).
func (s *FileStore) PutMany(ctx context.Context, entries []Entry) error {
	if s.closed.Load() {
		return ErrClosed
	}
	now := s.opts.Now()
	var recs []byte
	applied := make([]record, 0, len(entries))
	sessions := make([]*Session, 0, len(entries))
	for _, e := range entries {
		if err := validate(e.Session, now); err != nil {
			return err
		}
		sess := e.Session.Clone()
		payload, err := encodePut(sess)
		if err != nil {
			return err
		}
		start := len(recs)
		recs = appendRecord(recs, opPut, e.Key, payload)
		applied = append(applied, record{op: opPut, key: e.Key, payload: recs[start+recordHdrLen:]})
		sess.intern()
		sessions = append(sessions, sess)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("session: storing: %w", err)
	}
	if len(recs) == 0 {
		return nil
	}
	if err := s.lockJournal(); err != nil {
		return err
	}
	end, err := s.appendLocked(recs)
	if err != nil {
		s.unlockJournal()
		return fmt.Errorf("session: storing %d sessions: %w", len(entries), err)
	}
	for i, rec := range applied {
		s.applyLocked(rec, sessions[i])
		delete(s.unwritten, rec.key)
	}
	jf := s.jf
	s.unlockJournal()
	return s.commit(jf, end)
}

// Err returns why the store refuses every write for good, or nil while it
// takes them. After a failed sync of its journal the store cannot tell
// which of its records reached the disk (Linux may drop the dirty pages
// and mark them clean), so it stops writing until it is opened again,
// which replays what the disk holds. The daemon's /readyz reports it, so
// an orchestrator restarts the daemon rather than leave it answering
// every sign-in with an error.
func (s *FileStore) Err() error {
	if p := s.brokenErr.Load(); p != nil {
		return fmt.Errorf("session: the journal is unusable after an earlier failure: %w", *p)
	}
	return nil
}

// setBrokenLocked marks the store broken by err; s.mu is held.
func (s *FileStore) setBrokenLocked(err error) {
	s.broken = err
	s.brokenErr.Store(&err)
}

// Len returns the number of sessions in the index, expired or not.
func (s *FileStore) Len() int {
	n := 0
	s.index.Range(func(any, any) bool { n++; return true })
	return n
}

// Close stops the background work, waits for it and closes the journal.
// The store cannot be used afterwards. Close is idempotent.
func (s *FileStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.jf.f.Close(); err != nil {
		return fmt.Errorf("session: closing the journal: %w", err)
	}
	return nil
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
