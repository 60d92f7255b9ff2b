package session

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// jfile is an open journal file and the state of its group commit.
type jfile struct {
	f  *os.File
	rc syscall.RawConn
	// written is the offset up to which records have been written to the
	// file (by this process, or read back from others); it only grows.
	written atomic.Int64

	// syncMu orders the syncs: a writer takes it, and syncs only when no
	// sync that started after its write (synced) covers its record.
	syncMu sync.Mutex
	synced int64 // offset a completed sync covers
	failed error // a sync failed: see syncTo
	syncs  int   // syncTo's system calls, for tests
}

func newJFile(f *os.File, size int64) (*jfile, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	jf := &jfile{f: f, rc: rc, synced: size}
	jf.written.Store(size)
	return jf, nil
}

// control runs fn with the descriptor; the os.File keeps it open meanwhile,
// so a Close by another goroutine cannot hand its number to another file.
func (jf *jfile) control(fn func(fd int) error) error {
	var ferr error
	if err := jf.rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// syncTo returns once the file's content up to end is on disk. Writers
// share syncs (group commit): one whose record a sync that started after
// its write has covered returns without a system call of its own. There is
// no syncing goroutine; the writers take turns.
//
// After a failed sync the file is unusable for good: Linux may have
// dropped the dirty pages and marked them clean, so a later sync that
// succeeds says nothing about them (and replay of a file with a hole would
// stop at it). Every later syncTo fails with the first error.
func (jf *jfile) syncTo(end int64) error {
	jf.syncMu.Lock()
	defer jf.syncMu.Unlock()
	if jf.failed != nil {
		return jf.failed
	}
	if jf.synced >= end {
		return nil
	}
	target := jf.written.Load()
	jf.syncs++
	if err := jf.control(syncJournal); err != nil {
		jf.failed = &os.PathError{Op: "fdatasync", Path: jf.f.Name(), Err: err}
		return jf.failed
	}
	jf.synced = target
	return nil
}

// syncJournal is how a journal's records are made durable: datasync, or
// a failure injected by a test.
var syncJournal = datasync

// superseded records that everything written to the file is durable
// elsewhere (a compacted journal synced before it replaced this one), so
// that writers still waiting to sync it need not, before it is closed.
func (jf *jfile) superseded() {
	jf.syncMu.Lock()
	defer jf.syncMu.Unlock()
	if w := jf.written.Load(); jf.failed == nil && jf.synced < w {
		jf.synced = w
	}
}
