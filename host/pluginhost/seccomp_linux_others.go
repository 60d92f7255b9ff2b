//go:build linux && !amd64 && !arm64

package pluginhost

// The daemon has no attribute filter for this architecture: plugins run
// without it, and Start says so (see seccomp_linux.go).
const (
	auditArch = 0
	x32Bit    = 0
)

var attrSyscalls []uint32
