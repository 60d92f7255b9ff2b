//go:build !linux

package pluginhost

import (
	"errors"
	"os/exec"
)

// ProtectProcess does nothing: plugins run on Linux only.
func ProtectProcess() error { return nil }

// sandbox is what a plugin process may reach; plugins run on Linux only.
type sandbox struct {
	workDir, binary, storedCopy string
	readPaths                   []string
	fixedAttrs                  bool
}

func landlockABI() (int, error) { return 0, errors.New("Landlock is a Linux feature") }

func seccompAvailable() error { return errors.New("seccomp is a Linux feature") }

func startSandboxed(build func() *exec.Cmd, _ sandbox, _ int, _ <-chan struct{}) (*exec.Cmd, error) {
	return startCmd(build)
}
