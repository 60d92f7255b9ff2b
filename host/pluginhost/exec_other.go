//go:build !linux

package pluginhost

import (
	"errors"
	"os"
	"os/exec"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

// verifiedBinary is a verified plugin binary; plugins run on Linux only.
type verifiedBinary struct {
	path, digest string
	source       *struct{}
}

// contentStore is the content store of verified binaries; there is none
// where plugins do not run.
type contentStore struct{}

func openStore(string, hclog.Logger, int) *contentStore { return nil }
func (*contentStore) keep(*verifiedBinary)              {}
func (*contentStore) setReferenced([]string)            {}
func (*contentStore) prune()                            {}
func backgroundThread()                                 {}

func (b *verifiedBinary) execPath() string { return b.path }
func (b *verifiedBinary) close() error     { return nil }
func (b *verifiedBinary) share(int32)      {}
func (b *verifiedBinary) rulePath() string { return "" }
func (b *verifiedBinary) intact() error    { return nil }

func (b *verifiedBinary) extraFiles() []*os.File { return nil }

func verifyBinary(name, path, wantHex string, _ *contentStore) (*verifiedBinary, error) {
	return nil, errors.New("plugins are supported on Linux only: they rely on sealed memfds and the parent-death signal")
}

func startCmd(build func() *exec.Cmd) (*exec.Cmd, error) {
	return nil, errors.New("plugins are supported on Linux only")
}

func processGroupAttr() *syscall.SysProcAttr { return nil }
func killGroup(pid int)                      {}
func waitExited(pid int) bool                { return false }
