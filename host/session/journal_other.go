//go:build !unix

package session

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/windows"
)

// openJournalFile opens a journal file with flag, mode 0600 when it
// creates it. (No O_NOFOLLOW here: the store's directory is private.)
func openJournalFile(path string, flag int) (*os.File, error) {
	return os.OpenFile(path, flag, 0o600)
}

// lock is a no-op outside Unix: the store's mutex orders the writers of
// one process, and two processes must not write one store's directory at
// once there (run `spectroauthd sessions` with the daemon stopped).
// Compaction renames over the open journal, which Windows refuses: there
// it fails (logged) and the journal only grows; a Windows port needs to
// close the journal around the rename.
func (jf *jfile) lock() error { return nil }

// unlock releases lock.
func (jf *jfile) unlock() error { return nil }

// state is the file's size and whether it is still the journal at path.
func (jf *jfile) state(path string) (size int64, current bool, err error) {
	fi, err := jf.f.Stat()
	if err != nil {
		return 0, false, err
	}
	pfi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fi.Size(), false, nil
	} else if err != nil {
		return 0, false, err
	}
	return fi.Size(), os.SameFile(fi, pfi), nil
}

// datasync syncs a journal (FlushFileBuffers).
func datasync(fd int) error {
	return windows.FlushFileBuffers(windows.Handle(fd))
}
