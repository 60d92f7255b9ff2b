//go:build unix

package atomicfile

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// ReadFile returns p's content, valid until the next call. Its errors are
// *fs.PathError, as os.ReadFile's are. It reads with plain system calls:
// os.ReadFile registers every file with the runtime poller (two system
// calls and a lock, useless for a regular file) and allocates a fresh
// buffer, which adds up over the thousands of small files a store reads at
// start. Only regular files are read: opening a FIFO or a device could block
// the caller, so they give ErrNotRegular.
func (r *Reader) ReadFile(p string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO must not wait for a writer; it makes no
	// difference to regular files. Symbolic links are followed, as
	// os.ReadFile does.
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		// What reading it would have said.
		return nil, &fs.PathError{Op: "read", Path: p, Err: unix.EISDIR}
	default:
		return nil, &fs.PathError{Op: "read", Path: p, Err: ErrNotRegular}
	}
	// One byte more than the size, so a file that grew is seen to.
	if need := int(st.Size) + 1; cap(r.buf) < need {
		r.buf = make([]byte, need+need/4)
	}
	buf := r.buf[:cap(r.buf)]
	n := 0
	for {
		if n == len(buf) { // it grew since the fstat
			buf = append(buf, make([]byte, len(buf))...)
			buf = buf[:cap(buf)]
		}
		var m int
		err := ignoringEINTR(func() (err error) {
			m, err = unix.Pread(fd, buf[n:], int64(n))
			return err
		})
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: p, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	r.buf = buf
	return buf[:n], nil
}
