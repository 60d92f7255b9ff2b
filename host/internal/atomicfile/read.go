package atomicfile

import "errors"

// Reader reads whole files into a buffer it reuses (ReadFile). It is not
// safe for concurrent use: give each goroutine its own.
type Reader struct {
	buf []byte
}

// ErrNotRegular is the error of a ReadFile of a file that is neither a
// regular file nor a directory (a FIFO, a device): reading it could block.
var ErrNotRegular = errors.New("not a regular file")
