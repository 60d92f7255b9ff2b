package pluginhost

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A verified plugin binary, and how it is run.
//
// Checking a file and then executing it by path races with whoever can
// replace or rewrite the file in between, and even a descriptor opened on
// the file only pins the inode, whose content its owner can still rewrite in
// place. So the daemon executes a copy it owns: verifyBinary copies the file
// into a memfd (an anonymous in-memory file), seals the memfd against any
// further change (F_SEAL_WRITE, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_SEAL),
// computes the SHA-256 digest over the sealed memfd, and compares it with the
// configured one. The plugin is then executed as /proc/self/fd/N, N a
// read-only descriptor on that memfd: the kernel resolves the magic link to
// the memfd itself, so the bytes that run are exactly the bytes hashed, now
// and on every restart, whatever happens to the file on disk afterwards.
// (The read-only reopen matters: execve refuses, with ETXTBSY, a file that
// has a writable descriptor open.)
//
// A script (a file that starts with "#!") runs the same way, except that the
// memfd is handed to the child as descriptor 3 and executed as
// /proc/self/fd/3: the kernel starts the interpreter named on the #! line
// with that path, and the interpreter must still be able to open it, which it
// could not if the descriptor were close-on-exec. The interpreter itself is
// not verified; the script's bytes are.
//
// The cost is the binary's size in memory for the daemon's lifetime and one
// copy at start; plugins see /proc/self/exe as "/memfd:spectroauth-plugin-…",
// so a plugin cannot locate files next to its own binary through it.
//
// With a content store (Options.StoreDir; the daemon's is plugin-store in
// storage.path), the sealed memfd's bytes are also written to the store
// once the plugins are up, and later starts execute the store's copy of a
// binary whose source file has not changed since, through a read-only
// descriptor the same way, without copying or hashing: see store_linux.go
// for the checks and why they are as strong as this. A plugin run from the
// store sees its entry as /proc/self/exe.

// verifiedBinary is a plugin binary whose digest matched, held in a sealed
// memfd.
type verifiedBinary struct {
	// path is the absolute path the binary was read from: argv[0] of the
	// plugin and what messages name.
	path string
	// digest is the hex SHA-256 digest of the bytes held.
	digest string
	// mem is a read-only descriptor on the sealed memfd.
	mem *os.File
	// fd is mem's descriptor number.
	fd int
	// script reports that the binary starts with "#!".
	script bool
	// refs counts the plugins that run it (see binaries); the last close
	// releases the memfd.
	refs atomic.Int32
	// stored is set when mem is the daemon's stored copy (store_linux.go)
	// rather than a memfd.
	stored *storedCopy
	// source is, for a binary verified from its source file into a memfd
	// for a host with a content store, the identity the source had while it
	// was copied: what the store records of it.
	source *fileIdentity
}

// scriptFD is the descriptor a script's memfd has in its child.
const scriptFD = 3

// execPath is the path that executes the memfd, in the child.
func (b *verifiedBinary) execPath() string {
	if b.script {
		return "/proc/self/fd/" + strconv.Itoa(scriptFD)
	}
	return "/proc/self/fd/" + strconv.Itoa(b.fd)
}

// extraFiles are the descriptors the child needs beyond stdio: a script's
// memfd, as scriptFD.
func (b *verifiedBinary) extraFiles() []*os.File {
	if b.script {
		return []*os.File{b.mem}
	}
	return nil
}

// share counts one more plugin that runs b.
func (b *verifiedBinary) share(n int32) { b.refs.Add(n) }

// close releases the memfd (or the stored copy) once no other plugin runs
// it.
func (b *verifiedBinary) close() error {
	if b.refs.Add(-1) > 0 {
		return nil
	}
	err := b.mem.Close()
	if b.stored != nil {
		b.stored.store.release(b.digest)
	}
	return err
}

// rulePath is, for a binary run from the store, a path that names its
// entry (the descriptor's magic link), for the plugin's Landlock rule; ""
// for a memfd, which Landlock does not restrict.
func (b *verifiedBinary) rulePath() string {
	if b.stored == nil {
		return ""
	}
	return "/proc/self/fd/" + strconv.Itoa(b.fd)
}

// intact returns an error if b is a stored copy that changed since it was
// checked: a restart must not run it then. A memfd is sealed.
func (b *verifiedBinary) intact() error {
	if b.stored == nil {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(b.fd, &st); err != nil {
		return err
	}
	if identityOf(&st) != b.stored.identity {
		return fmt.Errorf("the daemon's stored copy of plugin binary %s changed since it was checked (now mode %04o, uid %d, %d bytes, %d links)",
			b.path, st.Mode&0o7777, st.Uid, st.Size, st.Nlink)
	}
	return nil
}

// testHookVerified, when set by a test, runs after a binary has been
// verified and before it is first executed.
var testHookVerified func(path string)

// verifyBinary checks the plugin binary at path (absolute) as openChecked
// does, copies it into a sealed memfd and checks the memfd's SHA-256 digest
// against wantHex. With a store, a source whose identity the store
// recorded for wantHex runs from the store's copy instead, with no copy and
// no hash (store_linux.go).
func verifyBinary(name, path, wantHex string, store *contentStore) (_ *verifiedBinary, err error) {
	src, err := openChecked(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	var before unix.Stat_t
	if store != nil {
		if err := unix.Fstat(int(src.Fd()), &before); err != nil {
			return nil, fmt.Errorf("plugin binary: %w", err)
		}
		if b := store.lookup(path, strings.ToLower(wantHex), &before); b != nil {
			if testHookVerified != nil {
				testHookVerified(path)
			}
			return b, nil
		}
	}

	mfd, err := memfdCreate("spectroauth-plugin-" + name)
	if err != nil {
		return nil, fmt.Errorf("creating a memfd for plugin binary %s: %w", path, err)
	}
	rw := os.NewFile(uintptr(mfd), "memfd:"+name)
	defer rw.Close() // the read-only descriptor below outlives it
	n, err := copyToMemfd(rw, src, maxBinarySize+1)
	if err != nil {
		return nil, fmt.Errorf("copying plugin binary %s: %w", path, err)
	}
	if n > maxBinarySize {
		return nil, fmt.Errorf("plugin binary %s grew beyond %d bytes while being read", path, maxBinarySize)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(mfd), unix.F_ADD_SEALS, seals|unix.F_SEAL_EXEC); err != nil {
		// F_SEAL_EXEC (which keeps the mode bits) is Linux 6.3+; the
		// content seals are what matter.
		if _, err := unix.FcntlInt(uintptr(mfd), unix.F_ADD_SEALS, seals); err != nil {
			return nil, fmt.Errorf("sealing the memfd of plugin binary %s: %w", path, err)
		}
	}
	ro, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(mfd), os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("reopening the memfd of plugin binary %s read-only (is /proc mounted?): %w", path, err)
	}
	defer func() {
		if err != nil {
			ro.Close()
		}
	}()
	if testHookHashed != nil {
		testHookHashed(path)
	}
	sum, script, err := hashSealed(ro, n)
	if err != nil {
		return nil, fmt.Errorf("hashing plugin binary %s: %w", path, err)
	}
	got := hex.EncodeToString(sum[:])
	if !strings.EqualFold(got, wantHex) {
		return nil, &digestMismatchError{path: path, got: got, want: wantHex}
	}
	b := &verifiedBinary{path: path, digest: got, mem: ro, fd: int(ro.Fd()), script: script}
	b.refs.Store(1)
	if store != nil {
		// What the store records of the source is what it was before the
		// copy; a source that changed meanwhile is not recorded, and is
		// verified again next time.
		var after unix.Stat_t
		if unix.Fstat(int(src.Fd()), &after) == nil && identityOf(&after) == identityOf(&before) {
			id := identityOf(&before)
			b.source = &id
		}
	}
	if testHookVerified != nil {
		testHookVerified(path)
	}
	return b, nil
}

// copyToMemfd copies src into dst, at most limit bytes, with sendfile: the
// kernel copies from the page cache into the memfd's pages directly, which
// for a plugin binary of 19 MB took 13 ms instead of the 17 ms of a copy
// through a user-space buffer. Should sendfile refuse the source (a file
// system that cannot splice), it copies through a buffer.
func copyToMemfd(dst, src *os.File, limit int64) (int64, error) {
	var n int64
	out, in := int(dst.Fd()), int(src.Fd())
	for n < limit {
		m, err := unix.Sendfile(out, in, nil, int(min(limit-n, 1<<30)))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case n == 0 && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS)):
			// Nothing copied yet: copy the usual way.
			return io.CopyBuffer(struct{ io.Writer }{dst}, io.LimitReader(src, limit), make([]byte, 1<<20))
		case err != nil:
			return n, err
		case m == 0:
			return n, nil
		}
		n += int64(m)
	}
	return n, nil
}

// hashSealed returns the SHA-256 digest of the sealed memfd mem, which must
// hold n bytes, and whether its content starts with "#!". It hashes every
// byte of the memfd as it is now, read through a read-only mapping (no copy).
func hashSealed(mem *os.File, n int64) (sum [sha256.Size]byte, script bool, err error) {
	fi, err := mem.Stat()
	if err != nil {
		return sum, false, err
	}
	if fi.Size() != n {
		return sum, false, fmt.Errorf("its copy holds %d bytes, %d were copied", fi.Size(), n)
	}
	if n == 0 {
		return sha256.Sum256(nil), false, nil
	}
	// MAP_POPULATE maps every page of the memfd (in memory already) at
	// once rather than one fault per few pages as the hash reads: for a
	// 20 MB binary, median CPU of map and hash 26-33 ms instead of 28-38 ms
	// on the 2-vCPU VM (15 rounds each, under load).
	data, err := unix.Mmap(int(mem.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return sum, false, err
	}
	defer unix.Munmap(data)
	return sha256.Sum256(data), bytes.HasPrefix(data, []byte("#!")), nil
}

// memfdCreate makes a memfd that may be sealed and executed. MFD_EXEC asks
// for an executable memfd explicitly where vm.memfd_noexec would otherwise
// make it non-executable; kernels before 6.3 do not know the flag.
func memfdCreate(name string) (int, error) {
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	fd, err := unix.MemfdCreate(name, flags|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate(name, flags)
	}
	return fd, err
}

// Starting plugin processes.
//
// A plugin is started with PR_SET_PDEATHSIG=SIGKILL so that the kernel kills
// it when the daemon dies, even by SIGKILL, when no deferred cleanup runs.
// The kernel sends that signal when the *thread* that forked the child
// exits, not the process; Go threads are reused for any goroutine, and a
// thread is destroyed whenever a goroutine that locked it exits without
// unlocking (some libraries do that). So every plugin process is forked from
// a thread locked to a goroutine that waits until the plugin has exited
// (startSandboxed, which also restricts that thread).

// startRetrying starts the command build returns with start, with the
// parent-death signal set, trying again while the binary is busy.
func startRetrying(build func() *exec.Cmd, start func(*exec.Cmd) error) (*exec.Cmd, error) {
	for attempt := 0; ; attempt++ {
		cmd := build()
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
		err := start(cmd)
		// ETXTBSY: a child forked elsewhere in the daemon while a memfd was
		// still writable holds a copy of that descriptor until it executes
		// its own program, which takes microseconds.
		if !errors.Is(err, syscall.ETXTBSY) || attempt == 20 {
			return cmd, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// processGroupAttr makes a plugin process the leader of a process group of
// its own.
func processGroupAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// killGroup kills the process group that process pid leads: the plugin and
// the processes it started (that did not leave the group). The caller makes
// sure that pid has not been reaped, so that the group is still the
// plugin's.
func killGroup(pid int) { _ = unix.Kill(-pid, unix.SIGKILL) }

// waitExited returns once process pid, a child, has exited, without reaping
// it; false if it could not wait for it.
func waitExited(pid int) bool {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err == nil
		}
	}
}
