package pluginhost

import "golang.org/x/sys/unix"

// The attribute filter's ABI on arm64 (see seccomp_linux.go), which has no
// x32-like variant.
const (
	auditArch = unix.AUDIT_ARCH_AARCH64
	x32Bit    = 0
)

// attrSyscalls are the arm64 system calls that change a file's mode, owner
// or extended attributes. arm64 has only the *at forms of chmod and chown.
var attrSyscalls = []uint32{
	unix.SYS_FCHMOD, unix.SYS_FCHMODAT, unix.SYS_FCHMODAT2,
	unix.SYS_FCHOWN, unix.SYS_FCHOWNAT,
	unix.SYS_SETXATTR, unix.SYS_LSETXATTR, unix.SYS_FSETXATTR, unix.SYS_SETXATTRAT,
	unix.SYS_REMOVEXATTR, unix.SYS_LREMOVEXATTR, unix.SYS_FREMOVEXATTR, unix.SYS_REMOVEXATTRAT,
}
