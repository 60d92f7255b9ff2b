package daemon

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/internal/cliwire"
	"github.com/spectroauth/spectroauth/host/kube/kubecli"
)

// devLogin is a kubecli OpenBrowser that signs in as alice on the
// development provider's login page, confirms on the daemon's consent page
// and follows the redirects on to the command's loopback address.
func devLogin(t *testing.T, base string) func(string) error {
	return func(start string) error {
		go func() {
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
			_, page, err := devSignIn(c, start, base, "alice")
			if err != nil {
				t.Errorf("browser: %v", err)
				return
			}
			// The daemon asks the user to confirm the command line's sign-in.
			form, err := cliwire.ParseConsentPage([]byte(page))
			if err != nil {
				t.Errorf("browser: %v: %s", err, page)
				return
			}
			form.Fields.Set("decision", "allow")
			res, err := c.PostForm(base+form.Action, form.Fields)
			if err != nil {
				t.Errorf("browser: confirming: %v", err)
				return
			}
			res.Body.Close()
		}()
		return nil
	}
}

// TestKubernetesThroughPlugins wires kubernetes: to the plugin host: a
// static cluster and a discovered one, both with the test plugin's "token"
// strategy, the catalog, the audit file, and the command line's sign-in.
func TestKubernetesThroughPlugins(t *testing.T) {
	path, digest := buildTestPlugin(t)
	audit := filepath.Join(t.TempDir(), "audit.log")
	d, base, err := startDevWith(t, func(cfg *config.Config) {
		cfg.Server.MetricsListen = freeAddr(t)
		cfg.Plugins = map[string]config.Plugin{"tp": {Command: path, SHA256: digest, CallTimeout: 5 * time.Second}}
		token := config.StrategyRef{Plugin: "tp", Strategy: "token"}
		cfg.Kubernetes.Clusters = []config.Cluster{{Name: "static-one", URL: "https://static.example.com:6443", Strategy: token}}
		cfg.Kubernetes.Sources = []config.Source{{Plugin: "tp", Interval: time.Minute, Strategy: token}}
		cfg.Kubernetes.Audit.Sink = audit
		cfg.Kubernetes.Catalog.Public = true
	})
	if err != nil {
		t.Fatal(err)
	}

	// The source's first listing runs in the background.
	var catalog string
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(catalog, "name: alpha"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the discovered cluster never reached the catalog:\n%s", catalog)
		}
		res, err := http.Get(base + "/api/auth/spectrocloud/kubernetes/catalog-info.yaml")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		catalog = string(b)
	}
	if !strings.Contains(catalog, "name: static-one") || !strings.Contains(catalog, "kubernetes.io/api-server: https://alpha.example.com:6443") {
		t.Errorf("catalog:\n%s", catalog)
	}

	cli := &kubecli.Client{Server: base, CacheDir: t.TempDir(), Interactive: true, OpenBrowser: devLogin(t, base), LoginTimeout: 30 * time.Second}
	ctx := context.Background()
	if user, err := cli.Login(ctx); err != nil || user != "user:default/alice" {
		t.Fatalf("login: %q %v", user, err)
	}
	for _, cluster := range []string{"alpha", "static-one"} {
		cred, err := cli.Credential(ctx, cluster)
		if err != nil || cred.Token != "tok-"+cluster+"-alice" {
			t.Errorf("%s: %v %v", cluster, cred, err)
		}
	}
	if _, err := cli.Credential(ctx, "nope"); err == nil || !strings.Contains(err.Error(), "Unknown cluster 'nope'") {
		t.Errorf("unknown cluster: %v", err)
	}

	fi, err := os.Stat(audit)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit file: %v %v", fi, err)
	}
	b, _ := os.ReadFile(audit)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 {
		t.Fatalf("audit lines:\n%s", b)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["outcome"] != "granted" || first["cluster"] != "alpha" || first["strategy"] != "tp/token" || first["user"] != "user:default/alice" {
		t.Errorf("audit line = %v", first)
	}
	if strings.Contains(string(b), "tok-") {
		t.Errorf("a token reached the audit log")
	}
	if !strings.Contains(lines[2], `"reason":"unknown-cluster"`) {
		t.Errorf("refusal line = %s", lines[2])
	}
	// The metrics count what the audit log holds (and no cluster name a
	// caller made up).
	m := scrape(t, d)
	for _, want := range []string{
		`spectroauth_kube_credentials_total{outcome="granted",reason=""} 2`,
		`spectroauth_signins_total{client="cli",env="development",outcome="signed-in"} 1`,
		`spectroauth_kube_credentials_total{outcome="refused",reason="unknown-cluster"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(m, "nope") {
		t.Error("/metrics holds a cluster name from a request")
	}
}

// TestShutdownDuringAClusterListing: a cluster source's listing in flight
// does not hold the daemon's shutdown up: discovery stops before the
// plugins are drained.
func TestShutdownDuringAClusterListing(t *testing.T) {
	path, digest := buildTestPlugin(t)
	d, _, err := startDevWith(t, func(cfg *config.Config) {
		cfg.Plugins = map[string]config.Plugin{"tp": {Command: path, SHA256: digest, CallTimeout: time.Minute}}
		cfg.Kubernetes.Sources = []config.Source{{Plugin: "tp", Interval: time.Minute, Options: map[string]any{"listDelay": "50s"}}}
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the first listing is under way
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	err = d.Close(ctx)
	if took := time.Since(began); err != nil || took > 3*time.Second {
		t.Errorf("Close took %s: %v", took.Round(time.Millisecond), err)
	}
}
