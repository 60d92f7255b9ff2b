package daemon

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/config"
)

// catalogOf reads the daemon's public cluster catalog.
func catalogOf(t *testing.T, base string) string {
	t.Helper()
	res, err := http.Get(base + "/api/auth/spectrocloud/kubernetes/catalog-info.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// TestReloadSwapsClustersAndSources: a reload adds a static cluster and a
// cluster source (listed before the swap, so the catalog holds its
// clusters as soon as Reload returns), keeps the unchanged plugin running,
// and a later reload takes them away; a reload that changes a setting
// bound at start is refused naming it, and changes nothing.
func TestReloadSwapsClustersAndSources(t *testing.T) {
	path, digest := buildTestPlugin(t)
	var start config.Config
	d, base, err := startDevWith(t, func(cfg *config.Config) {
		cfg.Server.MetricsListen = freeAddr(t)
		cfg.Plugins = map[string]config.Plugin{"tp": {Command: path, SHA256: digest, CallTimeout: 5 * time.Second}}
		cfg.Kubernetes.Catalog.Public = true
		start = *cfg
	})
	if err != nil {
		t.Fatal(err)
	}
	pid := d.Plugins().Plugins()[0].PID
	reload := func(edit func(*config.Config)) (ReloadResult, error) {
		next := start
		edit(&next)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return d.Reload(ctx, &next)
	}

	token := config.StrategyRef{Plugin: "tp", Strategy: "token"}
	r, err := reload(func(c *config.Config) {
		c.Kubernetes.Clusters = []config.Cluster{{Name: "static-one", URL: "https://static.example.com:6443", Strategy: token}}
		c.Kubernetes.Sources = []config.Source{{Plugin: "tp", Interval: time.Minute, Strategy: token}}
	})
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if r.Generation != 2 || len(r.Started) != 0 || len(r.Stopped) != 0 || !slices.Equal(r.Kept, []string{"tp"}) {
		t.Fatalf("Reload = %+v, want generation 2 with tp kept", r)
	}
	if cat := catalogOf(t, base); !strings.Contains(cat, "name: static-one") || !strings.Contains(cat, "name: alpha") {
		t.Fatalf("after the reload the catalog lacks the new clusters:\n%s", cat)
	}
	if got := d.Plugins().Plugins()[0].PID; got != pid {
		t.Fatalf("the unchanged plugin was restarted: pid %d, was %d", got, pid)
	}

	if _, err := reload(func(c *config.Config) {}); err != nil {
		t.Fatalf("Reload back: %v", err)
	}
	if cat := catalogOf(t, base); strings.Contains(cat, "static-one") || strings.Contains(cat, "alpha") {
		t.Fatalf("after the reload back the catalog still lists the clusters:\n%s", cat)
	}

	_, err = reload(func(c *config.Config) {
		c.Server.ShutdownTimeout = time.Hour
		c.Kubernetes.Catalog.Owner = "group:default/other"
	})
	if err == nil || !strings.Contains(err.Error(), "kubernetes.catalog.owner, server.shutdownTimeout cannot change while the daemon runs") {
		t.Fatalf("Reload of settings bound at start = %v, want a refusal naming both", err)
	}
	m := scrape(t, d)
	for _, want := range []string{
		`spectroauth_config_reloads_total{result="ok"} 2`,
		`spectroauth_config_reloads_total{result="refused"} 1`,
		"spectroauth_config_generation 3",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestAdminSocket: the admin socket, 0600, runs a reload and answers what
// it did, or why it was refused.
func TestAdminSocket(t *testing.T) {
	loaded := 0
	var good *config.Config
	opts := Options{LoadConfig: func() (*config.Config, error) {
		loaded++
		if loaded == 1 {
			return nil, errors.New("auth.providers: broken on purpose")
		}
		return good, nil
	}}
	dir := t.TempDir()
	opts.AdminSocket = filepath.Join(dir, AdminSocketName)
	d, _ := startDevOpts(t, opts)
	good = d.gens.load().cfg

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := AskReload(ctx, opts.AdminSocket); err == nil || !strings.Contains(err.Error(), "refused, the running configuration serves on: the configuration is not valid: auth.providers: broken on purpose") {
		t.Fatalf("AskReload with a broken configuration = %v", err)
	}
	msg, err := AskReload(ctx, opts.AdminSocket)
	if err != nil || !strings.HasPrefix(msg, "reloaded: 0 plugins started, 0 stopped (configuration generation 2") {
		t.Fatalf("AskReload = %q, %v", msg, err)
	}
	if info, err := os.Stat(opts.AdminSocket); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, %v; want mode 0600", info, err)
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(opts.AdminSocket); err == nil {
		t.Fatal("the admin socket outlived the daemon")
	}
}
