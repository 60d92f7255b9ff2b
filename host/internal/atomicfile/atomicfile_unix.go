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
