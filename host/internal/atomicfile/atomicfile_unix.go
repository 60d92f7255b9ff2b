//go:build unix

package atomicfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// WriteFile atomically replaces path with data. The file ends up with mode
// perm (not altered by the umask). The temporary file is created in the same
// directory as path, so the final rename never crosses file systems. On any
// error the temporary file is removed and path is left untouched.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	dfd, err := openDir(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: creating temporary file for %s: %w", path, err)
	}
	defer unix.Close(dfd)
	if err := writeIn(dfd, dir, base, data, perm); err != nil {
		return err
	}
	return syncFD(dfd, dir)
}

// writeIn writes data to a temporary file in the directory open as dfd
// (whose path is dir, for messages) and renames it over name, which must
// be a name in that directory, not a path. It does not sync the directory.
// On error the temporary file is gone and name is untouched.
func writeIn(dfd int, dir, name string, data []byte, perm os.FileMode) (err error) {
	path := filepath.Join(dir, name)
	tmp, fd, err := createTemp(dfd, dir, name, perm)
	if err != nil {
		return fmt.Errorf("atomicfile: creating temporary file for %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			if fd >= 0 {
				_ = unix.Close(fd)
			}
			_ = unix.Unlinkat(dfd, tmp, 0)
		}
	}()
	// open(2) applied the umask to perm; only when the umask took bits of
	// perm away (or is unknown) is a chmod needed.
	if mode := unixMode(perm); needsChmod(mode) {
		if err = ignoringEINTR(func() error { return unix.Fchmod(fd, mode) }); err != nil {
			return fmt.Errorf("atomicfile: setting mode of temporary file for %s: %w", path, pathErr("chmod", dir, tmp, err))
		}
	}
	if err = writeAll(fd, data); err != nil {
		return fmt.Errorf("atomicfile: writing temporary file for %s: %w", path, pathErr("write", dir, tmp, err))
	}
	if err = ignoringEINTR(func() error { return unix.Fsync(fd) }); err != nil {
		return fmt.Errorf("atomicfile: syncing temporary file for %s: %w", path, pathErr("sync", dir, tmp, err))
	}
	// close(2) is not retried on EINTR: Linux has closed the descriptor
	// whatever it answers.
	cerr := unix.Close(fd)
	fd = -1
	if err = cerr; err != nil {
		return fmt.Errorf("atomicfile: closing temporary file for %s: %w", path, pathErr("close", dir, tmp, err))
	}
	// rename(2) replaces an empty directory only by a directory, and fails
	// with EISDIR here: a regular file never replaces a directory.
	if err = ignoringEINTR(func() error { return unix.Renameat(dfd, tmp, dfd, name) }); err != nil {
		err = &os.LinkError{Op: "rename", Old: filepath.Join(dir, tmp), New: path, Err: err}
		return fmt.Errorf("atomicfile: renaming temporary file over %s: %w", path, err)
	}
	return nil
}

// createTemp creates a new temporary file for name in the directory open
// as dfd, write-only, with mode perm less the umask, and returns its name
// and descriptor. O_EXCL makes it ours alone: an existing name is retried
// with another random suffix.
func createTemp(dfd int, dir, name string, perm os.FileMode) (string, int, error) {
	prefix := "." + name + tempMarker
	for range 100 {
		tmp := prefix + strconv.FormatUint(rand.Uint64(), 36)
		var fd int
		err := ignoringEINTR(func() (err error) {
			fd, err = unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, uint32(perm.Perm()))
			return err
		})
		if err == nil {
			return tmp, fd, nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return "", -1, pathErr("open", dir, tmp, err)
		}
	}
	return "", -1, &os.PathError{Op: "open", Path: filepath.Join(dir, prefix+"*"), Err: fs.ErrExist}
}

// writeAll writes all of data to fd, as many write(2) calls as it takes.
func writeAll(fd int, data []byte) error {
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.EIO // a regular file never takes nothing; do not spin
		}
		data = data[n:]
	}
	return nil
}

// SyncDir fsyncs a directory, making earlier creations, renames and removals
// of its entries durable.
func SyncDir(dir string) error {
	fd, err := openDir(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: opening directory %s to sync it: %w", dir, err)
	}
	serr := syncFD(fd, dir)
	cerr := unix.Close(fd)
	if serr != nil {
		return serr
	}
	if cerr != nil {
		return fmt.Errorf("atomicfile: closing directory %s: %w", dir, &os.PathError{Op: "close", Path: dir, Err: cerr})
	}
	return nil
}

// openDir opens dir for reading, which fsync(2) of a directory needs.
// O_DIRECTORY refuses anything else.
func openDir(dir string) (int, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

// syncFD fsyncs the directory open as fd.
func syncFD(fd int, dir string) error {
	if err := ignoringEINTR(func() error { return unix.Fsync(fd) }); err != nil {
		return fmt.Errorf("atomicfile: syncing directory %s: %w", dir, &os.PathError{Op: "sync", Path: dir, Err: err})
	}
	return nil
}

// Dir is a directory held open for the atomic writes and removals of a
// store that owns it: each write's directory sync uses the open
// descriptor, and the temporary file, the rename and the sync all act on
// the same directory even while its path changes.
//
// The directory is the one opened: one renamed away keeps receiving the
// writes. One removed (it can no longer hold new entries) is opened again
// by path on the next write or removal, which fails if nothing is there.
// A Dir is safe for concurrent use.
type Dir struct {
	path string
	// mu guards fd: operations hold it for reading, so Close and a reopen
	// never close a descriptor under a system call still using it.
	mu sync.RWMutex
	fd int // -1 once closed
}

// OpenDir opens the directory at path, which must exist.
func OpenDir(path string) (*Dir, error) {
	fd, err := openDir(path)
	if err != nil {
		return nil, fmt.Errorf("atomicfile: opening directory: %w", err)
	}
	return &Dir{path: path, fd: fd}, nil
}

// Path is the path the directory was opened at.
func (d *Dir) Path() string { return d.path }

// WriteFile atomically replaces the directory's entry name with data, as
// the package's WriteFile does: name is a file name in the directory, not
// a path. The file ends up with mode perm (not altered by the umask).
func (d *Dir) WriteFile(name string, data []byte, perm os.FileMode) error {
	if err := checkName(name); err != nil {
		return err
	}
	for retried := false; ; retried = true {
		fd, err := d.with(func(fd int) error {
			if err := writeIn(fd, d.path, name, data, perm); err != nil {
				return err
			}
			return syncFD(fd, d.path)
		})
		if err == nil || retried || fd < 0 || !errors.Is(err, unix.ENOENT) {
			return err
		}
		if again, rerr := d.reopenIfRemoved(fd); rerr != nil {
			return errors.Join(err, rerr)
		} else if !again {
			return err
		}
	}
}

// Remove deletes the directory's entry name and makes the deletion
// durable. A name that does not exist is not an error.
func (d *Dir) Remove(name string) error {
	if err := d.Unlink(name); err != nil {
		return err
	}
	return d.Sync()
}

// Unlink deletes the directory's entry name without syncing the
// directory: call Sync after a batch of them. A name that does not exist
// is not an error.
func (d *Dir) Unlink(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	for retried := false; ; retried = true {
		fd, err := d.with(func(fd int) error {
			return ignoringEINTR(func() error { return unix.Unlinkat(fd, name, 0) })
		})
		switch {
		case err == nil:
			return nil
		case fd < 0:
			return err
		case !errors.Is(err, unix.ENOENT):
			return fmt.Errorf("atomicfile: removing %s: %w", filepath.Join(d.path, name), pathErr("remove", d.path, name, err))
		case retried:
			return nil
		}
		// Not there; but a removed directory has nothing, and the one
		// created again at its path may have the name.
		if again, rerr := d.reopenIfRemoved(fd); rerr != nil || !again {
			return nil // nothing at the path either
		}
	}
}

// Sync fsyncs the directory, making earlier creations, renames and
// removals of its entries durable.
func (d *Dir) Sync() error {
	_, err := d.with(func(fd int) error { return syncFD(fd, d.path) })
	return err
}

// with runs fn with the directory's descriptor, which Close and a reopen
// do not close meanwhile, and returns it (-1 when closed) and fn's error.
func (d *Dir) with(fn func(fd int) error) (int, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.fd < 0 {
		return -1, errDirClosed
	}
	return d.fd, fn(d.fd)
}

// Close closes the directory. It is idempotent; other methods fail after.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	if err != nil {
		return fmt.Errorf("atomicfile: closing directory %s: %w", d.path, &os.PathError{Op: "close", Path: d.path, Err: err})
	}
	return nil
}

// reopenIfRemoved opens the directory again by path when the one open as
// old has been removed (a create in it fails with ENOENT), so that a
// directory removed and created again receives the writes and removals,
// as it would by path. It reports whether the caller should try again.
func (d *Dir) reopenIfRemoved(old int) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd != old {
		return d.fd >= 0, nil // another caller reopened it already, or closed
	}
	var st unix.Stat_t
	if err := unix.Fstat(old, &st); err != nil || st.Nlink > 0 {
		return false, nil // still linked: the ENOENT meant something else
	}
	fd, err := openDir(d.path)
	if err != nil {
		return false, fmt.Errorf("atomicfile: opening removed directory again: %w", err)
	}
	_ = unix.Close(old)
	d.fd = fd
	return true, nil
}

// pathErr is err of op on name in dir, as os would report it.
func pathErr(op, dir, name string, err error) error {
	return &os.PathError{Op: op, Path: filepath.Join(dir, name), Err: err}
}

// ignoringEINTR retries fn while it fails with EINTR, as package os does:
// the runtime's preemption signals interrupt slow system calls.
func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// unixMode is perm as chmod(2) takes it.
func unixMode(perm os.FileMode) uint32 {
	m := uint32(perm.Perm())
	if perm&os.ModeSetuid != 0 {
		m |= unix.S_ISUID
	}
	if perm&os.ModeSetgid != 0 {
		m |= unix.S_ISGID
	}
	if perm&os.ModeSticky != 0 {
		m |= unix.S_ISVTX
	}
	return m
}

// needsChmod reports whether a file created with mode needs a chmod to
// have it: open(2) applies the umask, and ignores the set-id and sticky
// bits.
func needsChmod(mode uint32) bool {
	u := processUmask()
	return u < 0 || mode&^0o777 != 0 || mode&uint32(u) != 0
}

// processUmask is the process's umask when first asked, from
// /proc/self/status (reading it with umask(2) means changing it, a race
// with files other goroutines create), or -1 when it cannot be read.
// Daemons set their umask, if at all, before writing files; were it made
// stricter later, files would get fewer permission bits than asked, never
// more.
var processUmask = sync.OnceValue(func() int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("Umask:")); ok {
			u, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 8, 32)
			if err != nil {
				return -1
			}
			return int(u)
		}
	}
	return -1
})
