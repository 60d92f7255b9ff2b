package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/config"
)

// buildTestPlugin builds the plugin host's test plugin and returns its path
// and digest.
func buildTestPlugin(t *testing.T) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "testplugin")
	if out, err := exec.Command("go", "build", "-o", path, "../pluginhost/testdata/testplugin").CombinedOutput(); err != nil {
		t.Fatalf("building the test plugin: %v\n%s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return path, hex.EncodeToString(sum[:])
}

// startDevWith runs the daemon on its development defaults, changed by edit.
func startDevWith(t *testing.T, edit func(*config.Config)) (*Daemon, string, error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://localhost:" + portOf(l.Addr())
	cfg, err := config.Load("", config.WithEnv(map[string]string{
		"SPECTROAUTH_SERVER__LISTEN":                                     l.Addr().String(),
		"SPECTROAUTH_SERVER__BASEURL":                                    base,
		"SPECTROAUTH_APP__BASEURL":                                       base,
		"SPECTROAUTH_AUTH__PROVIDERS__SPECTROCLOUD__DEVELOPMENT__ISSUER": base + DevProviderPath,
		"SPECTROAUTH_STORAGE__PATH":                                      t.TempDir(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := Start(ctx, cfg, Options{Listener: l})
	if err != nil {
		l.Close()
		return nil, base, err
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	return d, base, nil
}

// usePlugin declares the test plugin as "tp" and makes its resolver the
// only step of the development sign-in chain.
func usePlugin(path, digest string) func(*config.Config) {
	return func(cfg *config.Config) {
		cfg.Plugins = map[string]config.Plugin{"tp": {Command: path, SHA256: digest, CallTimeout: 5 * time.Second}}
		dev := cfg.Auth.Providers.SpectroCloud["development"]
		dev.SignIn.Resolvers = []config.ResolverRef{{Plugin: "tp", Resolver: "byEmail", Options: map[string]any{"tag": "x"}}}
		cfg.Auth.Providers.SpectroCloud["development"] = dev
	}
}

// TestPluginResolverSignsIn signs alice in through a plugin resolver, the
// only step of the chain, and stops the plugin with the daemon.
func TestPluginResolverSignsIn(t *testing.T) {
	path, digest := buildTestPlugin(t)
	d, base, err := startDevWith(t, usePlugin(path, digest))
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %d", res.StatusCode)
	}

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	code, frame, err := devSignIn(c, base+"/api/auth/spectrocloud/start?scope=openid&origin="+url.QueryEscape(base)+"&flow=popup&env=development", base, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusOK || !strings.Contains(frame, "user%3Adefault%2Falice") {
		t.Fatalf("sign-in through the plugin did not give alice's identity (%d): %s", code, frame)
	}
	st := d.Plugins().Plugins()
	if len(st) != 1 || st[0].Calls != 1 || st[0].State != "up" {
		t.Errorf("plugin status = %+v", st)
	}

	pid := st[0].PID
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err != nil || strings.Contains(string(b), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin outlived the daemon")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPluginStartFailureNamesTheKey: a plugin that may not run fails the
// daemon's start, naming the configuration key.
func TestPluginStartFailureNamesTheKey(t *testing.T) {
	path, _ := buildTestPlugin(t)
	_, _, err := startDevWith(t, usePlugin(path, strings.Repeat("0", 64)))
	if err == nil || !strings.Contains(err.Error(), "starting plugins: plugins.tp.sha256: plugin binary "+path+" has SHA-256") {
		t.Fatalf("Start = %v", err)
	}
}

// TestPluginStartFailureComesFirst: the parts of the daemon that need no
// plugin are built while the plugins start, but when a plugin fails as
// well as something built meanwhile (here the provider's discovery), the
// start still reports the plugin, as when the plugins were waited for first.
func TestPluginStartFailureComesFirst(t *testing.T) {
	path, _ := buildTestPlugin(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := "http://" + closed.Addr().String()
	closed.Close()
	_, _, err = startDevWith(t, func(cfg *config.Config) {
		usePlugin(path, strings.Repeat("0", 64))(cfg)
		cfg.DevProvider.Enabled = false
		dev := cfg.Auth.Providers.SpectroCloud["development"]
		dev.Issuer = nowhere
		cfg.Auth.Providers.SpectroCloud["development"] = dev
	})
	if err == nil || !strings.HasPrefix(err.Error(), "starting plugins: plugins.tp.sha256: plugin binary "+path+" has SHA-256") {
		t.Fatalf("Start = %v", err)
	}
}

// TestEarlyFailureStopsLaunchedPlugins: the plugins are launched first,
// before the listeners are opened; when a later step fails the start (here
// the metrics address is taken), the start reports that step and no plugin
// process is left behind.
func TestEarlyFailureStopsLaunchedPlugins(t *testing.T) {
	path, digest := buildTestPlugin(t)
	if kids := childPIDs(t); len(kids) > 0 {
		t.Fatalf("child processes before the start: %v", kids)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, _, err = startDevWith(t, func(cfg *config.Config) {
		usePlugin(path, digest)(cfg)
		cfg.Server.MetricsListen = busy.Addr().String()
	})
	if err == nil || !strings.HasPrefix(err.Error(), "listening on server.metricsListen "+busy.Addr().String()) {
		t.Fatalf("Start = %v", err)
	}
	if kids := childPIDs(t); len(kids) > 0 {
		t.Fatalf("processes left behind by the failed start: %v", kids)
	}
}

// childPIDs lists the test process's children.
func childPIDs(t *testing.T) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	var kids []string
	for _, task := range tasks {
		b, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/children")
		kids = append(kids, strings.Fields(string(b))...)
	}
	return kids
}

// TestPluginStoreDir: the plugin content store lives in storage.path; on
// PostgreSQL storage only where that directory exists, since nothing else
// creates it there.
func TestPluginStoreDir(t *testing.T) {
	data := t.TempDir()
	missing := filepath.Join(data, "missing")
	for _, tt := range []struct {
		name    string
		storage config.Storage
		want    string
	}{
		{"file", config.Storage{Type: "file", Path: missing}, filepath.Join(missing, "plugin-store")},
		{"postgres, data directory exists", config.Storage{Type: "postgres", Path: data}, filepath.Join(data, "plugin-store")},
		{"postgres, no data directory", config.Storage{Type: "postgres", Path: missing}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := pluginStoreDir(&config.Config{Storage: tt.storage}); got != tt.want {
				t.Errorf("pluginStoreDir = %q, want %q", got, tt.want)
			}
		})
	}
}
