//go:build unix

package pluginhost

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxBinarySize bounds a plugin binary: once verified it is held in memory
// for the daemon's lifetime.
const maxBinarySize = 1 << 30

// resolveCommand returns the absolute path of a plugin's command: an
// absolute path as it is, a bare name looked up on the daemon's PATH, and a
// relative path against the working directory. The path is cleaned but
// symbolic links are not followed: openChecked refuses a link.
func resolveCommand(command string) (string, error) {
	switch {
	case command == "":
		return "", errors.New("no command")
	case filepath.IsAbs(command):
		return filepath.Clean(command), nil
	case !strings.Contains(command, "/"):
		p, err := exec.LookPath(command)
		if err != nil {
			return "", fmt.Errorf("%q is not an absolute path and is not found on PATH: %w", command, err)
		}
		return filepath.Abs(p)
	default:
		return filepath.Abs(command)
	}
}

// openChecked opens the plugin binary at path (absolute) for reading and
// checks that the daemon may run it: a regular file, not a symbolic link, not
// writable by group or others, executable by its owner, at most
// maxBinarySize bytes. The checks that matter are made on the open file (so
// a file swapped in after Lstat is caught); Lstat only makes the message
// about a symbolic link precise.
func openChecked(path string) (*os.File, error) {
	lfi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("plugin binary: %w", err)
	}
	if lfi.Mode()&fs.ModeSymlink != 0 {
		target, _ := os.Readlink(path)
		return nil, fmt.Errorf("plugin binary %s is a symbolic link (to %s): name the file itself, so that what is checked is what runs", path, target)
	}
	if !lfi.Mode().IsRegular() {
		return nil, fmt.Errorf("plugin binary %s is not a regular file but %s", path, fileKind(lfi.Mode()))
	}
	// O_NOFOLLOW: a link swapped in after Lstat fails with ELOOP; O_NONBLOCK:
	// a FIFO swapped in cannot block the open.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("plugin binary %s is a symbolic link: name the file itself", path)
		}
		return nil, fmt.Errorf("plugin binary: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("plugin binary: %w", err)
	}
	var problem string
	switch mode := fi.Mode(); {
	case !mode.IsRegular():
		problem = "is not a regular file but " + fileKind(mode)
	case !os.SameFile(lfi, fi):
		problem = "was replaced while it was being checked"
	case mode.Perm()&0o022 != 0:
		problem = fmt.Sprintf("is writable by group or others (mode %04o): anyone in them could change what the daemon runs; chmod go-w it", mode.Perm())
	case mode.Perm()&0o100 == 0:
		problem = fmt.Sprintf("is not executable by its owner (mode %04o)", mode.Perm())
	case fi.Size() > maxBinarySize:
		problem = fmt.Sprintf("is %d bytes, more than the %d a plugin may be", fi.Size(), maxBinarySize)
	}
	if problem != "" {
		f.Close()
		return nil, fmt.Errorf("plugin binary %s %s", path, problem)
	}
	return f, nil
}

// Digest checks the plugin binary at path as Start does (resolved to an
// absolute path; a regular file, not a symbolic link, not writable by group
// or others) and returns its absolute path and hex SHA-256 digest, the value
// of a plugin's `sha256:`.
func Digest(path string) (abs, sha256Hex string, err error) {
	abs, err = resolveCommand(path)
	if err != nil {
		return "", "", fmt.Errorf("plugin binary: %w", err)
	}
	f, err := openChecked(abs)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, maxBinarySize)); err != nil {
		return "", "", fmt.Errorf("reading plugin binary %s: %w", abs, err)
	}
	return abs, hex.EncodeToString(h.Sum(nil)), nil
}

// fileKind names the type of a file that is not a regular one.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}
