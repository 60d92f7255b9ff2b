package daemon

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// peerIsOwner checks, with the kernel's SO_PEERCRED, that the process at
// the other end of c runs as the daemon's user.
func peerIsOwner(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	var (
		cred    *syscall.Ucred
		credErr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if credErr != nil {
		return fmt.Errorf("admin socket: reading the caller's credentials: %w", credErr)
	}
	return sameUser(int(cred.Uid), os.Getuid())
}
