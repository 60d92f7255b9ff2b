package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/pluginclient"
)

// Options tune a Host. The zero value of every field means its default.
type Options struct {
	// Logger receives the host's messages and, under a sub-logger named
	// after each plugin, the plugins' own log lines. Default: none.
	Logger hclog.Logger
	// Uses are the places in the configuration that use the plugins;
	// Start checks each against what its plugin offers and has the plugin
	// validate its options. Get them with UsesFromConfig.
	Uses []Use
	// StartTimeout bounds the start of a plugin process: handshake,
	// Describe and Configure. Default 10s.
	StartTimeout time.Duration
	// HealthInterval is the time between health checks of a plugin.
	// Default 5s.
	HealthInterval time.Duration
	// MaxMisses is how many health checks in a row may fail, and how many
	// calls in a row may run into their deadline, before a plugin is killed
	// and restarted. Default 3.
	MaxMisses int
	// BackoffMin and BackoffMax bound the wait before a restart, which
	// doubles with every restart that does not last. Defaults 100ms and 30s.
	BackoffMin, BackoffMax time.Duration
	// StableAfter is how long a plugin must stay up for its restart backoff
	// to start again from BackoffMin. Default 1m.
	StableAfter time.Duration
	// StopGrace is how long Close lets a plugin take to exit when asked,
	// before it kills it. Default 5s.
	StopGrace time.Duration
	// StoreDir, when set, is the content store of verified plugin binaries
	// (see store_linux.go): a directory only the daemon's user may use,
	// created with its parent (mode 0700) if missing. A binary verified once
	// is run from the daemon's copy there at later starts, without copying
	// and hashing it again, for as long as its file keeps its identity.
	// Default none: every start verifies every binary. The daemon sets it
	// to StoreDirName in storage.path.
	StoreDir string

	// protocols are the plugin sets of the protocol versions the host
	// speaks; default pluginclient.VersionedPlugins(). Tests set it to
	// stand for a daemon that speaks more versions.
	protocols map[int]plugin.PluginSet
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 10 * time.Second
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = 5 * time.Second
	}
	if o.MaxMisses <= 0 {
		o.MaxMisses = 3
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 100 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 30 * time.Second
	}
	o.BackoffMax = max(o.BackoffMax, o.BackoffMin)
	if o.StableAfter <= 0 {
		o.StableAfter = time.Minute
	}
	if o.StopGrace <= 0 {
		o.StopGrace = 5 * time.Second
	}
	if o.protocols == nil {
		o.protocols = pluginclient.VersionedPlugins()
	}
}

// Host runs the daemon's plugins. Its methods are safe for concurrent use.
type Host struct {
	opts    Options
	log     hclog.Logger
	plugins map[string]*instance
	names   []string // sorted
	// landlock is the kernel's Landlock ABI version; 0 without Landlock,
	// when plugins run without file system isolation.
	landlock int
	// fixedAttrs is set when plugins run under the attribute filter
	// (seccomp_linux.go), unable to change file modes, owners and ACLs.
	fixedAttrs bool
	// store is the content store of verified binaries; nil without one.
	store *contentStore
	// settled, when set, is closed once what the start verified is in the
	// store and the store is pruned.
	settled chan struct{}

	// calls counts the calls in flight; closingBit is added by Close, after
	// which no call starts.
	calls     atomic.Int64
	drained   chan struct{}
	drainOnce sync.Once
	closeOnce sync.Once
	closeErr  error
}

const closingBit = 1 << 40

// Start starts every plugin of plugins (the `plugins:` of the
// configuration, by name) in parallel: it checks and verifies each binary,
// starts it, describes it, hands it its `config:` block, and checks every
// use of it in opts.Uses. It returns once all are up, or fails if any one
// fails, with an error per plugin that names the configuration key at fault
// (`plugins.catalog.sha256: …`, `plugins.catalog.config.baseUrl: …`). ctx
// bounds the start only; Close stops the plugins.
func Start(ctx context.Context, plugins map[string]config.Plugin, opts Options) (*Host, error) {
	opts.setDefaults()
	h, _, err := startHost(ctx, plugins, opts, nil, nil)
	return h, err
}

// Reload is what Next did: the plugins it started anew, those it kept
// running from the previous host (their binary digest and configuration
// are unchanged), and those the previous host alone holds, which its
// Close stops. Each list is sorted.
type Reload struct {
	Started, Kept, Stopping []string
}

// Next starts the host of a new configuration next to h, which keeps
// serving: a plugin whose declaration (command, digest, arguments,
// environment, configuration, timeout, read paths) is unchanged and which
// is up is kept, shared by both hosts; every other plugin is started and
// checked as Start does. Every use in opts.Uses is checked, on kept plugins
// too. On success the caller swaps the new host in and then closes h, which
// waits for h's calls in flight and stops the plugins the new host does not
// keep. On failure h is unchanged and what Next started is stopped.
// opts.Logger and the tuning of opts should be those of h.
func (h *Host) Next(ctx context.Context, plugins map[string]config.Plugin, opts Options) (*Host, Reload, error) {
	opts.protocols = h.opts.protocols
	opts.setDefaults()
	keep := map[string]*instance{}
	for name, p := range plugins {
		if in, ok := h.plugins[name]; ok && in.cur.Load() != nil && reflect.DeepEqual(in.cfg, p) {
			keep[name] = in
		}
	}
	next, r, err := startHost(ctx, plugins, opts, h, keep)
	if err != nil {
		return nil, Reload{}, err
	}
	for _, name := range h.names {
		if _, ok := keep[name]; !ok {
			r.Stopping = append(r.Stopping, name)
		}
	}
	return next, r, nil
}

// newHost is a host of opts (defaults set) for the plugins names, sorted,
// none of them started yet.
func newHost(opts Options, names []string) *Host {
	return &Host{
		opts:    opts,
		log:     opts.Logger.Named("plugins"),
		plugins: make(map[string]*instance, len(names)),
		names:   names,
		drained: make(chan struct{}),
	}
}

// startHost starts the host of plugins, keeping the instances of keep (already
// running, held by prev) instead of starting them. With prev, the daemon's
// isolation is already in place: the new host takes prev's findings.
func startHost(ctx context.Context, plugins map[string]config.Plugin, opts Options, prev *Host, keep map[string]*instance) (*Host, Reload, error) {
	h := newHost(opts, slices.Sorted(maps.Keys(plugins)))

	uses := map[string][]Use{}
	var errs []error
	for _, u := range opts.Uses {
		if _, ok := plugins[u.Plugin]; !ok {
			errs = append(errs, fmt.Errorf("%s.plugin: unknown plugin %q: not a key of plugins", u.Key, u.Plugin))
			continue
		}
		uses[u.Plugin] = append(uses[u.Plugin], u)
	}
	if len(errs) > 0 {
		return nil, Reload{}, errors.Join(errs...)
	}

	switch {
	case prev != nil:
		h.landlock, h.fixedAttrs = prev.landlock, prev.fixedAttrs
	case len(h.names) > 0:
		h.isolate()
	}
	if len(h.names) > 0 || prev != nil {
		// A reload to no plugins at all still prunes the store.
		h.store = openStore(opts.StoreDir, h.log, h.landlock)
	}
	var r Reload
	for _, name := range h.names {
		if in, ok := keep[name]; ok {
			h.plugins[name] = in
			r.Kept = append(r.Kept, name)
			continue
		}
		h.plugins[name] = newInstance(h, name, plugins[name])
		r.Started = append(r.Started, name)
	}
	began := time.Now()
	if len(r.Started) > 0 {
		// The daemon's certificate for the plugins' mutual TLS is made
		// once, while the first binaries are verified.
		go func() { _, _ = hostCertificate() }()
	}
	startErrs := make([]error, len(h.names))
	var wg sync.WaitGroup
	bins := binaries{store: h.store}
	for i, name := range h.names {
		in := h.plugins[name]
		if _, kept := keep[name]; kept {
			wg.Go(func() { startErrs[i] = in.recheck(ctx, uses[name]) })
			continue
		}
		wg.Go(func() { startErrs[i] = in.start(ctx, uses[name], &bins) })
	}
	wg.Wait()
	if err := errors.Join(startErrs...); err != nil {
		bins.stored(false)
		for _, name := range r.Started {
			h.plugins[name].abort()
		}
		return nil, Reload{}, err
	}
	if h.store != nil {
		// The plugins run: now the binaries this start verified go into
		// the store, and what no plugin of this configuration pins leaves
		// it.
		digests := make([]string, 0, len(plugins))
		for _, p := range plugins {
			digests = append(digests, p.SHA256)
		}
		h.store.setReferenced(digests)
		h.settled = make(chan struct{})
		go func() {
			defer close(h.settled)
			backgroundThread()
			bins.stored(true)
			h.store.prune()
		}()
	}
	for _, name := range r.Started {
		h.plugins[name].supervise()
	}
	for _, name := range r.Kept {
		h.plugins[name].refs.Add(1)
	}
	if len(r.Started) > 0 {
		h.log.Info("plugins are up", "plugins", strings.Join(r.Started, ","), "took", time.Since(began).Round(time.Millisecond))
	}
	return h, r, nil
}

// testHookNoLandlock, set by a test, runs plugins without Landlock.
var testHookNoLandlock bool

// isolate protects the daemon from its plugins (see sandbox_linux.go): it
// makes the process non-dumpable and finds out whether plugins can be
// restricted with Landlock and the attribute filter, saying so when they
// cannot.
func (h *Host) isolate() {
	if err := ProtectProcess(); err != nil {
		h.log.Warn("plugins may read the daemon's memory and environment", "error", err)
	}
	if err := seccompAvailable(); err != nil {
		h.log.Warn("plugin file attribute isolation unavailable: " + err.Error() +
			"; plugins can change the mode, owner and ACLs of every file the daemon's user owns (keys, sessions)")
	} else {
		h.fixedAttrs = true
	}
	abi, err := landlockABI()
	if testHookNoLandlock {
		abi, err = 0, errors.New("a test turned it off")
	}
	if err != nil {
		h.log.Warn("plugin file system isolation unavailable: " + err.Error() +
			"; plugins can read every file the daemon's user can (keys, sessions, configuration)")
		return
	}
	h.landlock = abi
	h.log.Debug("plugins run restricted by Landlock", "abi", abi)
}

// enter counts a call in, unless the host is closing.
func (h *Host) enter() bool {
	if h.calls.Add(1)&closingBit != 0 {
		h.leave()
		return false
	}
	return true
}

// leave counts a call out.
func (h *Host) leave() {
	if h.calls.Add(-1) == closingBit {
		h.drainOnce.Do(func() { close(h.drained) })
	}
}

// Close stops the host: calls made from now on fail with an error matching
// ErrClosed, calls in flight may finish (until ctx is done), and then every
// plugin is asked to exit, and killed if it does not within ctx (or
// Options.StopGrace).
// Close returns an error if it had to cut calls short. Calling it again
// returns the first result.
func (h *Host) Close(ctx context.Context) error {
	h.closeOnce.Do(func() {
		if h.calls.Add(closingBit) == closingBit {
			h.drainOnce.Do(func() { close(h.drained) })
		}
		var errs []error
		select {
		case <-h.drained:
		case <-ctx.Done():
			n := h.calls.Load() &^ closingBit
			errs = append(errs, fmt.Errorf("stopping plugins: %d calls still in flight when the shutdown deadline came: %w", n, ctx.Err()))
		}
		var wg sync.WaitGroup
		for _, in := range h.plugins {
			if in.refs.Add(-1) > 0 {
				continue // a reloaded host kept it
			}
			wg.Go(func() { in.stop(ctx) })
		}
		wg.Wait()
		if h.settled != nil {
			select {
			case <-h.settled:
				// What only the plugins stopped here ran from may go.
				h.store.prune()
			case <-ctx.Done():
				// A write cut short leaves a temporary file, which the
				// next start removes.
			}
		}
		h.closeErr = errors.Join(errs...)
	})
	return h.closeErr
}

// Ready returns nil when every plugin is up, and otherwise an error saying
// which are not and why.
func (h *Host) Ready() error {
	var errs []error
	for _, name := range h.names {
		if err := h.plugins[name].ready(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PluginStatus describes a plugin, for the CLI and diagnostics.
type PluginStatus struct {
	// Name is the plugin's name in the configuration.
	Name string
	// Command is the configured command.
	Command string
	// Path is the absolute path the binary was read from.
	Path string
	// SHA256 is the hex digest of the bytes that run (equal to the
	// configured one).
	SHA256 string
	// Version is the version the plugin reports.
	Version string
	// SDKVersion is the version of the SDK the plugin reports it is built
	// with; empty when it reports none (an SDK before Go SDK 0.1.0, or a
	// plugin without an SDK).
	SDKVersion string
	// PluginName is the name the plugin gives itself.
	PluginName string
	// ProtocolVersion is the plugin protocol version negotiated with it: of
	// those the daemon speaks, the newest it serves; 0 before it was first
	// up.
	ProtocolVersion int
	// Capabilities are what the plugin offers.
	Capabilities []sdk.Capability
	// Resolvers and Strategies are the names it offers.
	Resolvers, Strategies []string
	// StrategyTokens are the user's tokens each strategy declares it needs,
	// the only ones the host passes it; nil when the plugin declares none
	// at all (it predates the declaration), and then gets every token.
	StrategyTokens map[string][]sdk.Token
	// State is where it is in its life.
	State State
	// Reason says why it is not up; empty when it is.
	Reason string
	// Restarts counts its restarts since Start.
	Restarts int
	// PID is the process id of its current process; 0 when it has none.
	PID int
	// Calls and Failures count the calls made to it and those that failed
	// (including "not found" answers).
	Calls, Failures uint64
	// LogLinesDropped counts the plugin's log lines dropped because it
	// logged beyond its rate (50 lines a second, 200 at once).
	LogLinesDropped uint64
}

// Plugins describes every plugin, sorted by name.
func (h *Host) Plugins() []PluginStatus {
	out := make([]PluginStatus, 0, len(h.names))
	for _, name := range h.names {
		out = append(out, h.plugins[name].status())
	}
	return out
}

// instance returns the plugin called name.
func (h *Host) instance(name string) (*instance, error) {
	in, ok := h.plugins[name]
	if !ok {
		return nil, fmt.Errorf("unknown plugin %q: not a key of plugins", name)
	}
	return in, nil
}
