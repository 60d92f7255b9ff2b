package pluginhost

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-plugin/runner"
)

// procRunner runs one plugin process for go-plugin (ClientConfig.RunnerFunc).
// It differs from go-plugin's own runner in what the daemon needs: it
// executes the verified memfd rather than a path, and only once verified,
// from a thread of its own with the parent-death signal set (startSandboxed), with
// exactly the environment it is given and no stdin; and it reads the
// plugin's stdout and stderr itself, handing go-plugin only the handshake
// line (stray stdout is reported, stderr is forwarded to the daemon's log by
// stderrForwarder).
type procRunner struct {
	name string // the plugin's name
	path string // the plugin binary's path, for messages
	// binary waits until the plugin binary is verified and returns it; it
	// fails if the verification did.
	binary    func(context.Context) (*verifiedBinary, error)
	args      []string // arguments after argv[0]
	env       []string // the whole environment, set by the RunnerFunc
	socketDir string   // go-plugin's socket directory for this process, set by the RunnerFunc
	stderr    *stderrForwarder
	stdout    *stdoutReporter
	// workDir is the process's working directory, of its own, removed once
	// it has exited.
	workDir string
	// sandbox is what the process may reach, enforced when landlock (the
	// kernel's Landlock ABI version) is at least 1.
	sandbox  sandbox
	landlock int

	bin *verifiedBinary // what runs, set by Start
	pid int             // set by Start
	// execAt is when the process was executed, set by Start: the start
	// phases logged at debug are measured from it.
	execAt    time.Time
	handshake *io.PipeReader // stdout as go-plugin sees it: the handshake line
	// tls is this process's TLS configuration, go-plugin's
	// ClientConfig.TLSConfig, on which the certificate of the certificate
	// line is pinned (certline.go); set before Start.
	tls *tls.Config
	// refused is why the plugin was refused for how it announced its TLS
	// certificate, set before go-plugin's stdout ends.
	refused atomic.Pointer[error]
	// offered is the plugin protocol version of the handshake line, 0
	// until it is read or when it is no number; set before go-plugin reads
	// the line.
	offered atomic.Int64
	logs    *io.PipeReader // stderr as go-plugin sees it: nothing
	exited  chan struct{}  // closed once the process has been reaped
	state   *os.ProcessState
	waitErr error

	// Kill may come from another goroutine while Start runs (a start
	// aborted by the host's shutdown).
	mu     sync.Mutex
	cmd    *exec.Cmd // set by Start once the process runs
	killed bool      // Kill was called: a process Start starts is killed at once
	died   bool      // the process ended before Kill was called (set when reaped)
	reaped bool      // the process was reaped: its pid and group are no longer ours
}

var _ runner.Runner = (*procRunner)(nil)

// maxHandshakeLine bounds go-plugin's handshake line (about 1 KiB with
// AutoMTLS's certificate), well below what go-plugin's scanner reads.
const maxHandshakeLine = bufio.MaxScanTokenSize / 2

func newProcRunner(name, path string, binary func(context.Context) (*verifiedBinary, error), args []string, stderr *stderrForwarder, stdout *stdoutReporter) *procRunner {
	return &procRunner{name: name, path: path, binary: binary, args: args, stderr: stderr, stdout: stdout, exited: make(chan struct{})}
}

// handshakeVersion returns the plugin protocol version of go-plugin's
// handshake line, CORE-VERSION|APP-PROTOCOL-VERSION|NETWORK|ADDR|PROTOCOL|..., or
// 0 when it has none.
func handshakeVersion(line []byte) int {
	parts := bytes.SplitN(line, []byte("|"), 3)
	if len(parts) < 3 {
		return 0
	}
	v, err := strconv.Atoi(string(bytes.TrimSpace(parts[1])))
	if err != nil || v <= 0 {
		return 0
	}
	return v
}

// Start starts the process, once the binary is verified.
func (r *procRunner) Start(ctx context.Context) (err error) {
	defer func() {
		// go-plugin removes its socket directory only when it kills a
		// process that started.
		if err != nil && r.socketDir != "" {
			_ = os.RemoveAll(r.socketDir)
		}
		if err != nil && r.workDir != "" {
			_ = os.RemoveAll(r.workDir)
		}
	}()
	bin, err := r.binary(ctx)
	if err != nil {
		return err
	}
	r.bin = bin
	// Run from the store, the plugin may read and execute its own entry
	// there, and nothing else of it.
	r.sandbox.storedCopy = bin.rulePath()
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	cmd, err := startSandboxed(func() *exec.Cmd {
		return &exec.Cmd{
			Path:       r.bin.execPath(),
			Args:       append([]string{r.bin.path}, r.args...),
			Env:        r.env,
			Dir:        r.workDir,
			Stdout:     outW,
			Stderr:     errW,
			ExtraFiles: r.bin.extraFiles(),
			// A process group of its own, so that killing the plugin
			// kills what it started too (killGroup).
			SysProcAttr: processGroupAttr(),
		}
	}, r.sandbox, r.landlock, r.exited)
	// The child has its copies; the daemon keeps only the read ends, so
	// that they end when the plugin exits.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return fmt.Errorf("executing plugin binary %s (verified copy %s): %w", r.bin.path, r.bin.execPath(), err)
	}
	r.mu.Lock()
	r.cmd, r.pid, r.execAt = cmd, cmd.Process.Pid, time.Now()
	killed := r.killed
	r.mu.Unlock()
	if killed {
		// Killed while it was being started; what follows cleans up as
		// for any process that exits.
		killGroup(cmd.Process.Pid)
		_ = cmd.Process.Kill()
	}

	hsR, hsW := io.Pipe()
	r.handshake = hsR
	go func() {
		first, pinned := true, false
		readLines(outR, func(line []byte, cut bool) {
			if !first {
				r.stdout.report(line)
				return
			}
			if isCertLine(line) {
				// The plugin's certificate, before the handshake line
				// (certline.go): pinned, and kept from go-plugin.
				cert, err := parseCertLine(line, cut)
				if err == nil && pinned {
					err = errors.New("it wrote two certificate lines")
				}
				if err != nil {
					first = false
					r.refuse(err)
					hsW.Close()
					return
				}
				pinCert(r.tls, cert)
				pinned = true
				return
			}
			// go-plugin reads the handshake line with a bufio.Scanner,
			// which stops at a line of 64 KiB without reading the
			// rest: a longer line would block this write, and this
			// goroutine and outR with it, forever. A line that long is
			// no handshake; go-plugin gets EOF instead. Nothing after
			// the handshake line is go-plugin's.
			first = false
			switch {
			case cut || len(line) >= maxHandshakeLine:
				r.stdout.report(line)
			case r.tls == nil:
				r.refuse(errors.New("the daemon has no TLS configuration to pin its certificate on"))
			default:
				if err := checkHandshakeCert(line, pinned); err != nil {
					r.refuse(err)
					break
				}
				r.offered.Store(int64(handshakeVersion(line)))
				_, _ = hsW.Write(append(line, '\n'))
			}
			hsW.Close()
		})
		outR.Close()
		hsW.Close()
	}()
	logR, logW := io.Pipe()
	r.logs = logR
	go func() {
		readLines(errR, r.stderr.line)
		errR.Close()
		logW.Close()
	}()
	// The process is reaped here rather than when go-plugin calls Wait,
	// which it does only once the output pipes are drained: a grandchild
	// holding them open must not hide the plugin's exit. Once it has
	// exited, what is left of its process group (helpers it started, which
	// would hold the pipes) is killed before it is reaped, while its pid
	// still names the group. go-plugin's view of stdout and stderr ends
	// with the process: go-plugin waits for both to end before it reports
	// the exit, and its Kill waits for that, so a helper that escaped the
	// group and holds the pipes must not keep the plugin from being killed
	// and restarted. (What such a helper writes is still forwarded.)
	go func() {
		if waitExited(r.pid) {
			r.mu.Lock()
			killGroup(r.pid)
			r.waitErr = cmd.Wait() // at once: it has exited
		} else {
			r.waitErr = cmd.Wait()
			r.mu.Lock()
		}
		r.state = cmd.ProcessState
		r.died = !r.killed
		r.reaped = true
		r.mu.Unlock()
		if r.workDir != "" {
			// What is left of its group was killed: nothing writes here.
			_ = os.RemoveAll(r.workDir)
		}
		close(r.exited)
		hsW.Close()
		logW.Close()
	}()
	return nil
}

// refuse records why the plugin is refused for its TLS certificate; the
// caller then ends go-plugin's stdout, which fails the start.
func (r *procRunner) refuse(why error) {
	err := fmt.Errorf("plugin %q (%s) refused: %w", r.name, r.path, why)
	r.refused.CompareAndSwap(nil, &err)
}

// refusal is why the plugin was refused for its TLS certificate, or nil.
func (r *procRunner) refusal() error {
	if err := r.refused.Load(); err != nil {
		return *err
	}
	return nil
}

// Wait waits for the process to exit.
func (r *procRunner) Wait(ctx context.Context) error {
	select {
	case <-r.exited:
		return r.waitErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Kill kills the process and its process group (SIGKILL); killing an
// exited process is no error.
func (r *procRunner) Kill(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.killed = true
	if r.cmd == nil || r.cmd.Process == nil || r.reaped {
		return nil
	}
	killGroup(r.pid)
	err := r.cmd.Process.Kill()
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// diedOnItsOwn reports whether the process has ended without the host
// killing it.
func (r *procRunner) diedOnItsOwn() bool {
	select {
	case <-r.exited:
	default:
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.died
}

// exitReason describes how the process ended, once it has: "exit status
// 3", "signal: segmentation fault".
func (r *procRunner) exitReason() string {
	select {
	case <-r.exited:
	default:
		return "still running"
	}
	if r.state == nil {
		return fmt.Sprint(r.waitErr)
	}
	return r.state.String()
}

// Stdout is the handshake line, for go-plugin.
func (r *procRunner) Stdout() io.ReadCloser { return r.handshake }

// Stderr is empty: the runner forwards the plugin's stderr itself.
func (r *procRunner) Stderr() io.ReadCloser { return r.logs }

// Name is the plugin's name.
func (r *procRunner) Name() string { return r.name }

// ID is the process id.
func (r *procRunner) ID() string {
	if r.pid == 0 {
		return "" // not started: nothing for go-plugin to kill
	}
	return strconv.Itoa(r.pid)
}

// Diagnose explains why a plugin may fail the handshake.
func (r *procRunner) Diagnose(context.Context) string {
	if err := r.refusal(); err != nil {
		return err.Error()
	}
	msg := fmt.Sprintf("The plugin binary %s did not start a go-plugin gRPC server: it must be a spectroauth plugin (built with sdk.Serve, or speaking go-plugin's handshake), for %s/%s, and print nothing on stdout before the handshake line.", r.path, runtime.GOOS, runtime.GOARCH)
	select {
	case <-r.exited:
		msg += " It exited: " + r.exitReason() + "; its stderr is in the daemon's log."
	default:
	}
	return msg
}

// PluginToHost passes addresses through: the plugin runs on this host.
func (r *procRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

// HostToPlugin passes addresses through: the plugin runs on this host.
func (r *procRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}
