package session

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/spectroauth/spectroauth/host/internal/atomicfile"
)

// Session files are the store's layout before the journal: one file per
// session, <hex key>.json. The first start after an upgrade imports them
// (migrateLocked) and ReadFileSessions still reads them, on the start path
// with thousands of sessions, where what each file costs beyond its
// decoding adds up. atomicfile.Reader reads them without the runtime
// poller and into a reused buffer, and scanSessionFiles spreads the
// reading and decoding over the CPUs.

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
		var r atomicfile.Reader
		for !stop.Load() {
			i := int(next.Add(1) - 1)
			if i >= len(files) {
				return
			}
			p := filepath.Join(sdir, files[i].name)
			data, rerr := r.ReadFile(p)
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
	inParallel((len(files)+filesPerWorker-1)/filesPerWorker, work)
	return first
}

// inParallel runs work on min(n, GOMAXPROCS) goroutines and waits for
// them; on the caller's goroutine when that is one. Each work takes its
// share of a common queue until it is empty.
func inParallel(n int, work func()) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		work()
		return
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(work)
	}
	wg.Wait()
}
