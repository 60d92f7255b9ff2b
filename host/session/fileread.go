package session

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/spectroauth/spectroauth/host/internal/atomicfile"
)

// A daemon is not ready until its file store has read every session file,
// so reading them is on the start path: with thousands of sessions, what
// each file costs beyond its decoding adds up. os.ReadFile registers every
// file with the runtime poller (two extra system calls and a lock, useless
// for regular files) and allocates a fresh buffer; fileReader does neither,
// and scanSessionFiles spreads the reading and decoding over the CPUs.

// errNotRegular is the reason given for a session file that is neither a
// regular file nor a directory (a FIFO, a device): reading it could block
// the daemon's start, so it is not read.
var errNotRegular = errors.New("not a regular file")

// fileReader reads whole files with plain system calls into a buffer it
// reuses. It is not safe for concurrent use: give each goroutine its own.
type fileReader struct {
	buf []byte
}

// read returns p's content, valid until the next read. Its errors are
// *fs.PathError, as os.ReadFile's are, so the same reasons get logged.
func (r *fileReader) read(p string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO must not wait for a writer; it makes no
	// difference to regular files. Symbolic links are followed, as
	// os.ReadFile does.
	fd, err := ignoringEINTR(func() (int, error) {
		return unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
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
		return nil, &fs.PathError{Op: "read", Path: p, Err: errNotRegular}
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
		m, err := ignoringEINTR(func() (int, error) { return unix.Pread(fd, buf[n:], int64(n)) })
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

func ignoringEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if err != unix.EINTR {
			return n, err
		}
	}
}

// sessionFileName is a session file found in the store's directory.
type sessionFileName struct {
	key  Key
	name string
}

// listSessionFiles lists the session files in sdir: not directories, not
// temporary files, and only names keyFromFileName accepts. The order is
// the directory's (not sorted: nothing depends on it).
func listSessionFiles(sdir string) ([]sessionFileName, error) {
	d, err := os.Open(sdir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	files := make([]sessionFileName, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || atomicfile.IsTemp(name) {
			continue
		}
		if key, ok := keyFromFileName(name); ok {
			files = append(files, sessionFileName{key, name})
		}
	}
	return files, nil
}

// filesPerWorker is the fewest files worth another goroutine.
const filesPerWorker = 64

// scanSessionFiles reads and decodes files, listed in sdir, with up to
// GOMAXPROCS goroutines and calls visit, from those goroutines and so
// concurrently, once per file with its key, its path and either its session
// or a reason safe to log why it could not be read (see decodeSessionFile).
// With skipGone, a file removed since the listing is not visited. The first
// error visit returns stops the scan and is what scanSessionFiles returns.
func scanSessionFiles(sdir string, files []sessionFileName, skipGone bool, visit func(k Key, p string, sess *Session, why string) error) error {
	var (
		next    atomic.Int64
		stop    atomic.Bool
		errOnce sync.Once
		first   error
	)
	work := func() {
		var r fileReader
		for !stop.Load() {
			i := int(next.Add(1) - 1)
			if i >= len(files) {
				return
			}
			p := filepath.Join(sdir, files[i].name)
			data, rerr := r.read(p)
			if skipGone && errors.Is(rerr, fs.ErrNotExist) {
				continue
			}
			sess, why := decodeSessionFile(data, rerr)
			if err := visit(files[i].key, p, sess, why); err != nil {
				errOnce.Do(func() { first = err })
				stop.Store(true)
				return
			}
		}
	}
	workers := min(runtime.GOMAXPROCS(0), (len(files)+filesPerWorker-1)/filesPerWorker)
	if workers <= 1 {
		work()
		return first
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(work)
	}
	wg.Wait()
	return first
}
