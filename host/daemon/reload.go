package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/metrics"
	"github.com/spectroauth/spectroauth/host/pluginhost"
)

// ReloadResult says what a reload did.
type ReloadResult struct {
	// Generation is the configuration generation that now serves.
	Generation uint64
	// Started are the plugins started anew (new, or changed binary,
	// digest or declaration); Kept, those that run on unchanged; Stopped,
	// the processes of the previous generation stopped (changed or removed
	// plugins). Each is sorted.
	Started, Kept, Stopped []string
}

// String is the one-line answer of `spectroauthd reload`.
func (r ReloadResult) String() string {
	s := fmt.Sprintf("reloaded: %d plugins started, %d stopped (configuration generation %d", len(r.Started), len(r.Stopped), r.Generation)
	if len(r.Started) > 0 {
		s += "; started: " + strings.Join(r.Started, ", ")
	}
	if len(r.Kept) > 0 {
		s += "; kept running: " + strings.Join(r.Kept, ", ")
	}
	return s + ")"
}

// reloadable are the key paths a reload may change (* is any one key):
// what the plugins are and how the daemon uses them. Everything else is
// bound when the daemon starts (listener, URLs, storage, keys, the
// provider's clients) and a change to it refuses the whole reload.
var reloadable = []string{
	"plugins",
	"auth.providers.spectrocloud.*.signIn",
	"kubernetes.clusters",
	"kubernetes.sources",
}

// ReloadConfig loads the configuration with Options.LoadConfig and
// reloads it (see Reload). A configuration that does not load is refused
// the same way.
func (d *Daemon) ReloadConfig(ctx context.Context) (ReloadResult, error) {
	if d.opts.LoadConfig == nil {
		return d.reloaded(ReloadResult{}, errors.New("this daemon has no configuration file to reload (it runs on the embedded development defaults)"))
	}
	cfg, err := d.opts.LoadConfig()
	if err != nil {
		return d.reloaded(ReloadResult{}, fmt.Errorf("the configuration is not valid: %w", err))
	}
	return d.Reload(ctx, cfg)
}

// Reload makes cfg the serving configuration without a restart: it starts
// and checks what changed beside the serving generation (new and changed
// plugins: verification, Describe, option validation; the sign-in chains;
// the Kubernetes clusters and sources, listed once), swaps the new
// generation in at once, lets the calls in flight finish on the old one
// and then stops the old plugins that changed. Unchanged plugins run on.
// Sessions and keys are untouched: nobody is signed out.
//
// If anything fails, or cfg changes a setting outside plugins, the
// sign-in chains and kubernetes.clusters/sources, Reload changes nothing
// and says why, naming the key; the serving generation serves on.
func (d *Daemon) Reload(ctx context.Context, cfg *config.Config) (ReloadResult, error) {
	r, err := d.reload(ctx, cfg)
	return d.reloaded(r, err)
}

// reloaded logs and counts the outcome of a reload.
func (d *Daemon) reloaded(r ReloadResult, err error) (ReloadResult, error) {
	result := metrics.ReloadOK
	if err != nil {
		result = metrics.ReloadRefused
		d.log.Error("configuration reload refused; the running configuration serves on", "error", err)
	} else {
		d.log.Info("configuration reloaded", "generation", r.Generation, "started", r.Started, "stopped", r.Stopped, "kept", r.Kept)
	}
	if d.metrics != nil {
		d.metrics.ConfigReloaded(result)
	}
	return r, err
}

func (d *Daemon) reload(ctx context.Context, cfg *config.Config) (ReloadResult, error) {
	d.reloading.Lock()
	defer d.reloading.Unlock()
	if d.closed {
		return ReloadResult{}, errors.New("the daemon is shutting down")
	}
	if !d.ready.Load() {
		return ReloadResult{}, errors.New("the daemon is still starting")
	}
	old := d.gens.load()
	if fixed := fixedChanges(old.cfg, cfg); len(fixed) > 0 {
		return ReloadResult{}, fmt.Errorf("%s cannot change while the daemon runs; restart it to apply, or undo the change to reload the rest", strings.Join(fixed, ", "))
	}

	began := time.Now()
	next := newGeneration(old.n+1, cfg)
	var (
		r   pluginhost.Reload
		err error
	)
	switch {
	case len(cfg.Plugins) == 0:
	case old.plugins == nil:
		next.plugins, err = pluginhost.Start(ctx, cfg.Plugins, d.pluginOptions(cfg))
		r.Started = slices.Sorted(maps.Keys(cfg.Plugins))
	default:
		next.plugins, r, err = old.plugins.Next(ctx, cfg.Plugins, d.pluginOptions(cfg))
	}
	if err != nil {
		return ReloadResult{}, fmt.Errorf("starting plugins: %w", err)
	}
	if len(cfg.Plugins) == 0 && old.plugins != nil {
		for _, p := range old.plugins.Plugins() {
			r.Stopping = append(r.Stopping, p.Name)
		}
	}
	if err := d.prepare(ctx, next); err != nil {
		if next.plugins != nil {
			cctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
			_ = next.plugins.Close(cctx) // stops what it started, keeps what it shares
			cancel()
		}
		return ReloadResult{}, err
	}

	next.since = time.Now()
	prev := d.gens.swap(next)
	if d.metrics != nil {
		d.metrics.ConfigServing(next.n, next.since)
	}
	d.log.Info("configuration generation swapped in", "generation", next.n, "took", time.Since(began).Round(time.Millisecond))
	d.retire(prev)
	return ReloadResult{Generation: next.n, Started: r.Started, Kept: r.Kept, Stopped: r.Stopping}, nil
}

// prepare builds the sign-in chains and the Kubernetes broker of g on its
// plugins and starts its discovery after a first listing, so that the
// catalogue does not lose the discovered clusters at the swap.
func (d *Daemon) prepare(ctx context.Context, g *generation) error {
	var err error
	if g.chains, err = buildChains(g.cfg, g.plugins); err != nil {
		return err
	}
	if g.broker, err = d.newBroker(g); err != nil {
		return err
	}
	if len(g.cfg.Kubernetes.Sources) > 0 {
		if err := g.broker.Refresh(ctx); err != nil {
			// As at start: a source that fails is retried on its interval.
			d.log.Warn("a cluster source of the new configuration failed its first listing", "error", err)
		}
	}
	g.broker.Start(context.Background())
	return nil
}

// retire stops prev once the calls that hold it are done: discovery
// first, then the plugins the serving generation does not share.
func (d *Daemon) retire(prev *generation) {
	ctx, cancel := context.WithTimeout(context.Background(), prev.cfg.Server.ShutdownTimeout)
	defer cancel()
	if prev.broker != nil {
		prev.broker.Close()
	}
	if err := prev.retire(ctx); err != nil {
		d.log.Warn("stopping the previous configuration's plugins under calls", "error", err)
	}
	if prev.plugins != nil {
		if err := prev.plugins.Close(ctx); err != nil {
			d.log.Warn("stopping the previous configuration's plugins", "error", err)
		}
	}
}

// fixedChanges lists the key paths, outside reloadable, whose values
// differ between a and b, sorted.
func fixedChanges(a, b *config.Config) []string {
	var out []string
	diffValues(reflect.ValueOf(*a), reflect.ValueOf(*b), "", &out)
	slices.Sort(out)
	return out
}

func diffValues(a, b reflect.Value, path string, out *[]string) {
	if isReloadable(path) {
		return
	}
	switch {
	case a.Kind() == reflect.Struct:
		for i := range a.NumField() {
			f := a.Type().Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("koanf"), ",")
			if !f.IsExported() || key == "" {
				continue
			}
			diffValues(a.Field(i), b.Field(i), joinPath(path, key), out)
		}
	case a.Kind() == reflect.Map && a.Type().Key().Kind() == reflect.String && a.Type().Elem().Kind() == reflect.Struct:
		keys := map[string]bool{}
		for _, m := range []reflect.Value{a, b} {
			for _, k := range m.MapKeys() {
				keys[k.String()] = true
			}
		}
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			av, bv := a.MapIndex(reflect.ValueOf(k)), b.MapIndex(reflect.ValueOf(k))
			if !av.IsValid() || !bv.IsValid() {
				*out = append(*out, joinPath(path, k))
				continue
			}
			diffValues(av, bv, joinPath(path, k), out)
		}
	default:
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, path)
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// isReloadable reports whether path is one of reloadable.
func isReloadable(path string) bool {
	segs := strings.Split(path, ".")
	for _, r := range reloadable {
		rs := strings.Split(r, ".")
		if len(rs) != len(segs) {
			continue
		}
		match := true
		for i := range rs {
			if rs[i] != "*" && rs[i] != segs[i] {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}
