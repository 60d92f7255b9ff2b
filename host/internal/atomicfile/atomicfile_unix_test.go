//go:build unix

package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The mode is perm exactly, whatever the umask takes away at creation.
func TestWriteFileModeNotUmasked(t *testing.T) {
	if u := processUmask(); u < 0 {
		t.Skip("umask not readable from /proc/self/status")
	} else if u&0o066 == 0 {
		t.Skipf("umask %#o takes nothing from 0666", u)
	}
	p := filepath.Join(t.TempDir(), "f")
	if err := WriteFile(p, []byte("x"), 0o666); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o666 {
		t.Fatalf("mode = %v, %v; want 0666", fi.Mode().Perm(), err)
	}
}

func TestNeedsChmod(t *testing.T) {
	u := processUmask()
	if u < 0 {
		t.Skip("umask not readable from /proc/self/status")
	}
	if needsChmod(0o600) != (u&0o600 != 0) {
		t.Errorf("needsChmod(0600) with umask %#o = %v", u, needsChmod(0o600))
	}
	if !needsChmod(unixMode(0o755 | os.ModeSetuid)) {
		t.Error("a set-uid mode needs a chmod: open(2) does not set it")
	}
	// The umask the kernel reports is the one in effect.
	old := syscall.Umask(0o022)
	syscall.Umask(old)
	if old != u {
		t.Errorf("processUmask() = %#o, umask(2) says %#o", u, old)
	}
}
