package daemon

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/kube"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/paletteapi"
	"github.com/spectroauth/spectroauth/host/pluginhost"
	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/host/upstream"
	"github.com/spectroauth/spectroauth/sdk"
)

// startKube opens the Kubernetes audit log, builds the credential broker of
// generation g from kubernetes:, mounts the routes on srv (they serve the
// broker of whichever generation serves) and starts g's cluster discovery.
func (d *Daemon) startKube(srv *server.Server, base *http.Client, g *generation) error {
	k := d.cfg.Kubernetes
	audit, err := kube.OpenAuditLog(k.Audit.Sink)
	if err != nil {
		return fmt.Errorf("kubernetes.audit.sink: %w", err)
	}
	d.closers = append(d.closers, audit.Close)

	d.kube = kube.Config{
		Sessions:        srv.UserSession,
		CLISessions:     d.cli.Session,
		BrowserSessions: srv.BrowserSession,
		Audit:           audit,
		CatalogOwner:    k.Catalog.Owner,
		CatalogPublic:   k.Catalog.Public,
		Logger:          d.log.Named("kube"),
	}
	if d.metrics != nil {
		d.kube.Decided = d.metrics.KubeCredentialDecided
	}
	// Strategies that receive the Palette session token get it renewed
	// first, as paletteApi's route does.
	client := upstream.NewBackChannelClient(base, d.cfg.PaletteAPI.Timeout, paletteapi.MaxResponseBytes)
	d.kube.RenewPaletteToken = func(ctx context.Context, us *lifecycle.UserSession) (*lifecycle.UserSession, error) {
		baseURL, err := d.paletteBaseURL(us.Env)
		if err != nil {
			return nil, err
		}
		return srv.PaletteSession(ctx, us, func(ctx context.Context, token string) (string, time.Time, error) {
			return paletteapi.Refresh(ctx, client, baseURL, token)
		})
	}
	if g.broker, err = d.newBroker(g); err != nil {
		return err
	}
	// CORS for Backstage's app: its Kubernetes plugin asks for credentials
	// from the browser, with the session cookie.
	srv.Handle(kube.RoutePrefix, srv.CORS(brokerOf{&d.gens}))
	g.broker.Start(context.Background())
	return nil
}

// newBroker builds the broker of g's kubernetes.clusters and
// kubernetes.sources, bound to g's plugins; discovery starts with its Start.
func (d *Daemon) newBroker(g *generation) (*kube.Broker, error) {
	k := g.cfg.Kubernetes
	b := binder{plugins: g.plugins}
	var clusters []kube.Cluster
	for i, c := range k.Clusters {
		path := fmt.Sprintf("kubernetes.clusters[%d]", i)
		cl := sdk.Cluster{Name: c.Name, Server: c.URL}
		if c.CAData != "" {
			var err error
			if cl.CAData, err = base64.StdEncoding.DecodeString(c.CAData); err != nil {
				return nil, fmt.Errorf("%s.caData: %w", path, err)
			}
		}
		s, err := b.clusterStrategy(path+".strategy", c.Strategy)
		if err != nil {
			return nil, err
		}
		clusters = append(clusters, kube.Cluster{Cluster: cl, Strategy: s})
	}

	var sources []kube.SourceConfig
	for i, s := range k.Sources {
		path := fmt.Sprintf("kubernetes.sources[%d]", i)
		if g.plugins == nil {
			return nil, fmt.Errorf("%s.plugin: unknown plugin %q: not a key of plugins", path, s.Plugin)
		}
		impl, err := g.plugins.ClusterSource(s.Plugin, s.Options)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		sources = append(sources, kube.SourceConfig{
			Name:     fmt.Sprintf("%s (%s)", path, s.Plugin),
			Impl:     impl,
			Options:  s.Options,
			Interval: s.Interval,
			Strategy: b.sourceStrategies(path+".strategy", s.Strategy),
		})
	}
	kcfg := d.kube
	kcfg.Clusters, kcfg.Sources = clusters, sources
	broker, err := kube.New(kcfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	return broker, nil
}

// binder binds configured strategies to a generation's plugins.
type binder struct {
	plugins *pluginhost.Host // nil when no plugin is declared
}

// clusterStrategy binds a configured strategy to the plugin host.
func (b binder) clusterStrategy(path string, ref config.StrategyRef) (*kube.StrategyBinding, error) {
	if b.plugins == nil {
		return nil, fmt.Errorf("%s.plugin: unknown plugin %q: not a key of plugins", path, ref.Plugin)
	}
	impl, err := b.plugins.ClusterStrategy(ref.Plugin, ref.Strategy, ref.Options)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &kube.StrategyBinding{Plugin: ref.Plugin, Strategy: ref.Strategy, Options: ref.Options, Impl: impl}, nil
}

// sourceStrategies returns the strategy of a source's discovered clusters:
// the strategy the source suggests for a cluster, else the configured one,
// both of the configured strategy plugin with its options. Nil when the
// source has no strategy: its clusters are then catalogued only.
func (b binder) sourceStrategies(path string, ref config.StrategyRef) func(hint string) (*kube.StrategyBinding, error) {
	if ref.Plugin == "" {
		return nil
	}
	var mu sync.Mutex
	bound := map[string]*kube.StrategyBinding{}
	return func(hint string) (*kube.StrategyBinding, error) {
		name := ref.Strategy
		if hint != "" {
			name = hint
		}
		mu.Lock()
		defer mu.Unlock()
		if sb, ok := bound[name]; ok {
			return sb, nil
		}
		sb, err := b.clusterStrategy(path, config.StrategyRef{Plugin: ref.Plugin, Strategy: name, Options: ref.Options})
		if err != nil {
			return nil, err
		}
		bound[name] = sb
		return sb, nil
	}
}
