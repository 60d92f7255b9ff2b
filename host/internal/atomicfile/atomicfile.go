// Package atomicfile writes files so that a reader, or the process after a
// crash, sees either the old content or the new content, never a mix or a
// truncated file.
//
// The dance is: write a temporary file in the same directory, fsync it,
// rename it over the target, then fsync the directory so the rename itself
// is durable. Temporary files carry a recognisable name (see IsTemp) so a
// store that finds them at start-up, left behind by a crash between create
// and rename, can remove them with CleanTemp.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// tempMarker is part of every temporary file name this package creates:
// ".<target name>.tmp-<random>". The leading dot keeps them out of the way of
// readers that skip dot files; IsTemp recognises them.
const tempMarker = ".tmp-"

// WriteFile atomically replaces path with data. The file ends up with mode
// perm (not altered by the umask). The temporary file is created in the same
// directory as path, so the final rename never crosses file systems. On any
// error the temporary file is removed and path is left untouched.
func WriteFile(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+tempMarker+"*")
	if err != nil {
		return fmt.Errorf("atomicfile: creating temporary file for %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close() // may already be closed; the error is not interesting then
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("atomicfile: setting mode of temporary file for %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("atomicfile: writing temporary file for %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("atomicfile: syncing temporary file for %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("atomicfile: closing temporary file for %s: %w", path, err)
	}
	// rename(2) itself, not os.Rename: os.Rename first lstats the target to
	// refuse replacing a directory, a check that only matters when the
	// source is a directory too (rename(2) replaces an empty directory only
	// by a directory, and fails with EISDIR here). tmp is always a regular
	// file, so the lstat is a wasted directory lookup on every write.
	if err = syscall.Rename(tmp, path); err != nil {
		err = &os.LinkError{Op: "rename", Old: tmp, New: path, Err: err}
		return fmt.Errorf("atomicfile: renaming temporary file over %s: %w", path, err)
	}
	if err = SyncDir(dir); err != nil {
		// The new content is in place; only its durability is in doubt.
		// Report it, but the temporary file no longer exists to remove.
		return err
	}
	return nil
}

// Remove deletes path and makes the deletion durable by syncing its
// directory. A path that does not exist is not an error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("atomicfile: removing %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making earlier creations, renames and removals
// of its entries durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: opening directory %s to sync it: %w", dir, err)
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil {
		return fmt.Errorf("atomicfile: syncing directory %s: %w", dir, serr)
	}
	if cerr != nil {
		return fmt.Errorf("atomicfile: closing directory %s: %w", dir, cerr)
	}
	return nil
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
