// Package conformance is the conformance suite every spectroauth plugin must
// pass, and what runs it: against a plugin served in this process (Run) or a
// built plugin binary in any language (RunBinary, CheckBinary), over the
// same gRPC transport, handshake and limits the daemon uses.
//
// In a Go test, use sdk/plugintest, which runs the suite in subtests of a
// *testing.T. This package does not import package testing, so that a
// program can run the suite outside a test: CheckBinary is what
// `spectroauthd plugin test` runs, reporting to a writer.
package conformance

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/pluginclient"
	"github.com/spectroauth/spectroauth/sdk/pluginserver"
)

// startTimeout bounds how long the in-process plugin may take to serve.
const startTimeout = 10 * time.Second

// Start serves p in this process through go-plugin's gRPC transport (a real
// socket, the protocol's handshake configuration, plugin sets and message
// limits: only the child process is missing) and returns a client of it, as
// the daemon has one, already described. The plugin is not configured: call
// Configure first if it is a Configurer. It stops when the test ends.
//
// The plugin's logs go to the test log at warn level and above; set
// SPECTROAUTH_PLUGIN_LOG_LEVEL to see more.
func Start(t T, p sdk.Plugin) *pluginclient.Client {
	t.Helper()
	logger := testLogger(t)
	cfg, err := pluginserver.NewServeConfig(p, logger)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	reattach := make(chan *plugin.ReattachConfig, 1)
	closed := make(chan struct{})
	cfg.Test = &plugin.ServeTestConfig{Context: ctx, ReattachConfigCh: reattach, CloseCh: closed}
	go plugin.Serve(cfg)

	var rc *plugin.ReattachConfig
	select {
	case rc = <-reattach:
	case <-closed:
		cancel()
		t.Fatalf("plugintest: plugin %q stopped before serving", p.Name)
	case <-time.After(startTimeout):
		cancel()
		t.Fatalf("plugintest: plugin %q did not serve within %s", p.Name, startTimeout)
	}
	// go-plugin would watch our own process for the plugin's exit; watch the
	// in-process server instead.
	rc.ReattachFunc = func() (runner.AttachedRunner, error) { return inProcess{closed: closed, stop: cancel}, nil }

	// On reattach go-plugin does not negotiate: it takes Plugins as is.
	set, ok := pluginclient.VersionedPlugins()[rc.ProtocolVersion]
	if !ok {
		cancel()
		t.Fatalf("plugintest: plugin %q serves protocol version %d; this host speaks %d", p.Name, rc.ProtocolVersion, sdk.ProtocolVersion)
	}
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pluginclient.Handshake,
		Plugins:          set,
		Reattach:         rc,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  pluginclient.GRPCDialOptions(),
		Logger:           logger,
	})
	t.Cleanup(func() {
		defer cancel()
		// Stop the server as the daemon does, through go-plugin's controller
		// service. Only when that fails, cancel its context: go-plugin does
		// not expect both at once.
		if rpc, err := pc.Client(); err != nil || rpc.Close() != nil {
			cancel()
		}
		select {
		case <-closed:
		case <-time.After(startTimeout):
			t.Errorf("plugintest: plugin %q did not stop within %s", p.Name, startTimeout)
		}
	})

	openCtx, cancelOpen := context.WithTimeout(context.Background(), startTimeout)
	defer cancelOpen()
	c, err := pluginclient.Open(openCtx, pc)
	if err != nil {
		t.Fatalf("plugintest: opening plugin %q: %v", p.Name, err)
	}
	return c
}

// inProcess stands for the plugin "process" that go-plugin reattaches to: the
// server goroutine of Start.
type inProcess struct {
	closed <-chan struct{}
	stop   context.CancelFunc
}

func (r inProcess) Wait(ctx context.Context) error {
	select {
	case <-r.closed:
	case <-ctx.Done():
	}
	return nil
}

func (r inProcess) Kill(ctx context.Context) error {
	r.stop()
	return r.Wait(ctx)
}

func (r inProcess) ID() string { return "in-process" }

func (r inProcess) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (r inProcess) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

// testLogger returns a logger that writes to t's log until t ends.
func testLogger(t T) hclog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop) // registered first: runs after the plugin has stopped
	level := hclog.LevelFromString(os.Getenv(sdk.LogLevelEnv))
	if level == hclog.NoLevel {
		level = hclog.Warn
	}
	return hclog.New(&hclog.LoggerOptions{Name: "plugin", Level: level, Output: w})
}

type testWriter struct {
	mu      sync.Mutex
	t       T
	stopped bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// StartBinary starts the plugin binary at path, written in any language, as
// the daemon starts a plugin: a child process with go-plugin's handshake,
// mutual TLS (AutoMTLS), the protocol's plugin sets and message limits. It
// returns a client of it, already described; the plugin is not configured.
// The process inherits the test's environment and is killed when the test
// ends; its stderr goes to the test log.
func StartBinary(t T, path string, args ...string) *pluginclient.Client {
	t.Helper()
	logger := testLogger(t)
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pluginclient.Handshake,
		VersionedPlugins: pluginclient.VersionedPlugins(),
		Cmd:              exec.Command(path, args...),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  pluginclient.GRPCDialOptions(),
		AutoMTLS:         true,
		StartTimeout:     startTimeout,
		Logger:           logger,
	})
	t.Cleanup(pc.Kill)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c, err := pluginclient.Open(ctx, pc)
	if err != nil {
		t.Fatalf("plugintest: starting plugin binary %s: %v", path, err)
	}
	return c
}
