//go:build !linux

package daemon

import "net"

// peerIsOwner relies on the socket's mode (0600) where the kernel's peer
// credentials are not read.
func peerIsOwner(*net.UnixConn) error { return nil }
