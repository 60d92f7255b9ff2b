// Package kube is the daemon's Kubernetes credential broker. It keeps the
// list of clusters (static ones from the configuration, merged with the ones
// discovery plugins report), and serves, under
// /api/auth/spectrocloud/kubernetes/:
//
//   - GET  clusters: the clusters a signed-in user may ask a credential for;
//   - POST credential: {"cluster": name} → {"token", "expiresAt"}, issued by the
//     cluster's strategy plugin from the user's session, and audited;
//   - GET  catalog-info.yaml: every known cluster as a Backstage Resource entity
//     of type kubernetes-cluster, for one catalog location.
//
// Who may obtain a credential: only a caller meant to hold one. POST
// credential accepts a command-line access token (identity.TypeCLIAccess,
// what spectroauthd kube-credential holds for kubectl) and refuses the
// daemon's Backstage user token: Backstage hands that token to every
// backend plugin, proxy and scaffolder action, none of which may turn it
// into cluster access. GET clusters and catalog-info.yaml, which reveal no
// secret, accept either (Authorization: Bearer). The broker talks to plugins through the small
// Strategy and Source interfaces, which the plugin host's objects satisfy.
package kube

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/sdk"
)

// RoutePrefix is where the broker's routes live on the daemon: under the
// auth provider's own path (server.ProviderID; a test keeps them equal, so
// that this package need not import Backstage's routes).
const RoutePrefix = "/api/auth/spectrocloud/kubernetes/"

// Strategy issues a user's credential for a cluster: one strategy of a
// plugin, with its options, as the plugin host hands it out. The broker hands
// it the whole session; the plugin host passes on only the tokens the
// strategy declared (sdk.Plugin.StrategyTokens).
type Strategy interface {
	Credential(ctx context.Context, req sdk.CredentialRequest) (sdk.Credential, error)
}

// TokenReceiver is the optional interface of a Strategy that tells which of
// the user's tokens it is passed (the plugin host's strategies implement
// it). The broker renews the Palette session token only for a strategy
// that receives it; a Strategy without it is treated as receiving nothing
// that needs renewing.
type TokenReceiver interface {
	Receives(token sdk.Token) bool
}

// Source lists clusters: a plugin's cluster source.
type Source interface {
	ListClusters(ctx context.Context, req sdk.ListClustersRequest) ([]sdk.Cluster, error)
}

// StrategyBinding is a configured strategy: a plugin's strategy with the
// options of one configuration entry.
type StrategyBinding struct {
	// Plugin and Strategy name it (the plugin's key under plugins: and one
	// of its strategy names), for the audit log and messages.
	Plugin, Strategy string
	// Options are the strategy's options, sent with every request.
	Options map[string]any
	// Impl issues the credentials.
	Impl Strategy
}

// Name is "plugin/strategy".
func (b *StrategyBinding) Name() string {
	if b == nil {
		return ""
	}
	return b.Plugin + "/" + b.Strategy
}

// Cluster is a static cluster and its strategy.
type Cluster struct {
	sdk.Cluster
	// Strategy issues its credentials; nil when none is configured.
	Strategy *StrategyBinding
}

// SourceConfig is a discovery plugin and how often to ask it.
type SourceConfig struct {
	// Name identifies the source in logs, clash reports and the clusters
	// route, e.g. "kubernetes.sources[0] (palette)". Required, unique.
	Name string
	// Impl lists the clusters. Required.
	Impl Source
	// Options are the source's options, sent with every request.
	Options map[string]any
	// Interval between refreshes. Required (positive).
	Interval time.Duration
	// Timeout bounds one listing; default the interval, at most a minute.
	Timeout time.Duration
	// Strategy returns the strategy of a discovered cluster: hint is the
	// strategy name the source suggests for it (sdk.Cluster.Strategy), ""
	// when it has no opinion. It returns nil when no strategy applies (the
	// cluster is then listed in the catalog but issues no credentials). Nil
	// means no discovered cluster has a strategy.
	Strategy func(hint string) (*StrategyBinding, error)
}

// SessionFunc authenticates a Backstage user token and returns its session,
// with upstream tokens refreshed within the margin: (*server.Server).UserSession.
// It returns errors wrapping lifecycle.ErrUnauthenticated or lifecycle.ErrSessionEnded.
type SessionFunc func(ctx context.Context, backstageToken string) (*lifecycle.UserSession, error)

// Config is what the broker needs.
type Config struct {
	// Clusters are the static clusters; their names must be unique.
	Clusters []Cluster
	// Sources are the discovery plugins, in configuration order: on a name
	// clash the static cluster wins, then the earlier source.
	Sources []SourceConfig
	// Sessions authenticates Backstage user tokens, for the routes that
	// reveal no secret (clusters, catalog-info.yaml). Required.
	Sessions SessionFunc
	// CLISessions authenticates command-line access tokens
	// ((*cliauth.Handler).Session): the only callers POST credential
	// serves. Nil means no caller gets a credential.
	CLISessions SessionFunc
	// BrowserSessions authenticates Backstage's app in the user's browser
	// ((*server.Server).BrowserSession: allowed origin, X-Requested-With,
	// the refresh cookie) on POST credential when no token is sent: the
	// path of Backstage's Kubernetes plugin, whose frontend hands the
	// credential to the kubernetes backend only. Nil disables it.
	BrowserSessions func(*http.Request) (*lifecycle.UserSession, error)
	// RenewPaletteToken, when set, renews the session's Palette session
	// token when it is near its end ((*server.Server).PaletteSession with
	// Palette's refresh), before a strategy that receives it is called.
	RenewPaletteToken func(ctx context.Context, us *lifecycle.UserSession) (*lifecycle.UserSession, error)
	// Audit receives one event per credential grant or refusal. Required.
	Audit *AuditLog
	// Decided, when set, is told the outcome (OutcomeGranted or
	// OutcomeRefused) and the refusal's reason of every credential request,
	// once it is answered: for metrics.
	Decided func(outcome, reason string)
	// CatalogOwner is spec.owner of the catalog entities. Default
	// group:default/platform.
	CatalogOwner string
	// CatalogPublic serves catalog-info.yaml without a token.
	CatalogPublic bool
	// CredentialTimeout bounds a strategy call. Default 30s.
	CredentialTimeout time.Duration
	// Logger defaults to a null logger.
	Logger hclog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultCatalogOwner      = "group:default/platform"
	DefaultCredentialTimeout = 30 * time.Second
	maxSourceTimeout         = time.Minute
)

// Broker is the cluster registry and its HTTP routes. Its methods are safe
// for concurrent use.
type Broker struct {
	cfg    Config
	log    hclog.Logger
	now    func() time.Time
	mux    *http.ServeMux
	static []*entry
	reg    registry

	mu      sync.Mutex
	cancel  context.CancelFunc
	running sync.WaitGroup
}

// New checks cfg and builds the broker. Discovery starts with Start.
func New(cfg Config) (*Broker, error) {
	if cfg.Sessions == nil {
		return nil, errors.New("kube: Config.Sessions is required")
	}
	if cfg.Audit == nil {
		return nil, errors.New("kube: Config.Audit is required")
	}
	if cfg.CatalogOwner == "" {
		cfg.CatalogOwner = DefaultCatalogOwner
	}
	if cfg.CredentialTimeout <= 0 {
		cfg.CredentialTimeout = DefaultCredentialTimeout
	}
	b := &Broker{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	if b.log == nil {
		b.log = hclog.NewNullLogger()
	}
	if b.now == nil {
		b.now = time.Now
	}
	seen := map[string]bool{}
	for i, c := range cfg.Clusters {
		if err := c.Cluster.Validate(); err != nil {
			return nil, fmt.Errorf("kube: static cluster %d: %w", i, err)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("kube: static cluster %q is configured twice", c.Name)
		}
		seen[c.Name] = true
		if c.Strategy != nil && c.Strategy.Impl == nil {
			return nil, fmt.Errorf("kube: static cluster %q: its strategy %s has no implementation", c.Name, c.Strategy.Name())
		}
		b.static = append(b.static, &entry{cluster: c.Cluster, strategy: c.Strategy, origin: OriginStatic})
	}
	names := map[string]bool{}
	for i, s := range cfg.Sources {
		switch {
		case s.Name == "" || names[s.Name]:
			return nil, fmt.Errorf("kube: source %d: a unique name is required", i)
		case s.Impl == nil:
			return nil, fmt.Errorf("kube: source %s: no implementation", s.Name)
		case s.Interval <= 0:
			return nil, fmt.Errorf("kube: source %s: the interval must be positive", s.Name)
		}
		names[s.Name] = true
		if s.Timeout <= 0 {
			cfg.Sources[i].Timeout = min(s.Interval, maxSourceTimeout)
		}
	}
	b.cfg = cfg
	b.reg.init(b.static, len(cfg.Sources), b.log)
	b.routes()
	return b, nil
}

// Start refreshes every source now and then on its interval, until ctx is
// done or Close is called. It returns at once; see Refresh to wait for a
// listing.
func (b *Broker) Start(ctx context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cancel != nil {
		return
	}
	ctx, b.cancel = context.WithCancel(ctx)
	for i := range b.cfg.Sources {
		b.running.Add(1)
		go func() {
			defer b.running.Done()
			b.loop(ctx, i)
		}()
	}
}

// Close stops the refresh loops and waits for them.
func (b *Broker) Close() {
	b.mu.Lock()
	cancel := b.cancel
	b.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	b.running.Wait()
}

func (b *Broker) loop(ctx context.Context, i int) {
	src := b.cfg.Sources[i]
	t := time.NewTicker(src.Interval)
	defer t.Stop()
	// A source that Refresh has just listed (a reload lists every source
	// before the swap) is listed again after its interval, not at once.
	skip := b.reg.listed(i)
	for {
		if !skip {
			_ = b.refreshSource(ctx, i)
		}
		skip = false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh lists every source once, now, and returns their errors joined. A
// source that fails keeps its last good list.
func (b *Broker) Refresh(ctx context.Context) error {
	errs := make([]error, len(b.cfg.Sources))
	var wg sync.WaitGroup
	for i := range b.cfg.Sources {
		wg.Go(func() { errs[i] = b.refreshSource(ctx, i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// refreshSource lists one source and, on success, replaces its clusters.
func (b *Broker) refreshSource(ctx context.Context, i int) error {
	src := b.cfg.Sources[i]
	lctx, cancel := context.WithTimeout(ctx, src.Timeout)
	defer cancel()
	clusters, err := src.Impl.ListClusters(lctx, sdk.ListClustersRequest{Options: src.Options})
	if err != nil {
		err = fmt.Errorf("listing the clusters of %s: %w", src.Name, err)
		if ctx.Err() == nil {
			kept := b.reg.failed(i, err)
			b.log.Warn("cluster source failed; keeping its last good list", "source", src.Name, "kept", kept, "error", err)
		}
		return err
	}
	entries := make([]*entry, 0, len(clusters))
	seen := map[string]bool{}
	for _, c := range clusters {
		if err := c.Validate(); err != nil {
			b.log.Warn("cluster source listed an invalid cluster; skipping it", "source", src.Name, "error", err)
			continue
		}
		if seen[c.Name] {
			b.log.Warn("cluster source listed a cluster twice; keeping the first", "source", src.Name, "cluster", c.Name)
			continue
		}
		seen[c.Name] = true
		e := &entry{cluster: c, origin: src.Name}
		if src.Strategy != nil {
			s, err := src.Strategy(c.Strategy)
			if err != nil {
				b.log.Warn("no strategy for a discovered cluster", "source", src.Name, "cluster", c.Name, "hint", c.Strategy, "error", err)
			} else {
				e.strategy = s
			}
		}
		entries = append(entries, e)
	}
	b.reg.update(i, entries)
	b.log.Debug("cluster source refreshed", "source", src.Name, "clusters", len(entries))
	return nil
}

// ClusterInfo describes a known cluster.
type ClusterInfo struct {
	sdk.Cluster
	// Strategy names the strategy that issues its credentials
	// ("plugin/strategy"), "" when none does.
	Strategy string
	// Origin is OriginStatic or the name of the source that reported it.
	Origin string
}

// OriginStatic is the Origin of clusters from kubernetes.clusters.
const OriginStatic = "static"

// Clusters returns every known cluster, sorted by name.
func (b *Broker) Clusters() []ClusterInfo {
	snap := b.reg.load()
	out := make([]ClusterInfo, 0, len(snap.order))
	for _, name := range snap.order {
		e := snap.byName[name]
		out = append(out, ClusterInfo{Cluster: e.cluster, Strategy: e.strategy.Name(), Origin: e.origin})
	}
	return out
}

// Clashes returns the current name clashes between clusters of different
// origins.
func (b *Broker) Clashes() []Clash {
	return append([]Clash(nil), b.reg.load().clashes...)
}

// ServeHTTP serves the routes under RoutePrefix.
func (b *Broker) ServeHTTP(w http.ResponseWriter, r *http.Request) { b.mux.ServeHTTP(w, r) }
