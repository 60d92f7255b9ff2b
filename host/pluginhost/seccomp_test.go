//go:build linux

package pluginhost

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// runBPF runs prog on a struct seccomp_data of nr and arch, with the few
// instructions the attribute filter uses, and returns what it returns.
func runBPF(t *testing.T, prog []unix.SockFilter, nr, arch uint32) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.NativeEndian.PutUint32(data[seccompDataNr:], nr)
	binary.NativeEndian.PutUint32(data[seccompDataArch:], arch)
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			a = binary.NativeEndian.Uint32(data[in.K:])
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			pc += int(in.Jf)
			if a == in.K {
				pc += int(in.Jt) - int(in.Jf)
			}
		case unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			pc += int(in.Jf)
			if a >= in.K {
				pc += int(in.Jt) - int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("instruction %d: code %#x is not one the filter uses", pc, in.Code)
		}
	}
	t.Fatalf("the program ran off its end (nr %d, arch %#x)", nr, arch)
	return 0
}

// TestAttrFilterProgram runs the attribute filter on the calls it refuses,
// on some it must allow, and on calls of other ABIs.
func TestAttrFilterProgram(t *testing.T) {
	if attrFilter == nil {
		t.Skip("no attribute filter for " + runtime.GOARCH)
	}
	const (
		allow = unix.SECCOMP_RET_ALLOW
		eperm = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		kill  = unix.SECCOMP_RET_KILL_PROCESS
	)
	type call struct {
		name     string
		nr, arch uint32
		want     uint32
	}
	var calls []call
	for _, nr := range attrSyscalls {
		calls = append(calls, call{"listed", nr, auditArch, eperm})
	}
	calls = append(calls,
		call{"openat (creates with a mode)", unix.SYS_OPENAT, auditArch, allow},
		call{"mkdirat", unix.SYS_MKDIRAT, auditArch, allow},
		call{"read", unix.SYS_READ, auditArch, allow},
		call{"getxattr", unix.SYS_GETXATTR, auditArch, allow},
		call{"utimensat", unix.SYS_UTIMENSAT, auditArch, allow},
		call{"exit_group", unix.SYS_EXIT_GROUP, auditArch, allow},
		call{"number 0", 0, auditArch, allow},
		call{"i386 chmod", 15, unix.AUDIT_ARCH_I386, kill},
		call{"i386 read", 3, unix.AUDIT_ARCH_I386, kill},
		call{"AArch32 chmod", 15, unix.AUDIT_ARCH_ARM, kill},
		call{"arch 0", unix.SYS_READ, 0, kill},
	)
	if x32Bit != 0 {
		calls = append(calls,
			call{"x32 chmod", x32Bit | unix.SYS_FCHMODAT, auditArch, kill},
			call{"x32 read", x32Bit | unix.SYS_READ, auditArch, kill},
		)
	}
	for _, c := range calls {
		if got := runBPF(t, attrFilter, c.nr, c.arch); got != c.want {
			t.Errorf("%s (nr %d, arch %#x): the filter returns %#x, want %#x", c.name, c.nr, c.arch, got, c.want)
		}
	}
}

// TestAttrFilterRefusesEachCall installs the attribute filter on a thread of
// the test (as restrictThread does for a plugin) and makes each listed
// system call there, with arguments that would fail otherwise (EBADF,
// EFAULT): the kernel answers EPERM to every one. Creating a file and a
// directory with a mode still works there, and the test's other threads are
// not filtered.
func TestAttrFilterRefusesEachCall(t *testing.T) {
	if err := seccompAvailable(); err != nil {
		t.Skipf("no seccomp filters here: %v", err)
	}
	dir := t.TempDir()
	problems := make(chan []string, 1)
	go func() {
		// Never unlocked: the filtered thread ends with this goroutine.
		runtime.LockOSThread()
		if err := restrictThread(-1, true); err != nil {
			problems <- []string{err.Error()}
			return
		}
		var p []string
		for _, nr := range attrSyscalls {
			bad := ^uintptr(0)
			if _, _, errno := unix.Syscall6(uintptr(nr), bad, bad, bad, bad, bad, bad); errno != unix.EPERM {
				p = append(p, fmt.Sprintf("system call %d: errno %d (%v), want EPERM", nr, errno, errno))
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "created"), []byte("x"), 0o600); err != nil {
			p = append(p, "creating a file with mode 0600: "+err.Error())
		}
		if err := os.Mkdir(filepath.Join(dir, "made"), 0o700); err != nil {
			p = append(p, "making a directory with mode 0700: "+err.Error())
		}
		problems <- p
	}()
	for _, p := range <-problems {
		t.Error(p)
	}
	created := filepath.Join(dir, "created")
	if fi, err := os.Stat(created); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the filtered thread's file: %v, %v; want mode 0600", fi, err)
	}
	if err := os.Chmod(created, 0o640); err != nil {
		t.Errorf("chmod on the test's own thread: %v; the filter leaked", err)
	}
}
