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
	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/host/upstream"
	"github.com/spectroauth/spectroauth/sdk"
)

// startKube builds the Kubernetes credential broker from kubernetes:, mounts
// its routes on srv and starts cluster discovery. Strategies and sources are
// the plugin host's; Close stops discovery before it stops the plugins.
func (d *Daemon) startKube(srv *server.Server, base *http.Client) error {
	k := d.cfg.Kubernetes
	audit, err := kube.OpenAuditLog(k.Audit.Sink)
	if err != nil {
		return fmt.Errorf("kubernetes.audit.sink: %w", err)
	}
	d.closers = append(d.closers, audit.Close)

	var clusters []kube.Cluster
	for i, c := range k.Clusters {
		path := fmt.Sprintf("kubernetes.clusters[%d]", i)
		cl := sdk.Cluster{Name: c.Name, Server: c.URL}
		if c.CAData != "" {
			if cl.CAData, err = base64.StdEncoding.DecodeString(c.CAData); err != nil {
				return fmt.Errorf("%s.caData: %w", path, err)
			}
		}
		s, err := d.clusterStrategy(path+".strategy", c.Strategy)
		if err != nil {
			return err
		}
		clusters = append(clusters, kube.Cluster{Cluster: cl, Strategy: s})
	}

	var sources []kube.SourceConfig
	for i, s := range k.Sources {
		path := fmt.Sprintf("kubernetes.sources[%d]", i)
		if d.plugins == nil {
			return fmt.Errorf("%s.plugin: unknown plugin %q: not a key of plugins", path, s.Plugin)
		}
		impl, err := d.plugins.ClusterSource(s.Plugin, s.Options)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		sources = append(sources, kube.SourceConfig{
			Name:     fmt.Sprintf("%s (%s)", path, s.Plugin),
			Impl:     impl,
			Options:  s.Options,
			Interval: s.Interval,
			Strategy: d.sourceStrategies(path+".strategy", s.Strategy),
		})
	}

	kcfg := kube.Config{
		Clusters:        clusters,
		Sources:         sources,
		Sessions:        srv.UserSession,
		CLISessions:     d.cli.Session,
		BrowserSessions: srv.BrowserSession,
		Audit:           audit,
		CatalogOwner:    k.Catalog.Owner,
		CatalogPublic:   k.Catalog.Public,
		Logger:          d.log.Named("kube"),
	}
	if d.metrics != nil {
		kcfg.Decided = d.metrics.KubeCredentialDecided
	}
	// Strategies that receive the Palette session token get it renewed
	// first, as paletteApi's route does.
	client := upstream.NewBackChannelClient(base, d.cfg.PaletteAPI.Timeout, paletteapi.MaxResponseBytes)
	kcfg.RenewPaletteToken = func(ctx context.Context, us *lifecycle.UserSession) (*lifecycle.UserSession, error) {
		baseURL, err := d.paletteBaseURL(us.Env)
		if err != nil {
			return nil, err
		}
		return srv.PaletteSession(ctx, us, func(ctx context.Context, token string) (string, time.Time, error) {
			return paletteapi.Refresh(ctx, client, baseURL, token)
		})
	}
	broker, err := kube.New(kcfg)
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	// CORS for Backstage's app: its Kubernetes plugin asks for credentials
	// from the browser, with the session cookie.
	srv.Handle(kube.RoutePrefix, srv.CORS(broker))
	broker.Start(context.Background())
	// Discovery stops before the plugins drain: a listing in flight would
	// otherwise hold the shutdown up until its deadline.
	d.stops = append(d.stops, broker.Close)
	return nil
}

// clusterStrategy binds a configured strategy to the plugin host.
func (d *Daemon) clusterStrategy(path string, ref config.StrategyRef) (*kube.StrategyBinding, error) {
	if d.plugins == nil {
		return nil, fmt.Errorf("%s.plugin: unknown plugin %q: not a key of plugins", path, ref.Plugin)
	}
	impl, err := d.plugins.ClusterStrategy(ref.Plugin, ref.Strategy, ref.Options)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &kube.StrategyBinding{Plugin: ref.Plugin, Strategy: ref.Strategy, Options: ref.Options, Impl: impl}, nil
}

// sourceStrategies returns the strategy of a source's discovered clusters:
// the strategy the source suggests for a cluster, else the configured one,
// both of the configured strategy plugin with its options. Nil when the
// source has no strategy: its clusters are then catalogued only.
func (d *Daemon) sourceStrategies(path string, ref config.StrategyRef) func(hint string) (*kube.StrategyBinding, error) {
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
		if b, ok := bound[name]; ok {
			return b, nil
		}
		b, err := d.clusterStrategy(path, config.StrategyRef{Plugin: ref.Plugin, Strategy: name, Options: ref.Options})
		if err != nil {
			return nil, err
		}
		bound[name] = b
		return b, nil
	}
}
