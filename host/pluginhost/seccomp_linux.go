package pluginhost

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The attribute filter.
//
// Landlock does not govern a file's attributes: a plugin, which runs as the
// daemon's user, could otherwise chmod, chown or give an ACL to any file
// that user owns (the signing keys, the session journal) and so hand it to
// another local user. Each plugin process therefore also runs under a
// seccomp filter, installed by the thread that starts it (restrictThread),
// that makes the system calls that change a file's mode, owner or extended
// attributes (POSIX ACLs are extended attributes) fail with EPERM. Creating
// a file or directory with a mode (open, mkdir) is not among them.
//
// The filter is classic BPF over struct seccomp_data, written here as data:
// two dozen instructions do not warrant a library. It knows the
// system call numbers of one architecture, the one the daemon is built for,
// so a call made through another ABI (i386 or x32 on x86-64, AArch32 on
// arm64), whose numbers differ, kills the process instead of slipping past
// the list. Plugins are native programs; nothing else loses.

// Offsets in struct seccomp_data { int nr; __u32 arch; __u64
// instruction_pointer; __u64 args[6]; }.
const (
	seccompDataNr   = 0
	seccompDataArch = 4
)

// attrFilter is the filter's program, built once for this architecture; nil
// where the daemon has no system call table (attrSyscalls) for it.
var attrFilter = buildAttrFilter(auditArch, x32Bit, attrSyscalls)

// buildAttrFilter returns the program that makes each of the system calls
// nrs of the ABI arch fail with EPERM, allows every other call of that ABI,
// and kills the process on any call of another ABI: one whose arch differs,
// or whose number has x32 (when not 0) set.
func buildAttrFilter(arch uint32, x32 uint32, nrs []uint32) []unix.SockFilter {
	if arch == 0 {
		return nil
	}
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jump := func(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
	}
	const (
		load = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
	)
	prog := []unix.SockFilter{
		// Another ABI than the one the numbers below are of: kill.
		stmt(load, seccompDataArch),
		jump(jeq, arch, 1, 0),
		stmt(ret, unix.SECCOMP_RET_KILL_PROCESS),
		stmt(load, seccompDataNr),
	}
	if x32 != 0 {
		// The x32 ABI shares x86-64's arch but sets this bit in the
		// number, and has its own numbers: kill.
		prog = append(prog,
			jump(jge, x32, 0, 1),
			stmt(ret, unix.SECCOMP_RET_KILL_PROCESS),
		)
	}
	// One of the listed calls: to the EPERM return after the ALLOW one,
	// n-i instructions ahead of the i-th test.
	for i, nr := range nrs {
		prog = append(prog, jump(jeq, nr, uint8(len(nrs)-i), 0))
	}
	return append(prog,
		// Anything else is allowed.
		stmt(ret, unix.SECCOMP_RET_ALLOW),
		// A listed call fails with EPERM, and does nothing.
		stmt(ret, unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM)),
	)
}

// setSeccompFilter installs prog (nil: a null pointer) as a seccomp filter of
// the calling thread alone (no TSYNC), through seccomp(2) or, before Linux
// 3.17, prctl(2). Without no_new_privs or CAP_SYS_ADMIN, the kernel refuses.
func setSeccompFilter(prog *unix.SockFprog) unix.Errno {
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(prog)))
	if errno == unix.ENOSYS {
		_, _, errno = unix.Syscall6(unix.SYS_PRCTL, unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(prog)), 0, 0, 0)
	}
	return errno
}

// seccompAvailable tells whether plugins can run under the attribute
// filter, or why not. It asks the kernel to install a filter from a null
// pointer: a kernel with seccomp filters fails to read it (EFAULT) and
// installs nothing; one without refuses the request itself (EINVAL). Any
// other answer is left to the real installation, which then fails the
// plugin's start.
func seccompAvailable() error {
	if attrFilter == nil {
		return errors.New("the daemon has no system call table for this architecture")
	}
	if setSeccompFilter(nil) == unix.EINVAL {
		return errors.New("the kernel was built without seccomp filters")
	}
	return nil
}

// filterAttrs installs the attribute filter on the calling thread, which
// must be locked, never unlocked, and have no_new_privs set; what it starts
// inherits the filter.
func filterAttrs() error {
	prog := unix.SockFprog{Len: uint16(len(attrFilter)), Filter: &attrFilter[0]}
	if errno := setSeccompFilter(&prog); errno != 0 {
		return fmt.Errorf("installing the seccomp filter that keeps plugins from changing file modes, owners and ACLs: %w", errno)
	}
	return nil
}
