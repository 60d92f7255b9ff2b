package pluginhost

import "golang.org/x/sys/unix"

// The attribute filter's ABI on x86-64 (see seccomp_linux.go).
const (
	auditArch = unix.AUDIT_ARCH_X86_64
	// x32Bit marks a system call of the x32 ABI.
	x32Bit = 0x40000000
)

// attrSyscalls are the x86-64 system calls that change a file's mode, owner
// or extended attributes.
var attrSyscalls = []uint32{
	unix.SYS_CHMOD, unix.SYS_FCHMOD, unix.SYS_FCHMODAT, unix.SYS_FCHMODAT2,
	unix.SYS_CHOWN, unix.SYS_FCHOWN, unix.SYS_LCHOWN, unix.SYS_FCHOWNAT,
	unix.SYS_SETXATTR, unix.SYS_LSETXATTR, unix.SYS_FSETXATTR, unix.SYS_SETXATTRAT,
	unix.SYS_REMOVEXATTR, unix.SYS_LREMOVEXATTR, unix.SYS_FREMOVEXATTR, unix.SYS_REMOVEXATTRAT,
}
