//go:build !unix

package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

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
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("atomicfile: renaming temporary file over %s: %w", path, err)
	}
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

// Dir is a directory for the atomic writes and removals of a store that
// owns it. Where there are no directory descriptors to hold, it works by
// path. A Dir is safe for concurrent use.
type Dir struct {
	path   string
	mu     sync.RWMutex
	closed bool
}

// OpenDir opens the directory at path, which must exist.
func OpenDir(path string) (*Dir, error) {
	if fi, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("atomicfile: opening directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("atomicfile: opening directory %s: not a directory", path)
	}
	return &Dir{path: path}, nil
}

// Path is the path the directory was opened at.
func (d *Dir) Path() string { return d.path }

// WriteFile atomically replaces the directory's entry name with data.
func (d *Dir) WriteFile(name string, data []byte, perm os.FileMode) error {
	return d.do(name, func(p string) error { return WriteFile(p, data, perm) })
}

// Remove deletes the directory's entry name and makes the deletion
// durable. A name that does not exist is not an error.
func (d *Dir) Remove(name string) error { return d.do(name, Remove) }

// Unlink deletes the directory's entry name without syncing the
// directory: call Sync after a batch of them. A name that does not exist
// is not an error.
func (d *Dir) Unlink(name string) error {
	return d.do(name, func(p string) error {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("atomicfile: removing %s: %w", p, err)
		}
		return nil
	})
}

// Sync fsyncs the directory.
func (d *Dir) Sync() error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return errDirClosed
	}
	return SyncDir(d.path)
}

// Close closes the directory. It is idempotent; other methods fail after.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return nil
}

func (d *Dir) do(name string, fn func(path string) error) error {
	if err := checkName(name); err != nil {
		return err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return errDirClosed
	}
	return fn(filepath.Join(d.path, name))
}
