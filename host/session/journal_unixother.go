//go:build unix && !linux

package session

import "golang.org/x/sys/unix"

// datasync syncs a journal: fsync(2), where x/sys offers no fdatasync.
func datasync(fd int) error {
	return retryEINTR(func() error { return unix.Fsync(fd) })
}
