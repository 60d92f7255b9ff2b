package session

import "golang.org/x/sys/unix"

// datasync syncs a journal's data and size, not its times: fdatasync(2).
func datasync(fd int) error {
	return retryEINTR(func() error { return unix.Fdatasync(fd) })
}
