// Package daemon assembles spectroauthd from its configuration: storage,
// identity keys, the development provider, the SpectroCloud clients of each
// environment, the sign-in chains and the HTTP server. main.go only parses
// flags and handles signals; tests run a whole daemon in-process through here.
package daemon

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/cliauth"
	"github.com/spectroauth/spectroauth/host/demo"
	"github.com/spectroauth/spectroauth/host/devprovider"
	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/atomicfile"
	"github.com/spectroauth/spectroauth/host/internal/ratelimit"
	"github.com/spectroauth/spectroauth/host/kube"
	"github.com/spectroauth/spectroauth/host/metrics"
	"github.com/spectroauth/spectroauth/host/pluginhost"
	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// DevProviderPath is where the embedded development provider is mounted.
const DevProviderPath = "/dev/oidc"

// Options are the parts tests replace.
type Options struct {
	// Logger defaults to a null logger.
	Logger hclog.Logger
	// Listener, when set, is used instead of listening on server.listen.
	Listener net.Listener
	// HTTPClient is the base of every back-channel client (tests pass TLS roots).
	HTTPClient *http.Client
	// Now defaults to time.Now.
	Now func() time.Time
	// MetricsListener, when set, is used instead of listening on
	// server.metricsListen.
	MetricsListener net.Listener
	// Build identifies the running binary in /healthz and the build_info
	// metric; its zero value reads "dev".
	Build Build
	// LoadConfig loads the configuration again for ReloadConfig (SIGHUP,
	// the admin socket); nil when there is no file to reload.
	LoadConfig func() (*config.Config, error)
	// AdminSocket, when set, is the path of the admin socket that
	// `spectroauthd reload` asks (see AdminSocketPath): served once the
	// daemon is ready, removed by Close.
	AdminSocket string
}

// Build identifies a binary: the version and commit the release stamped
// into it (make build passes them to the linker).
type Build struct {
	// Version is git describe's answer or the VERSION file, "dev" when unset.
	Version string `json:"version"`
	// Commit is the full commit hash the binary was built from, if known.
	Commit string `json:"commit,omitempty"`
}

// Daemon is a running spectroauthd.
type Daemon struct {
	cfg      *config.Config
	log      hclog.Logger
	listener net.Listener
	http     *http.Server
	handler  atomic.Pointer[http.Handler]
	sessions session.Store
	dev      *devprovider.Provider
	served   chan error
	closers  []func() error
	ready    atomic.Bool
	// notReady is the handler until the identity routes are up.
	notReady *http.Handler
	binary   Build
	metrics  *metrics.Metrics // nil unless server.metricsListen is set
	cli      *cliauth.Handler // the command-line routes, once built
	metricsH *http.Server
	// metricsAddr is where metricsH listens.
	metricsAddr net.Addr

	// gens holds the configuration generation that serves: plugins,
	// sign-in chains, Kubernetes broker. Reload swaps it.
	gens generations
	// reloading serialises Reload and Close.
	reloading sync.Mutex
	// closed is set by Close, under reloading: no reload after it.
	closed bool
	// opts are the options Start was given.
	opts Options
	// kube is the broker configuration but for the clusters and sources,
	// which each generation sets.
	kube kube.Config
	// admin serves the admin socket; nil without Options.AdminSocket.
	admin *adminServer
}

// Start listens, serves, and then initialises everything that needs the
// network (discovery may reach the embedded development provider on the
// daemon's own listener). It returns when the daemon is ready or failed.
func Start(ctx context.Context, cfg *config.Config, opts Options) (_ *Daemon, err error) {
	d := &Daemon{cfg: cfg, log: opts.Logger, opts: opts, served: make(chan error, 1)}
	if d.log == nil {
		d.log = hclog.NewNullLogger()
	}
	defer func() {
		if err != nil {
			d.Close(context.Background())
		}
	}()

	// The first configuration generation; Reload replaces it. Its plugins
	// take longest to start, so they are launched first, in the background
	// and in parallel, while the rest of the daemon is set up; the sign-in
	// chains wait for them. On a failed start, what was launched is stopped
	// (the deferred calls run last first: cancel and wait, then Close).
	began := time.Now()
	g := newGeneration(1, cfg)
	d.gens.cur.Store(g)
	pctx, cancelPlugins := context.WithCancel(ctx)
	waitPlugins := d.startPlugins(pctx, g)
	defer func() {
		if err != nil {
			cancelPlugins()
		}
		_ = waitPlugins() // so that Close finds them
		cancelPlugins()   // the start is over: ctx bounds nothing more
	}()

	if d.binary = opts.Build; d.binary.Version == "" {
		d.binary.Version = "dev"
	}
	var notReady http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "spectroauthd is starting", http.StatusServiceUnavailable)
	})
	d.notReady = &notReady
	d.handler.Store(d.notReady)
	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", d.healthz)
	if cfg.DevProvider.Enabled {
		if err := devprovider.RequireLoopback(cfg.Server.Listen); err != nil {
			return nil, fmt.Errorf("development provider: %w", err)
		}
		if d.dev, err = newDevProvider(cfg, d.log.Named("devprovider")); err != nil {
			return nil, err
		}
		root.Handle(DevProviderPath+"/", http.StripPrefix(DevProviderPath, d.dev))
	}
	root.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*d.handler.Load()).ServeHTTP(w, r)
	}))

	d.listener = opts.Listener
	if d.listener == nil {
		if d.listener, err = net.Listen("tcp", cfg.Server.Listen); err != nil {
			return nil, fmt.Errorf("listening on server.listen %s: %w", cfg.Server.Listen, err)
		}
	}
	var handler http.Handler = root
	if cfg.Server.MetricsListen != "" || opts.MetricsListener != nil {
		if err := d.serveMetrics(opts.MetricsListener); err != nil {
			return nil, err
		}
		handler = d.metrics.Middleware(root)
	}
	d.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          d.log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	go func() { d.served <- d.http.Serve(d.listener) }()

	srv, err := d.build(ctx, opts, g, began, waitPlugins)
	if err != nil {
		return nil, err
	}
	var h http.Handler = srv
	d.handler.Store(&h)
	d.ready.Store(true)
	// Loading sessions and keys leaves garbage behind; hand it back now rather
	// than carrying it as resident memory until the heap grows into it. A
	// collection takes milliseconds: not before /readyz says ready.
	go debug.FreeOSMemory()
	if opts.AdminSocket != "" {
		// Without it the daemon still reloads on SIGHUP: say so, and serve.
		var aerr error
		if d.admin, aerr = serveAdmin(opts.AdminSocket, d.log.Named("admin"), d.handleAdmin); aerr != nil {
			d.log.Warn("spectroauthd reload is unavailable (reload with SIGHUP and read the log)", "error", aerr)
		} else {
			d.log.Debug("admin socket: spectroauthd reload reaches this daemon", "path", opts.AdminSocket)
		}
	}
	d.log.Info("spectroauthd is ready", "listen", d.listener.Addr().String(), "baseUrl", cfg.Server.BaseURL)
	return d, nil
}

// build creates the stores, the identity issuer, the provider environments
// and the HTTP server of generation g, whose plugins Start launched at
// began; waitPlugins waits for them.
func (d *Daemon) build(ctx context.Context, opts Options, g *generation, began time.Time, waitPlugins func() error) (*server.Server, error) {
	cfg := d.cfg
	// Discovery is cut short when the start fails early (the deferred
	// calls run last first: cancel, then wait).
	dctx, cancelDiscovery := context.WithCancel(ctx)
	waitEnvs := d.buildEnvs(dctx, opts)
	defer waitEnvs()
	defer cancelDiscovery()
	st, err := d.openStorage(ctx)
	if err != nil {
		return nil, err
	}
	storageAt := time.Now()
	keys, userInfo := st.keys, st.userInfo
	issuer, err := identity.New(identity.Config{
		Issuer:   strings.TrimSuffix(cfg.Server.BaseURL, "/") + "/api/auth",
		Lifetime: cfg.Auth.BackstageTokenExpiration,
		KeyStore: keys,
		UserInfo: userInfo,
		// Replicas on shared storage add keys the others must publish.
		SharedKeyStore: st.sharedKeys,
		Now:            opts.Now,
		Logger:         d.log.Named("identity"),
	})
	if err != nil {
		return nil, fmt.Errorf("starting the Backstage token issuer: %w", err)
	}
	scfg := server.Config{
		BaseURL:               cfg.Server.BaseURL,
		AppBaseURL:            cfg.App.BaseURL,
		ExtraAllowedOrigins:   cfg.Auth.ExtraAllowedOrigins,
		Identity:              issuer,
		UserInfo:              userInfo,
		IncludeOwnershipClaim: cfg.Auth.IncludeOwnershipClaim,
		HostPrefixedCookies:   cfg.Server.HostPrefixedCookies,
		Logger:                d.log.Named("server"),
		Now:                   opts.Now,
	}
	// Backstage backends can verify tokens as soon as the keys are loaded,
	// while sessions load, plugins start and providers are discovered.
	early, err := server.NewIdentityHandler(scfg)
	if err != nil {
		return nil, err
	}
	d.handler.Store(&early)

	keysAt := time.Now()
	sessions, flowKey, err := st.openSessions(ctx)
	if err != nil {
		return nil, err
	}
	d.sessions = sessions
	d.closers = append(d.closers, sessions.Close)
	sessionsAt := time.Now()

	// What needs no plugin is built while they start; the sign-in chains,
	// the plugin metrics and the Kubernetes broker wait for them. A plugin
	// that fails to start is what a failed start reports, as when the
	// plugins were waited for first.
	pluginsFailed := func(err error) error {
		if perr := waitPlugins(); perr != nil {
			return fmt.Errorf("starting plugins: %w", perr)
		}
		return err
	}
	envs, discoveredAt, err := waitEnvs()
	if err != nil {
		return nil, pluginsFailed(err)
	}
	srv, err := d.newServer(scfg, envs, sessions, flowKey, st)
	if err != nil {
		return nil, pluginsFailed(err)
	}
	serverAt := time.Now()

	if err := waitPlugins(); err != nil {
		return nil, fmt.Errorf("starting plugins: %w", err)
	}
	pluginsAt := time.Now()
	if d.metrics != nil {
		if err := d.metrics.RegisterPlugins(d.pluginStatus); err != nil {
			return nil, fmt.Errorf("registering plugin metrics: %w", err)
		}
		d.metrics.ConfigServing(g.n, g.since)
	}
	if g.chains, err = buildChains(cfg, g.plugins); err != nil {
		return nil, err
	}
	if err := d.startKube(srv, opts.HTTPClient, g); err != nil {
		return nil, err
	}
	// Where the start went (each from the start of build): the parts run
	// in parallel, so the last to end sets the time to ready.
	d.log.Debug("start phases", "storage", storageAt.Sub(began).Round(time.Microsecond),
		"keys", keysAt.Sub(began).Round(time.Microsecond),
		"sessions", sessionsAt.Sub(began).Round(time.Microsecond),
		"providers_discovered", discoveredAt.Sub(began).Round(time.Microsecond),
		"server", serverAt.Sub(began).Round(time.Microsecond),
		"plugins_up", pluginsAt.Sub(began).Round(time.Microsecond),
		"built", time.Since(began).Round(time.Microsecond))
	return srv, nil
}

// newServer builds the HTTP server of scfg with the provider environments
// and stores of the start, its command-line routes, the test page and the
// Palette API: all of the daemon but what needs the plugins.
func (d *Daemon) newServer(scfg server.Config, envs map[string]*server.Env, sessions session.Store, flowKey []byte, st *storage) (*server.Server, error) {
	cfg, opts := d.cfg, d.opts
	var err error
	scfg.Envs, scfg.Sessions, scfg.FlowKey, scfg.UsedOnce = envs, sessions, flowKey, st.usedOnce
	if scfg.ClientIP, err = ratelimit.NewClientIP(cfg.Server.TrustedProxies); err != nil {
		return nil, fmt.Errorf("server.trustedProxies: %w", err)
	}
	rl := cfg.Server.RateLimits
	scfg.SignInLimit = ratelimit.NewPerClient(float64(rl.SignInsPerClientPerMinute), rl.SignInBurst, server.DefaultMaxLimitedClients, opts.Now)
	scfg.ExchangeBudget = ratelimit.NewBudget(float64(rl.CodeExchangesPerSecond), 5*rl.CodeExchangesPerSecond, opts.Now)
	if d.metrics != nil {
		scfg.SignInDone = d.metrics.SignInDone
		scfg.SessionEnded = d.metrics.SessionEnded
		scfg.ClientRejected = d.metrics.ClientRejected
	}
	scfg.Ready = func() error {
		if !d.ready.Load() {
			return errors.New("starting")
		}
		if st.ping != nil {
			if err := st.ping(); err != nil {
				return err
			}
		}
		if p := d.gens.load().plugins; p != nil {
			return p.Ready()
		}
		return nil
	}
	srv, err := server.New(scfg)
	if err != nil {
		return nil, err
	}
	// The command-line and device sign-in routes, over the same lifecycle.
	if d.cli, err = cliauth.Mount(cliauth.Config{Lifecycle: srv.Lifecycle(), Front: srv, Logger: d.log.Named("cli")}); err != nil {
		return nil, err
	}
	// The test page at / signs in from the daemon's own origin: serve it
	// where that origin may receive sign-in results (the development
	// defaults; a real tenant once the daemon's URL is added to
	// auth.extraAllowedOrigins). Elsewhere it could only fail.
	if srv.AllowsOrigin(cfg.Server.BaseURL) {
		srv.Handle("/", demo.Handler())
	}
	if err := d.startPalette(srv, opts.HTTPClient); err != nil {
		return nil, err
	}
	return srv, nil
}

// buildEnvs builds the provider environment of every
// auth.providers.spectrocloud entry in the background, each discovering its
// provider in parallel, and returns a function that waits for them (any
// number of times), and when the last was done. Discovery may reach the
// embedded development provider, which the listener already serves.
func (d *Daemon) buildEnvs(ctx context.Context, opts Options) func() (map[string]*server.Env, time.Time, error) {
	type result struct {
		name string
		env  *server.Env
		at   time.Time
		err  error
	}
	all := d.cfg.Auth.Providers.SpectroCloud
	done := make(chan result, len(all))
	for name, pe := range all {
		go func() {
			env, err := d.buildEnv(ctx, name, pe, opts)
			done <- result{name, env, time.Now(), err}
		}()
	}
	var (
		once sync.Once
		envs map[string]*server.Env
		last time.Time
		err  error
	)
	return func() (map[string]*server.Env, time.Time, error) {
		once.Do(func() {
			envs = make(map[string]*server.Env, len(all))
			var errs []error
			for range all {
				r := <-done
				if r.at.After(last) {
					last = r.at
				}
				if r.err != nil {
					errs = append(errs, r.err)
					continue
				}
				envs[r.name] = r.env
			}
			err = errors.Join(errs...)
		})
		return envs, last, err
	}
}

func (d *Daemon) buildEnv(ctx context.Context, name string, pe config.ProviderEnv, opts Options) (*server.Env, error) {
	key := "auth.providers.spectrocloud." + name
	ucfg := upstreamConfig(pe)
	ucfg.HTTPClient = d.upstreamClient(name, opts.HTTPClient)
	ucfg.Logger = d.log.Named("upstream").With("env", name)
	up, err := upstream.New(ctx, ucfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return &server.Env{
		Upstream:        up,
		SignIn:          chainOf{&d.gens, name},
		Scopes:          pe.Scopes,
		CallbackURL:     pe.CallbackURL,
		RefreshMargin:   pe.RefreshMargin,
		SessionDuration: pe.SessionDuration,
		LogoutURL:       pe.LogoutURL,

		RevalidateInterval: pe.RevalidateInterval,

		TrustEmailWithoutVerifiedClaim: pe.TrustEmailWithoutVerifiedClaim,
	}, nil
}

// buildChains builds the sign-in chain of every environment of cfg on
// plugins (nil when none are declared).
func buildChains(cfg *config.Config, plugins *pluginhost.Host) (map[string]signin.Chain, error) {
	chains := map[string]signin.Chain{}
	for name, pe := range cfg.Auth.Providers.SpectroCloud {
		key := "auth.providers.spectrocloud." + name
		var chain signin.Chain
		for i, ref := range pe.SignIn.Resolvers {
			var r signin.Resolver
			if ref.Plugin == config.BuiltinPlugin {
				var ok bool
				if r, ok = signin.Builtins[ref.Resolver]; !ok {
					return nil, fmt.Errorf("%s.signIn.resolvers[%d].resolver: the builtin plugin offers no resolver %q", key, i, ref.Resolver)
				}
			} else {
				if plugins == nil {
					return nil, fmt.Errorf("%s.signIn.resolvers[%d].plugin: unknown plugin %q: not a key of plugins", key, i, ref.Plugin)
				}
				var err error
				if r, err = plugins.Resolver(ref.Plugin, ref.Resolver, ref.Options); err != nil {
					return nil, fmt.Errorf("%s.signIn.resolvers[%d]: %w", key, i, err)
				}
			}
			chain = append(chain, signin.Step{Name: ref.Plugin + "/" + ref.Resolver, Resolver: r})
		}
		chains[name] = chain
	}
	return chains, nil
}

// pluginOptions are the plugin host's options for cfg.
func (d *Daemon) pluginOptions(cfg *config.Config) pluginhost.Options {
	return pluginhost.Options{Logger: d.log, Uses: pluginhost.UsesFromConfig(cfg), StoreDir: pluginStoreDir(cfg)}
}

// pluginStoreDir is where the plugin host keeps its verified copies of the
// plugin binaries: in the data directory, which file storage creates. On
// PostgreSQL storage, only where storage.path exists (it holds the admin
// socket there too); "" (no store) otherwise.
func pluginStoreDir(cfg *config.Config) string {
	if cfg.Storage.Type == "postgres" {
		if fi, err := os.Stat(cfg.Storage.Path); err != nil || !fi.IsDir() {
			return ""
		}
	}
	return filepath.Join(cfg.Storage.Path, pluginhost.StoreDirName)
}

// startPlugins starts the declared plugins in the background and returns a
// function that waits for them (any number of times) and sets g.plugins.
func (d *Daemon) startPlugins(ctx context.Context, g *generation) func() error {
	if len(d.cfg.Plugins) == 0 {
		return func() error { return nil }
	}
	type result struct {
		h   *pluginhost.Host
		err error
	}
	done := make(chan result, 1)
	go func() {
		h, err := pluginhost.Start(ctx, d.cfg.Plugins, d.pluginOptions(d.cfg))
		done <- result{h, err}
	}()
	var (
		once sync.Once
		err  error
	)
	return func() error {
		once.Do(func() {
			r := <-done
			g.plugins, err = r.h, r.err
		})
		return err
	}
}

// newDevProvider configures the embedded development provider from the
// development environment's client and the configured demo users.
func newDevProvider(cfg *config.Config, log hclog.Logger) (*devprovider.Provider, error) {
	issuer := strings.TrimSuffix(cfg.Server.BaseURL, "/") + DevProviderPath
	var clients []devprovider.Client
	for _, pe := range cfg.Auth.Providers.SpectroCloud {
		if pe.Issuer != issuer {
			continue
		}
		cb := pe.CallbackURL
		if cb == "" {
			cb = strings.TrimSuffix(cfg.Server.BaseURL, "/") + "/api/auth/" + server.ProviderID + "/handler/frame"
		}
		clients = append(clients, devprovider.Client{ID: pe.ClientID, Secret: pe.ClientSecret.Reveal(), RedirectURIs: []string{cb}})
	}
	if len(clients) == 0 {
		return nil, fmt.Errorf("devProvider.enabled: no auth.providers.spectrocloud environment uses its issuer %s", issuer)
	}
	var users []devprovider.User
	for _, u := range cfg.DevProvider.Users {
		users = append(users, devprovider.User{
			Username: u.Username, Email: u.Email, EmailVerified: u.EmailVerified,
			GivenName: u.GivenName, FamilyName: u.FamilyName, Groups: u.Groups,
		})
	}
	p, err := devprovider.New(devprovider.Config{
		Issuer:        issuer,
		Clients:       clients,
		Users:         users,
		RefreshTokens: true,
		AllowInsecure: true,
		Logger:        log,
	})
	if err != nil {
		return nil, fmt.Errorf("devProvider: %w", err)
	}
	return p, nil
}

// loadOrCreateSecret returns the 32-byte secret at path, creating it (0600)
// on first start.
func loadOrCreateSecret(path string) ([]byte, error) {
	b, err := readSecret(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return b, err
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("making a secret: %w", err)
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("writing secret file %s: %w", path, err)
	}
	return b, nil
}

// readSecret returns the secret at path: at least 32 bytes. A missing file
// is an error that is os.ErrNotExist.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading secret file %s: %w", path, err)
	}
	if len(b) < 32 {
		return nil, fmt.Errorf("secret file %s is too short (%d bytes); delete it to have a new one made", path, len(b))
	}
	return b, nil
}

// Addr is the address the daemon listens on.
func (d *Daemon) Addr() net.Addr { return d.listener.Addr() }

// DevProvider is the embedded development provider, or nil.
func (d *Daemon) DevProvider() *devprovider.Provider { return d.dev }

// Plugins is the plugin host of the serving configuration generation, or
// nil when it declares no plugins. A reload replaces it.
func (d *Daemon) Plugins() *pluginhost.Host { return d.gens.load().plugins }

// pluginStatus describes the serving generation's plugins.
func (d *Daemon) pluginStatus() []pluginhost.PluginStatus {
	if p := d.gens.load().plugins; p != nil {
		return p.Plugins()
	}
	return nil
}

// Wait blocks until the HTTP server stops.
func (d *Daemon) Wait() error {
	err := <-d.served
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close drains in-flight requests (bounded by ctx) and releases everything.
func (d *Daemon) Close(ctx context.Context) error {
	// The admin socket first: a reload it runs finishes, then no more
	// come.
	if d.admin != nil {
		d.admin.close()
	}
	d.reloading.Lock()
	defer d.reloading.Unlock()
	d.closed = true
	var errs []error
	if d.http != nil {
		if err := d.http.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	} else if d.listener != nil {
		_ = d.listener.Close()
	}
	if d.metricsH != nil {
		// Last scrapes may still see the drain; then the listener goes.
		_ = d.metricsH.Close()
	}
	if g := d.gens.load(); g != nil {
		// Discovery stops before the plugins drain: a listing in flight
		// would otherwise hold the shutdown up until its deadline.
		if g.broker != nil {
			g.broker.Close()
		}
		// Sign-ins in flight have finished (or ctx is done): the plugins
		// may go.
		if g.plugins != nil {
			if err := g.plugins.Close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for i := len(d.closers) - 1; i >= 0; i-- {
		if err := d.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	d.closers = nil
	return errors.Join(errs...)
}

// upstreamConfig is the provider client configuration of one environment.
func upstreamConfig(pe config.ProviderEnv) upstream.Config {
	return upstream.Config{
		Issuer:                         pe.Issuer,
		AuthorizationURL:               pe.AuthorizationURL,
		TokenURL:                       pe.TokenURL,
		JWKSURL:                        pe.JWKSURL,
		UserinfoURL:                    pe.UserinfoURL,
		RevocationURL:                  pe.RevocationURL,
		EndSessionURL:                  pe.LogoutURL,
		SigningAlgorithms:              pe.SigningAlgorithms,
		ClientID:                       pe.ClientID,
		ClientSecret:                   pe.ClientSecret.Reveal(),
		Scopes:                         pe.Scopes,
		Prompt:                         pe.Prompt,
		TokenEndpointAuthMethod:        pe.TokenEndpointAuthMethod,
		AllowInsecureIssuer:            pe.AllowInsecureIssuer,
		TrustEmailWithoutVerifiedClaim: pe.TrustEmailWithoutVerifiedClaim,
	}
}

// healthz is liveness: 200 from the moment the daemon listens, with the
// version that runs. It is alive while starting, so that a liveness probe
// does not kill a daemon still loading sessions or waiting for its
// database; /readyz says whether it serves.
func (d *Daemon) healthz(w http.ResponseWriter, _ *http.Request) {
	status := "ok"
	if d.handler.Load() == d.notReady {
		status = "starting"
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(struct {
		Status string `json:"status"`
		Build
	}{status, d.binary})
}
