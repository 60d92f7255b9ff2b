package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/pluginclient"
)

// State is where a plugin is in its life.
type State string

// The states of a plugin.
const (
	// StateStarting: its first process is starting.
	StateStarting State = "starting"
	// StateUp: it answers calls.
	StateUp State = "up"
	// StateRestarting: its process died or stopped answering; a new one is
	// due or starting.
	StateRestarting State = "restarting"
	// StateStopped: the host is closed.
	StateStopped State = "stopped"
)

// reservedEnv are the environment variables the plugin handshake sets
// (go-plugin's, and the daemon's certificate-line request); a plugin's
// `env:` may not set them.
var reservedEnv = []string{
	pluginclient.Handshake.MagicCookieKey,
	"PLUGIN_MIN_PORT", "PLUGIN_MAX_PORT", "PLUGIN_PROTOCOL_VERSIONS", "PLUGIN_CLIENT_CERT",
	"PLUGIN_UNIX_SOCKET_DIR", "PLUGIN_UNIX_SOCKET_GROUP", "PLUGIN_MULTIPLEX_GRPC", pluginclient.CertLineEnv,
}

// instance is one configured plugin and its supervisor.
type instance struct {
	h       *Host
	name    string
	cfg     config.Plugin
	log     hclog.Logger
	timeout time.Duration
	env     []string // the configured environment, as KEY=value
	stderr  *stderrForwarder
	stdout  *stdoutReporter

	path string          // the binary's absolute path, set by start
	bin  *verifiedBinary // set by start once verified

	// cur is the generation that takes calls; nil while the plugin is down.
	cur        atomic.Pointer[generation]
	callMisses atomic.Int32
	calls      atomic.Uint64
	failures   atomic.Uint64

	mu       sync.Mutex
	state    State
	down     downCause
	retryAt  time.Time // when the next start attempt is due
	restarts int
	info     sdk.Info
	protocol int // the negotiated plugin protocol version
	pid      int
	last     *generation // the generation the supervisor holds

	// refs counts the hosts that hold the instance: one, and one more for
	// each reloaded host that kept it (Host.Next); the last host to close
	// stops it.
	refs atomic.Int32

	cancel context.CancelFunc // stops the supervisor
	done   chan struct{}      // closed when the supervisor returns

	// unconfigured, set by Launch, starts the plugin without handing it its
	// configuration.
	unconfigured bool
}

// generation is one process of a plugin.
type generation struct {
	pc      *plugin.Client
	runner  *procRunner
	client  *pluginclient.Client
	health  healthpb.HealthClient
	started time.Time
	// protocol is the plugin protocol version negotiated with it.
	protocol int
	// opened and configured are when the handshake and Describe, and then
	// Configure, were done: start phases, logged at debug.
	opened, configured time.Time

	failOnce sync.Once
	failed   chan struct{} // closed by fail
	why      downCause     // set before failed is closed
}

// downCause says why a plugin is down.
type downCause struct {
	phrase string // follows "is restarting": "after a crash"
	detail string // "exit status 3"
}

func (c downCause) String() string {
	if c.detail == "" {
		return c.phrase
	}
	return c.phrase + ": " + c.detail
}

func newInstance(h *Host, name string, cfg config.Plugin) *instance {
	log := h.log.Named(name).With("plugin", name)
	timeout := cfg.CallTimeout
	if timeout <= 0 {
		timeout = config.DefaultPluginCallTimeout
	}
	in := &instance{
		h: h, name: name, cfg: cfg, log: log, timeout: timeout,
		stderr: &stderrForwarder{log: log, name: name, limit: newLogLimiter(log)},
		stdout: &stdoutReporter{log: log},
		state:  StateStarting,
		done:   make(chan struct{}),
	}
	in.refs.Store(1)
	return in
}

// start verifies the binary (through bins, which the plugins of one start
// share), starts the first process and checks the uses of the plugin.
// Errors name the configuration key at fault.
func (in *instance) start(ctx context.Context, uses []Use, bins *binaries) error {
	key := "plugins." + in.name
	env, err := in.environment()
	if err != nil {
		return err
	}
	in.env = env
	path, err := resolveCommand(in.cfg.Command)
	if err != nil {
		return fmt.Errorf("%s.command: %w", key, err)
	}
	in.path = path
	// The binary is verified while go-plugin prepares the first launch
	// (mostly its AutoMTLS key pair: 5ms, 16ms in a fresh process); the
	// runner executes it only once it is verified, and not at all if that
	// fails.
	began := time.Now()
	verified := make(chan struct{})
	var (
		verifyErr  error
		verifyTook time.Duration
	)
	go func() {
		defer close(verified)
		in.bin, verifyErr = bins.verify(in.name, path, in.cfg.SHA256)
		verifyTook = time.Since(began)
	}()
	g, err := in.launch(ctx, func(rctx context.Context) (*verifiedBinary, error) {
		select {
		case <-verified:
		case <-rctx.Done():
			return nil, rctx.Err()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if verifyErr != nil {
			return nil, errNotVerified
		}
		return in.bin, nil
	})
	<-verified
	if verifyErr != nil {
		var dm *digestMismatchError
		if errors.As(verifyErr, &dm) {
			return fmt.Errorf("%s.sha256: %w", key, verifyErr)
		}
		return fmt.Errorf("%s.command: %w", key, verifyErr)
	}
	if err != nil {
		return err
	}
	in.mu.Lock()
	in.last = g
	in.mu.Unlock()
	if err := in.checkUses(ctx, g, uses); err != nil {
		return err
	}
	// Where the start went, for whoever measures it (on a busy machine,
	// each phase also waits for a CPU).
	in.log.Debug("plugin start phases", "verify", verifyTook.Round(time.Microsecond),
		"exec_after", g.runner.execAt.Sub(began).Round(time.Microsecond),
		"handshake_and_describe", g.opened.Sub(g.runner.execAt).Round(time.Microsecond),
		"configure", g.configured.Sub(g.opened).Round(time.Microsecond),
		"validate_options", time.Since(g.configured).Round(time.Microsecond),
		"total", time.Since(began).Round(time.Microsecond))
	in.up(g, false)
	return nil
}

// recheck checks the uses of a plugin that a reloaded host keeps running,
// on its current process.
func (in *instance) recheck(ctx context.Context, uses []Use) error {
	g := in.cur.Load()
	if g == nil {
		return in.unavailable()
	}
	return in.checkUses(ctx, g, uses)
}

// checkUses checks that g offers every use of the plugin and has it
// validate each use's options. Errors name the key of the use at fault.
func (in *instance) checkUses(ctx context.Context, g *generation, uses []Use) error {
	var errs []error
	for _, u := range uses {
		if err := checkOffered(in.name, g.info(), u.Role, u.Name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u.nameKey(), err))
			continue
		}
		vctx, cancel := context.WithTimeout(ctx, in.timeout)
		err := g.client.ValidateOptions(vctx, sdk.ValidateOptionsRequest{Role: u.Role, Name: u.Name, Options: u.Options})
		cancel()
		if err != nil {
			errs = append(errs, atKey(u.Key+".options", fmt.Errorf("plugin %q: %w", in.name, err)))
		}
	}
	return errors.Join(errs...)
}

// pluginGOMAXPROCS is the GOMAXPROCS a plugin runs with unless its `env:`
// sets one. A plugin is an I/O-bound gRPC server next to the daemon; with a
// single P, the Go scheduler in it stops waking an idle thread (which spins
// and sleeps again) at every hand-off between goroutines, of which a gRPC
// call has several. On the 2-vCPU VM of the benchmarks that cut a resolver
// call's CPU in the plugin by about a third (BenchmarkResolve).
const pluginGOMAXPROCS = "1"

// environment is the plugin's configured environment, with the log level of
// the daemon and GOMAXPROCS=1 unless `env:` sets them.
func (in *instance) environment() ([]string, error) {
	keys := make([]string, 0, len(in.cfg.Env))
	for k := range in.cfg.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	env := make([]string, 0, len(keys)+2)
	for _, k := range keys {
		if slices.Contains(reservedEnv, k) {
			return nil, fmt.Errorf("plugins.%s.env.%s: the daemon sets this variable for the plugin handshake; choose another name", in.name, k)
		}
		env = append(env, k+"="+in.cfg.Env[k].Reveal())
	}
	if _, ok := in.cfg.Env[sdk.LogLevelEnv]; !ok {
		if l := in.log.GetLevel(); l != hclog.NoLevel && l != hclog.Off {
			env = append(env, sdk.LogLevelEnv+"="+l.String())
		}
	}
	if _, ok := in.cfg.Env["GOMAXPROCS"]; !ok {
		env = append(env, "GOMAXPROCS="+pluginGOMAXPROCS)
	}
	return env, nil
}

// errNotVerified is what the runner of a plugin's first process returns
// when the binary failed verification; start reports why.
var errNotVerified = errors.New("the plugin binary failed verification")

// verified returns the verified binary, for a restart. A stored copy that
// changed since the start checked it is not run: the binary is verified
// from its source again, into a memfd.
func (in *instance) verified(context.Context) (*verifiedBinary, error) {
	in.mu.Lock()
	b := in.bin
	in.mu.Unlock()
	err := b.intact()
	if err == nil {
		return b, nil
	}
	in.log.Warn("verifying the plugin binary again before the restart", "reason", err.Error())
	nb, err := verifyBinary(in.name, in.path, in.cfg.SHA256, nil)
	if err != nil {
		return nil, err
	}
	in.mu.Lock()
	in.bin = nb
	in.mu.Unlock()
	_ = b.close()
	return nb, nil
}

// launch starts a process of the plugin, once binary returns the verified
// binary, connects to it, describes it and configures it.
func (in *instance) launch(ctx context.Context, binary func(context.Context) (*verifiedBinary, error)) (_ *generation, err error) {
	workDir, err := os.MkdirTemp("", "spectroauth-plugin-"+in.name+"-")
	if err != nil {
		return nil, fmt.Errorf("plugins.%s: creating the plugin's working directory: %w", in.name, err)
	}
	hc, err := hostCertificate()
	if err != nil {
		return nil, fmt.Errorf("plugins.%s: %w", in.name, err)
	}
	r := newProcRunner(in.name, in.path, binary, in.cfg.Args, in.stderr, in.stdout)
	// This process's own TLS configuration: the runner pins the plugin's
	// certificate on it from the certificate line, or go-plugin from the
	// handshake line.
	r.tls = hc.clientTLS()
	r.workDir = workDir
	r.sandbox = sandbox{workDir: workDir, binary: in.path, readPaths: in.cfg.ReadPaths, fixedAttrs: in.h.fixedAttrs}
	r.landlock = in.h.landlock
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pluginclient.Handshake,
		VersionedPlugins: in.h.opts.protocols,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  pluginclient.GRPCDialOptions(),
		// Mutual TLS as go-plugin's AutoMTLS makes it, with the daemon's
		// certificate made once (hostcert.go); the runner passes it to the
		// plugin in PLUGIN_CLIENT_CERT.
		TLSConfig:   r.tls,
		SkipHostEnv: true,
		// go-plugin's socket directory, inside the working directory: the
		// one directory the plugin may write.
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: workDir},
		RunnerFunc: func(_ hclog.Logger, spec *exec.Cmd, socketDir string) (runner.Runner, error) {
			// spec.Env holds only what go-plugin needs (SkipHostEnv):
			// handshake cookie, protocol versions, socket directory; then
			// the daemon's certificate, as AutoMTLS would add it. They come
			// last so that they win.
			r.env = append(slices.Clone(in.env), spec.Env...)
			r.env = append(r.env, "PLUGIN_CLIENT_CERT="+hc.pem, pluginclient.CertLineEnv+"=1")
			if _, ok := in.cfg.Env["TMPDIR"]; !ok {
				r.env = append(r.env, "TMPDIR="+workDir)
			}
			r.socketDir = socketDir
			return r, nil
		},
		StartTimeout: in.h.opts.StartTimeout,
		Logger:       quietLogger{in.log.Named("go-plugin")},
		SyncStdout:   in.stdout,
		SyncStderr:   in.stderr,
	})
	defer func() {
		if err != nil {
			_ = r.Kill(context.Background())
			pc.Kill()
		}
	}()
	// Closing the host aborts a start under way.
	stopAbort := context.AfterFunc(ctx, func() { _ = r.Kill(context.Background()) })
	defer stopAbort()

	sctx, cancel := context.WithTimeout(ctx, in.h.opts.StartTimeout)
	defer cancel()
	c, err := pluginclient.Open(sctx, pc)
	if rerr := r.refusal(); rerr != nil {
		return nil, fmt.Errorf("plugins.%s: %w", in.name, rerr)
	}
	if errors.Is(err, pluginclient.ErrProtocolVersion) {
		return nil, fmt.Errorf("plugins.%s: %w", in.name, &ProtocolVersionError{
			Plugin: in.name, Path: in.path, Offered: int(r.offered.Load()),
			Speaks: pluginclient.ProtocolVersions(in.h.opts.protocols), Err: err,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("plugins.%s: starting %s: %w", in.name, in.path, err)
	}
	opened := time.Now()
	if !in.unconfigured {
		cfgErr := c.Configure(sctx, sdk.Config{InstanceName: in.name, Values: sdk.Options(in.cfg.Config)})
		if cfgErr != nil {
			return nil, atKey("plugins."+in.name+".config", fmt.Errorf("plugin %q refused its configuration: %w", in.name, cfgErr))
		}
	}
	rpc, err := pc.Client()
	if err != nil {
		return nil, fmt.Errorf("plugins.%s: %w", in.name, err)
	}
	gc, ok := rpc.(*plugin.GRPCClient)
	if !ok {
		return nil, fmt.Errorf("plugins.%s: go-plugin returned a %T, not a gRPC client", in.name, rpc)
	}
	return &generation{
		pc: pc, runner: r, client: c,
		health:   healthpb.NewHealthClient(gc.Conn),
		started:  time.Now(),
		protocol: pc.NegotiatedVersion(),
		opened:   opened, configured: time.Now(),
		failed: make(chan struct{}),
	}, nil
}

// info is the plugin's description.
func (g *generation) info() sdk.Info {
	info, _ := g.client.Info()
	return info
}

// msgUndeclaredTokens is the warning at start about a strategy plugin that
// predates sdk.Plugin.StrategyTokens.
const msgUndeclaredTokens = "plugin does not declare which of the user's tokens its strategies need, so they receive all of them " +
	"(ID, access and Palette session token); rebuild it with a current SDK and set Plugin.StrategyTokens"

// up publishes g as the generation that takes calls.
func (in *instance) up(g *generation, restarted bool) {
	info := g.info()
	in.mu.Lock()
	in.state, in.down, in.retryAt = StateUp, downCause{}, time.Time{}
	in.info, in.protocol, in.pid, in.last = info, g.protocol, g.runner.pid, g
	if restarted {
		in.restarts++
	}
	in.mu.Unlock()
	in.callMisses.Store(0)
	in.cur.Store(g)
	if restarted {
		in.log.Info("plugin is up again", "pid", g.runner.pid, "restarts", in.restarts, "protocol_version", g.protocol)
	} else {
		in.log.Info("plugin is up", "pid", g.runner.pid, "name", info.Name, "version", info.Version,
			"sdk_version", sdkVersion(info.SDKVersion), "protocol_version", g.protocol, "capabilities", capabilityList(info.Capabilities), "sha256", in.bin.digest)
		if info.Has(sdk.CapabilityClusterStrategy) && info.StrategyTokens == nil {
			in.log.Warn(msgUndeclaredTokens, "name", info.Name, "strategies", info.Strategies)
		}
	}
}

// fail takes g out of service because of why; the supervisor restarts it.
func (in *instance) fail(g *generation, why downCause) {
	g.failOnce.Do(func() {
		g.why = why
		close(g.failed)
	})
	in.takeDown(g, why)
}

// takeDown stops calls to g, recording why, if g is still the generation
// that takes calls.
func (in *instance) takeDown(g *generation, why downCause) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cur.CompareAndSwap(g, nil) {
		in.state, in.down, in.retryAt = StateRestarting, why, time.Time{}
	}
}

// supervise starts the supervisor.
func (in *instance) supervise() {
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	in.mu.Lock()
	g := in.last
	in.mu.Unlock()
	go in.run(ctx, g)
}

// run watches g and restarts the plugin when it dies or stops answering,
// until ctx is done.
func (in *instance) run(ctx context.Context, g *generation) {
	defer close(in.done)
	backoff := in.h.opts.BackoffMin
	for {
		why, ok := in.watch(ctx, g)
		if !ok {
			return
		}
		if time.Since(g.started) >= in.h.opts.StableAfter {
			backoff = in.h.opts.BackoffMin
		}
		due := time.Now().Add(backoff)
		in.takeDown(g, why)
		in.setDown(why, due)
		in.log.Warn("plugin is down; killing what is left of it and starting it again", "reason", why.String(), "pid", g.runner.pid, "in", backoff)
		in.kill(g, true)
		for {
			backoff = min(2*backoff, in.h.opts.BackoffMax)
			t := time.NewTimer(time.Until(due))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			in.setDown(why, time.Time{})
			ng, err := in.launch(ctx, in.verified)
			if ctx.Err() != nil {
				if err == nil {
					in.kill(ng, true)
				}
				return
			}
			if err != nil {
				in.log.Error("restarting the plugin failed", "error", err, "next_attempt_in", backoff)
				why = downCause{phrase: why.phrase, detail: "a restart failed: " + err.Error()}
				due = time.Now().Add(backoff)
				in.setDown(why, due)
				continue
			}
			g = ng
			in.up(g, true)
			break
		}
	}
}

const (
	phraseCrashed          = "after a crash"
	phraseExited           = "after its process exited"
	phraseStoppedAnswering = "after it stopped answering"
)

// watch waits until g dies, stops answering or is failed by a call, and
// says why; it returns false when ctx is done.
func (in *instance) watch(ctx context.Context, g *generation) (downCause, bool) {
	tick := time.NewTicker(in.h.opts.HealthInterval)
	defer tick.Stop()
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return downCause{}, false
		case <-g.runner.exited:
			if g.runner.state != nil && g.runner.state.Success() {
				return downCause{phrase: phraseExited, detail: "exit status 0"}, true
			}
			return downCause{phrase: phraseCrashed, detail: g.runner.exitReason()}, true
		case <-g.failed:
			return g.why, true
		case <-tick.C:
			hctx, cancel := context.WithTimeout(ctx, in.timeout)
			resp, err := g.health.Check(hctx, &healthpb.HealthCheckRequest{Service: plugin.GRPCServiceName})
			cancel()
			if ctx.Err() != nil {
				return downCause{}, false
			}
			if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				err = fmt.Errorf("health status %s", resp.GetStatus())
			}
			if err == nil {
				misses = 0
				continue
			}
			misses++
			in.log.Warn("plugin failed a health check", "error", err, "in_a_row", misses)
			if misses >= in.h.opts.MaxMisses {
				return downCause{phrase: phraseStoppedAnswering, detail: fmt.Sprintf("%d health checks in a row failed, the last with: %v", misses, err)}, true
			}
		}
	}
}

// setDown records that the plugin is down because of why, with the next
// attempt due at retryAt (zero: under way).
func (in *instance) setDown(why downCause, retryAt time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.state, in.down, in.retryAt, in.pid = StateRestarting, why, retryAt, 0
}

// kill ends g: at once with SIGKILL when hard (a crashed or hung plugin),
// else by asking the plugin to exit (go-plugin kills it after 2s).
func (in *instance) kill(g *generation, hard bool) {
	if g == nil {
		return
	}
	if hard {
		_ = g.runner.Kill(context.Background())
	}
	g.pc.Kill()
}

// stop stops the supervisor and the plugin, for Close: gracefully, or
// with SIGKILL once ctx is done or Options.StopGrace has passed.
func (in *instance) stop(ctx context.Context) {
	in.cur.Store(nil)
	if in.cancel != nil {
		in.cancel()
		<-in.done
	}
	in.cur.Store(nil) // the supervisor may have published a last generation
	in.mu.Lock()
	g := in.last
	in.state, in.down, in.retryAt, in.pid = StateStopped, downCause{phrase: "because the daemon is shutting down"}, time.Time{}, 0
	in.mu.Unlock()
	if g != nil {
		stopped := make(chan struct{})
		go func() {
			in.kill(g, false)
			close(stopped)
		}()
		grace := time.NewTimer(in.h.opts.StopGrace)
		defer grace.Stop()
		select {
		case <-stopped:
		case <-ctx.Done():
		case <-grace.C: // a frozen plugin never answers go-plugin's Shutdown call
		}
		_ = g.runner.Kill(context.Background())
		<-stopped
	}
	if in.bin != nil {
		_ = in.bin.close()
	}
	in.log.Debug("plugin stopped")
}

// abort kills the plugin after a failed Start.
func (in *instance) abort() {
	in.mu.Lock()
	g := in.last
	in.state = StateStopped
	in.mu.Unlock()
	in.kill(g, true)
	if in.bin != nil {
		_ = in.bin.close()
	}
}

// unavailable is the error of a call while the plugin is down.
func (in *instance) unavailable() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	state := in.state
	if state == StateUp { // just failed by a call, not yet marked down
		state = StateRestarting
	}
	e := &UnavailableError{Plugin: in.name, State: state, Reason: in.down.phrase, Detail: in.down.detail}
	if !in.retryAt.IsZero() {
		e.RetryAfter = max(retryAfter(time.Until(in.retryAt)), 100*time.Millisecond)
	}
	return e
}

// closedError is the error of a call after Close.
func (in *instance) closedError() error {
	return &UnavailableError{Plugin: in.name, State: StateStopped, Reason: "because the daemon is shutting down"}
}

// ready is nil when the plugin is up.
func (in *instance) ready() error {
	if in.cur.Load() != nil {
		return nil
	}
	return in.unavailable()
}

// status describes the plugin.
func (in *instance) status() PluginStatus {
	in.mu.Lock()
	defer in.mu.Unlock()
	s := PluginStatus{
		Name: in.name, Command: in.cfg.Command,
		Version: in.info.Version, SDKVersion: in.info.SDKVersion, PluginName: in.info.Name, ProtocolVersion: in.protocol,
		Capabilities: slices.Clone(in.info.Capabilities),
		Resolvers:    slices.Clone(in.info.Resolvers), Strategies: slices.Clone(in.info.Strategies),
		StrategyTokens: maps.Clone(in.info.StrategyTokens),
		State:          in.state, Restarts: in.restarts, PID: in.pid,
		Calls: in.calls.Load(), Failures: in.failures.Load(),
		LogLinesDropped: in.stderr.limit.dropped.Load(),
	}
	if in.bin != nil {
		s.Path, s.SHA256 = in.bin.path, in.bin.digest
	}
	if in.state != StateUp {
		s.Reason = strings.TrimSpace(in.down.String())
	}
	return s
}

// describe returns the plugin's description.
func (in *instance) describe() sdk.Info {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.info
}

// do runs one call on the plugin with its call timeout. While the plugin is
// down it fails at once with an *UnavailableError. op names the call in
// errors ("resolve").
func (in *instance) do(ctx context.Context, op string, fn func(context.Context, *pluginclient.Client) error) error {
	return in.doVia(in.h, ctx, op, fn)
}

// doVia is do, counted as a call of host h: the host whose adapter makes
// it, which may not be the host that started the instance (a reloaded host
// keeps the instances of unchanged plugins), so that closing h waits for
// its own calls only.
func (in *instance) doVia(h *Host, ctx context.Context, op string, fn func(context.Context, *pluginclient.Client) error) error {
	if !h.enter() {
		return in.closedError()
	}
	defer h.leave()
	g := in.cur.Load()
	if g == nil {
		return in.unavailable()
	}
	in.calls.Add(1)
	cctx, cancel := context.WithTimeout(ctx, in.timeout)
	deadline, _ := cctx.Deadline()
	err := fn(cctx, g.client)
	// The plugin answered that it ran out of time (the SDK ends a plugin's
	// own deadline a margin before ours, and says so): that is an answer,
	// not a miss, even when we look at it after our deadline has passed.
	// The plugin is alive; what it waited on is slow. A bare
	// DEADLINE_EXCEEDED (a plugin not built on the SDK) counts as an answer
	// only while our deadline has not passed: gRPC makes that code up on
	// this side once it has.
	var ranOutErr *pluginclient.PluginRanOutOfTimeError
	ranOut := ctx.Err() == nil && (errors.As(err, &ranOutErr) ||
		cctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) && time.Now().Before(deadline))
	// The call timed out if our deadline passed, not the caller's. The
	// plugin's gRPC server may cancel the stream (RST_STREAM CANCEL) on its
	// copy of the deadline a hair before ours fires: a cancellation this
	// close to the deadline counts too.
	timedOut := ctx.Err() == nil && !ranOut && (cctx.Err() == context.DeadlineExceeded ||
		((errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) && time.Until(deadline) < deadlineSlack))
	cancel()
	if err == nil {
		in.callMisses.Store(0)
		return nil
	}
	in.failures.Add(1)
	switch {
	case ranOut:
		in.callMisses.Store(0) // it answered
		in.log.Warn("plugin answered that it ran out of time; not a miss", "call", op, "timeout", in.timeout, "error", err)
		return fmt.Errorf("plugin %q: %s: the plugin answered, within the %s call timeout, that it ran out of time: %w", in.name, op, in.timeout, err)
	case timedOut:
		n := int(in.callMisses.Add(1))
		in.log.Warn("plugin call ran into its deadline", "call", op, "timeout", in.timeout, "in_a_row", n)
		if n >= in.h.opts.MaxMisses {
			in.fail(g, downCause{phrase: phraseStoppedAnswering, detail: fmt.Sprintf("%d calls in a row got no answer within the %s call timeout", n, in.timeout)})
		}
		return &timeoutError{msg: fmt.Sprintf("plugin %q: %s: no answer within the %s call timeout", in.name, op, in.timeout), err: err}
	case ctx.Err() != nil:
		return fmt.Errorf("plugin %q: %s: %w", in.name, op, err)
	case status.Code(err) == codes.Unavailable:
		// The connection broke: the process crashed or is going away.
		// The supervisor sees the exit and restarts it; this call fails.
		return fmt.Errorf("plugin %q: %s: the connection to the plugin broke (did it crash?): %w", in.name, op, err)
	case errors.Is(err, context.Canceled) && g.runner.diedOnItsOwn():
		// The process died under the call and the supervisor closed the
		// connection before gRPC noticed the broken pipe: which of the two
		// errors the call sees is a race, the cause is the same.
		return fmt.Errorf("plugin %q: %s: the connection to the plugin broke (did it crash?): %s: %w", in.name, op, g.runner.exitReason(), err)
	case errors.Is(err, context.Canceled):
		// Neither the caller nor the plugin cancelled: the host closed the
		// connection under the call, stopping or restarting the plugin.
		return fmt.Errorf("plugin %q: %s: the call was cut off, the plugin is being stopped or restarted: %w", in.name, op, err)
	}
	in.callMisses.Store(0) // it answered
	return fmt.Errorf("plugin %q: %s: %w", in.name, op, err)
}

// deadlineSlack is how close to its deadline a cancelled call counts as
// timed out.
const deadlineSlack = 20 * time.Millisecond

// timeoutError is the error of a call that ran into its call timeout. It
// matches context.DeadlineExceeded.
type timeoutError struct {
	msg string
	err error
}

func (e *timeoutError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *timeoutError) Unwrap() error { return e.err }
func (e *timeoutError) Is(target error) bool {
	return target == context.DeadlineExceeded
}

// sdkVersion is the SDK version a plugin reports, for the log: "unknown"
// when it reports none.
func sdkVersion(v string) string {
	if v == "" {
		return "unknown"
	}
	return v
}
