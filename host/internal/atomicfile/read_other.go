//go:build !unix

package atomicfile

import (
	"io/fs"
	"os"
)

// ReadFile returns p's content. Its errors are *fs.PathError, as
// os.ReadFile's are; a file that is neither regular nor a directory gives
// ErrNotRegular, as on Unix.
func (r *Reader) ReadFile(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		return nil, &fs.PathError{Op: "read", Path: p, Err: ErrNotRegular}
	}
	return os.ReadFile(p)
}
