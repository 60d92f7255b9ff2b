package pluginhost

import (
	"strings"
	"sync"
)

// binaries verifies the plugin binaries of one start of a host, each binary
// once: plugins that run the same file with the same digest (two
// configurations of one binary, as in a resolver chain) share one
// verification and one sealed memfd. Every check still applies to each
// plugin's binary: the shared copy is of the same path, checked and hashed
// in the same start, and holds exactly the bytes of the digest each of them
// configures. Its methods are safe for concurrent use.
//
// With a content store, a binary the store holds runs from its stored copy
// (verifyBinary), and each binary verified from its source is held once
// more (fresh) until the store has a copy of it: stored releases them.
type binaries struct {
	store *contentStore // nil: none

	mu    sync.Mutex
	m     map[binaryKey]*pendingBinary
	fresh []*verifiedBinary
}

// binaryKey names a binary: its absolute path and the configured digest.
type binaryKey struct{ path, digest string }

// pendingBinary is one binary's verification, done or under way.
type pendingBinary struct {
	done chan struct{} // closed once bin and err are set
	bin  *verifiedBinary
	err  error
	// users counts the plugins that asked for it before it was done; the
	// memfd is shared by that many.
	users int32
}

// verify returns the verified binary at path for plugin name, verifying it
// unless another plugin of this start does or did. Each plugin that gets it
// closes it once (verifiedBinary.close).
func (bs *binaries) verify(name, path, wantHex string) (*verifiedBinary, error) {
	k := binaryKey{path, strings.ToLower(wantHex)}
	bs.mu.Lock()
	if bs.m == nil {
		bs.m = map[binaryKey]*pendingBinary{}
	}
	p, joined := bs.m[k]
	if !joined {
		p = &pendingBinary{done: make(chan struct{})}
		bs.m[k] = p
	}
	select {
	case <-p.done:
		if p.bin != nil {
			p.bin.share(1)
		}
	default:
		p.users++
	}
	bs.mu.Unlock()

	if !joined {
		bin, err := verifyBinary(name, path, wantHex, bs.store)
		bs.mu.Lock()
		p.bin, p.err = bin, err
		if bin != nil {
			bin.share(p.users - 1) // verifyBinary counted this plugin
			if bin.source != nil {
				bin.share(1)
				bs.fresh = append(bs.fresh, bin)
			}
		}
		close(p.done)
		bs.mu.Unlock()
	}
	<-p.done
	return p.bin, p.err
}

// stored copies the binaries verified from their sources into the store
// when keep is set, and releases them. Called once the plugins of the start
// are up: the copies are for the next start, and off this one's path.
func (bs *binaries) stored(keep bool) {
	bs.mu.Lock()
	fresh := bs.fresh
	bs.fresh = nil
	bs.mu.Unlock()
	for _, b := range fresh {
		if keep && bs.store != nil {
			bs.store.keep(b)
		}
		_ = b.close()
	}
}

// StoreDirName is the directory of the daemon's data directory
// (storage.path) that holds its verified copies of the plugin binaries.
const StoreDirName = "plugin-store"
