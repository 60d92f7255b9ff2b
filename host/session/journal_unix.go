//go:build unix

package session

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// openJournalFile opens a journal file with flag, never through a symbolic
// link, mode 0600 when it creates it.
func openJournalFile(path string, flag int) (*os.File, error) {
	return os.OpenFile(path, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
}

// lock takes the journal's exclusive lock, shared by every process that
// opens the store's directory (a daemon and `spectroauthd sessions`): it
// is held for appends, truncation and compaction, never across a sync.
// flock(2) locks belong to the open file, so a compaction that replaces
// the journal leaves its waiters holding the lock of a file no longer at
// the path: they find it is not (state) and open the path again.
func (jf *jfile) lock() error {
	return jf.control(func(fd int) error {
		return retryEINTR(func() error { return unix.Flock(fd, unix.LOCK_EX) })
	})
}

// unlock releases lock.
func (jf *jfile) unlock() error {
	return jf.control(func(fd int) error { return unix.Flock(fd, unix.LOCK_UN) })
}

// state is the file's size and whether it is still the journal at path
// (same device and inode): a compaction renames another file over it.
// One fstat and one stat.
func (jf *jfile) state(path string) (size int64, current bool, err error) {
	var st, pst unix.Stat_t
	if err := jf.control(func(fd int) error { return unix.Fstat(fd, &st) }); err != nil {
		return 0, false, err
	}
	if err := unix.Stat(path, &pst); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return st.Size, false, nil
		}
		return 0, false, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return st.Size, st.Dev == pst.Dev && st.Ino == pst.Ino, nil
}

func retryEINTR(fn func() error) error {
	for {
		if err := fn(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
