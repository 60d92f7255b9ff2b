// Package atomicfile writes files so that a reader, or the process after a
// crash, sees either the old content or the new content, never a mix or a
// truncated file.
//
// The dance is: write a temporary file in the same directory, fsync it,
// rename it over the target, then fsync the directory so the rename itself
// is durable. Temporary files carry a recognisable name (see IsTemp) so a
// store that finds them at start-up, left behind by a crash between create
// and rename, can remove them with CleanTemp.
//
// The dance is made of raw system calls on file descriptors rather than
// os.File: an os.File of a regular file costs a failed poller registration
// and its bookkeeping on every open.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// tempMarker is part of every temporary file name this package creates:
// ".<target name>.tmp-<random>". The leading dot keeps them out of the way of
// readers that skip dot files; IsTemp recognises them.
const tempMarker = ".tmp-"

// Remove deletes path and makes the deletion durable by syncing its
// directory. A path that does not exist is not an error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("atomicfile: removing %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	return SyncDir(dir)
}

// IsTemp reports whether a file name (not a path) is a temporary file made by
// WriteFile. Readers listing a directory should skip such names.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempMarker)
}

// CleanTemp removes the temporary files WriteFile left in dir, which only
// happens when a process died mid-write. Call it when opening a store,
// before anyone writes to dir. It returns how many files it removed.
func CleanTemp(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("atomicfile: listing %s for temporary files: %w", dir, err)
	}
	n := 0
	for _, e := range entries {
		if e.IsDir() || !IsTemp(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, fmt.Errorf("atomicfile: removing temporary file %s: %w", p, err)
		}
		n++
	}
	if n > 0 {
		if err := SyncDir(dir); err != nil {
			return n, err
		}
	}
	return n, nil
}

// MkdirPrivate creates dir (and missing parents) with mode 0700 and, when it
// already exists, tightens its mode to 0700. It is for directories that hold
// secrets.
func MkdirPrivate(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("atomicfile: creating directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("atomicfile: restricting mode of directory %s: %w", dir, err)
	}
	return nil
}
