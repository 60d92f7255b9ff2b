package pluginhost

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Plugin isolation.
//
// A plugin runs as the daemon's user, so without more it could read what
// the daemon can: its memory and environment through /proc/<pid> (the
// client secrets), the signing and flow keys, the session journal; and, as
// their owner, make those files readable by another user. Five things keep
// it out:
//
//   - ProtectProcess makes the daemon non-dumpable: /proc/<pid>/mem,
//     environ, fd and maps then belong to root, and ptrace is refused.
//   - Each plugin process runs in an empty working directory of its own
//     (also its TMPDIR and go-plugin's socket directory), removed when the
//     process has exited.
//   - Each plugin process runs with no_new_privs and without any
//     capability: a daemon run as root would otherwise hand it
//     CAP_SYS_PTRACE and CAP_DAC_OVERRIDE, which read /proc/<pid>/environ
//     of a non-dumpable process and any file.
//   - Where the kernel has Landlock, each plugin process is restricted to
//     reading (and executing) the system's program and library directories,
//     the certificate and name-resolution files under /etc, /proc, its own
//     binary (and its own entry of the content store, when it runs from
//     there: that file, not the store's directory) and the configured
//     `readPaths`, and to writing its working
//     directory and /dev/null; it may not signal or reach abstract sockets
//     outside its domain (ABI 6+). Anything else, among it the daemon's data
//     directory and configuration, is out of its reach.
//   - Each plugin process runs under a seccomp filter that makes chmod,
//     chown, setxattr and their relatives fail with EPERM
//     (seccomp_linux.go), with or without Landlock, which does not govern
//     attributes: the plugin owns the daemon's files as much as the daemon
//     does, and could otherwise chmod a signing key or the session journal
//     0644, or give it an ACL, for another local user to read. Creating a
//     file with a mode is not a chmod, and still works. Where the kernel has
//     no seccomp filters (EINVAL), Start says so at warn and plugins run
//     without it; any other failure to install it fails the plugin's start.
//
// Landlock and seccomp filters restrict the thread that asks (the filter is
// installed without TSYNC), and what that thread starts, and never loosen.
// So the daemon does not restrict itself: each sandboxed plugin process is
// forked from an OS thread of its own, which restricts itself (with
// no_new_privs) and then forks the plugin, and which lives,
// locked to a goroutine that waits, until the plugin has exited: the plugin's
// parent-death signal follows that thread. The Go runtime never runs another
// goroutine on a locked thread, creates new threads from a clean one rather
// than from a locked thread, and destroys a locked thread whose goroutine
// returns (or, the main thread, parks it for good), so the restriction never
// leaks into the daemon.
//
// The Landlock system calls are made here through x/sys/unix rather than
// with github.com/landlock-lsm/go-landlock: its Restrict functions restrict
// the whole process, which the daemon must not, and every one of its
// packages imports libcap's psx, which with cgo wraps pthread_create in the
// whole daemon. Restricting one thread takes three calls.

// ProtectProcess makes the calling process non-dumpable
// (prctl PR_SET_DUMPABLE 0), so that another process of the same user, a
// plugin among them, can neither read its memory or environment through
// /proc nor attach to it with ptrace. It also disables core dumps. Start
// calls it; the daemon calls it first thing.
func ProtectProcess() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("making the process non-dumpable: %w", err)
	}
	return nil
}

// systemReadDirs are the directories every plugin may read and execute
// from: programs, libraries, certificates, time zones. Missing ones are
// skipped.
var systemReadDirs = []string{
	"/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin",
	"/etc/ssl", "/etc/pki", "/etc/ca-certificates", "/etc/ld.so.conf.d",
	"/proc", "/sys/fs/cgroup", "/sys/devices/system/cpu",
}

// systemReadFiles are the files every plugin may read: name resolution,
// the time zone, the dynamic linker's cache.
var systemReadFiles = []string{
	"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf",
	"/etc/localtime", "/etc/ld.so.cache", "/etc/ld.so.conf",
	"/dev/urandom", "/dev/random",
}

// Landlock access rights (fs), by the ABI version that brought them.
const (
	llExec  = unix.LANDLOCK_ACCESS_FS_EXECUTE
	llRead  = llExec | unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
	llV1    = 1<<13 - 1 // execute, write, read, read_dir, remove and make_*
	llWrite = llV1 | unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	// llFileRights are the rights a rule on a file (not a directory) may
	// hold.
	llFileRights = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
		unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
)

// landlockHandled returns the file system rights and IPC scopes that ABI
// version abi can restrict: everything it knows, so that what no rule
// allows is denied.
func landlockHandled(abi int) (fs, scoped uint64) {
	fs = llV1
	if abi >= 2 {
		fs |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		fs |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 5 {
		fs |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	if abi >= 6 {
		scoped = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL
	}
	if abi >= 9 {
		fs |= unix.LANDLOCK_ACCESS_FS_RESOLVE_UNIX
	}
	return fs, scoped
}

// landlockABI returns the Landlock ABI version of the kernel, or why there is
// none.
func landlockABI() (int, error) {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	switch {
	case errno == unix.ENOSYS:
		return 0, errors.New("the kernel was built without Landlock")
	case errno == unix.EOPNOTSUPP:
		return 0, errors.New("Landlock is disabled in this kernel (add landlock to its lsm= boot parameter)")
	case errno != 0:
		return 0, fmt.Errorf("asking the kernel for its Landlock version: %w", errno)
	}
	return int(v), nil
}

// sandbox is what a plugin process may reach.
type sandbox struct {
	workDir   string   // its working directory, read and written
	binary    string   // its binary's path, read
	readPaths []string // the configured readPaths, read and executed
	// storedCopy, when set, names the store entry the plugin runs from
	// (a /proc/self/fd magic link of the daemon's descriptor on it), read
	// and executed: that one file, never the store's directory.
	storedCopy string
	// fixedAttrs runs the plugin under the attribute filter
	// (seccomp_linux.go): it may change no file's mode, owner or ACL.
	fixedAttrs bool
}

// pathRule is one Landlock rule: access beneath path.
type pathRule struct {
	path     string
	access   uint64
	optional bool // a missing path is skipped
}

// rules are the Landlock rules of s.
func (s sandbox) rules() []pathRule {
	var rules []pathRule
	for _, p := range systemReadDirs {
		rules = append(rules, pathRule{p, llRead, true})
	}
	for _, p := range systemReadFiles {
		rules = append(rules, pathRule{p, llRead, true})
	}
	rules = append(rules,
		pathRule{"/dev/null", llWrite, false},
		pathRule{s.binary, llRead, false},
		pathRule{s.workDir, llWrite, false},
	)
	if s.storedCopy != "" {
		rules = append(rules, pathRule{s.storedCopy, llRead, false})
	}
	for _, p := range s.readPaths {
		rules = append(rules, pathRule{p, llRead, false})
	}
	return rules
}

// rulesetFD builds the Landlock ruleset of s for ABI version abi (at least
// 1). The caller closes fd.
func (s sandbox) rulesetFD(abi int) (fd int, err error) {
	handledFS, scoped := landlockHandled(abi)
	attr := unix.LandlockRulesetAttr{Handled_access_fs: handledFS, Scoped: scoped}
	// The kernel reads as much of the attribute as the size says; the
	// fields it does not know must then be left out.
	size := unsafe.Offsetof(attr.Handled_access_net)
	if scoped != 0 {
		size = unsafe.Offsetof(attr.Quiet_access_fs)
	}
	r, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), size, 0)
	if errno != 0 {
		return -1, fmt.Errorf("creating a Landlock ruleset: %w", errno)
	}
	fd = int(r)
	for _, rule := range s.rules() {
		if err := addPathRule(fd, rule, handledFS); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

// addPathRule adds rule to the ruleset fd, limited to the handled rights
// and, on a file, to the rights a file can have.
func addPathRule(fd int, rule pathRule, handled uint64) error {
	pfd, err := unix.Open(rule.path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		if rule.optional && errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("opening %s for the plugin's Landlock rules: %w", rule.path, err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return fmt.Errorf("inspecting %s for the plugin's Landlock rules: %w", rule.path, err)
	}
	access := rule.access & handled
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		access &= llFileRights
	}
	attr := unix.LandlockPathBeneathAttr{Allowed_access: access, Parent_fd: int32(pfd)}
	_, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(fd), unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&attr)), 0, 0, 0)
	if errno != 0 {
		return fmt.Errorf("adding %s to the plugin's Landlock rules: %w", rule.path, errno)
	}
	return nil
}

// startSandboxed starts the command build returns, with the parent-death
// signal set, from an OS thread of its own that lives until exited is
// closed. That thread first sets no_new_privs, drops every capability (the
// plugin gets none, even when the daemon runs as root), installs the
// attribute filter when s.fixedAttrs is set, and, when abi (the kernel's
// Landlock ABI version) is at least 1, restricts itself to s; the plugin
// inherits all of it.
func startSandboxed(build func() *exec.Cmd, s sandbox, abi int, exited <-chan struct{}) (*exec.Cmd, error) {
	fd := -1
	if abi >= 1 {
		var err error
		if fd, err = s.rulesetFD(abi); err != nil {
			return nil, err
		}
		defer unix.Close(fd)
	}
	type result struct {
		cmd *exec.Cmd
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, and no other
		// goroutine ever runs on it restricted.
		runtime.LockOSThread()
		if err := restrictThread(fd, s.fixedAttrs); err != nil {
			done <- result{err: err}
			return
		}
		cmd, err := startRetrying(build, (*exec.Cmd).Start)
		done <- result{cmd, err}
		if err == nil {
			<-exited
		}
	}()
	r := <-done
	return r.cmd, r.err
}

// restrictThread restricts the calling OS thread, which must be locked and
// never unlocked: no_new_privs, no capabilities, the attribute filter when
// fixedAttrs is set, and the Landlock ruleset fd unless it is -1. Each of
// these applies to the calling thread only (and what it starts).
func restrictThread(fd int, fixedAttrs bool) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("setting no_new_privs: %w", err)
	}
	if err := dropCapabilities(); err != nil {
		return err
	}
	if fixedAttrs {
		// After no_new_privs, which an unprivileged thread needs for it.
		if err := filterAttrs(); err != nil {
			return err
		}
	}
	if fd >= 0 {
		if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(fd), 0, 0); errno != 0 {
			return fmt.Errorf("enforcing the Landlock ruleset: %w", errno)
		}
	}
	return nil
}

// dropCapabilities empties the calling thread's capability bounding,
// ambient, inheritable, permitted and effective sets, so that what it
// executes runs without any capability, root or not. A thread without
// CAP_SETPCAP (a daemon not run as root) has nothing to drop: execve gives a
// non-root program no capability anyway, and no_new_privs keeps file
// capabilities and set-user-ID bits from granting any.
func dropCapabilities() error {
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if errors.Is(err, unix.EPERM) {
				break
			}
			if !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
			}
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clearing the ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var none [2]unix.CapUserData
	if err := unix.Capset(&hdr, &none[0]); err != nil {
		return fmt.Errorf("dropping capabilities: %w", err)
	}
	return nil
}
