package kubecli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spectroauth/spectroauth/host/devprovider"
	"github.com/spectroauth/spectroauth/host/kube"
	"github.com/spectroauth/spectroauth/host/kube/internal/kubetest"
	"github.com/spectroauth/spectroauth/host/kube/kubecli"
	"github.com/spectroauth/spectroauth/sdk"
)

// counting is a strategy that hands the ID token out and counts calls.
type counting struct {
	calls atomic.Int64
	ttl   atomic.Int64 // credential lifetime in seconds; 0: the ID token's
}

func (c *counting) Credential(_ context.Context, req sdk.CredentialRequest) (sdk.Credential, error) {
	c.calls.Add(1)
	exp := req.Session.IDTokenExpiresAt
	if ttl := c.ttl.Load(); ttl != 0 {
		exp = time.Now().Add(time.Duration(ttl) * time.Second)
	}
	// Slow enough that concurrent callers overlap.
	time.Sleep(20 * time.Millisecond)
	return sdk.Credential{Token: req.Session.IDToken, ExpiresAt: exp}, nil
}

type env struct {
	d        *kubetest.Daemon
	strategy *counting
	cache    string
}

func setup(t *testing.T) *env {
	e := &env{strategy: &counting{}, cache: t.TempDir()}
	e.d = kubetest.Start(t, kubetest.Options{Clusters: func(d *kubetest.Daemon) []kube.Cluster {
		return []kube.Cluster{{
			Cluster:  sdk.Cluster{Name: "prod", Server: "https://prod.k8s.example.com:6443", CAData: d.OPCAPEM},
			Strategy: &kube.StrategyBinding{Plugin: "test", Strategy: "oidc", Impl: e.strategy},
		}}
	}})
	return e
}

// run runs a command in-process and returns exit status, stdout, stderr.
func (e *env) run(t *testing.T, cmd func(context.Context, []string, kubecli.IO) int, interactive bool, execInfo string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	o := kubecli.IO{
		Stdout: &stdout, Stderr: &stderr,
		Getenv: func(k string) string {
			if k == "KUBERNETES_EXEC_INFO" {
				return execInfo
			}
			return ""
		},
		IsTerminal:   func() bool { return interactive },
		OpenBrowser:  e.d.OpenBrowser,
		Executable:   func() (string, error) { return "/usr/local/bin/spectroauthd", nil },
		LoginTimeout: 20 * time.Second,
	}
	code := cmd(context.Background(), append([]string{"--server", e.d.URL, "--cache-dir", e.cache}, args...), o)
	return code, stdout.String(), stderr.String()
}

func decodeExec(t *testing.T, out string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("stdout is not JSON: %v: %q", err, out)
	}
	return m
}

func TestKubeCredential(t *testing.T) {
	e := setup(t)

	// Not signed in, not interactive: a clear error, nothing on stdout.
	code, out, errOut := e.run(t, kubecli.KubeCredential, false, "", "--cluster", "prod")
	if code == 0 || out != "" || !strings.Contains(errOut, "not signed in") || !strings.Contains(errOut, "spectroauthd login --server "+e.d.URL) {
		t.Fatalf("non-interactive without a session: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Interactive: the browser sign-in runs, then the credential is issued.
	code, out, errOut = e.run(t, kubecli.KubeCredential, true, "", "--cluster", "prod")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "/api/auth/spectrocloud/cli/start?") || !strings.Contains(errOut, "Signed in to "+e.d.URL+" as user:default/alice") {
		t.Errorf("stderr = %q", errOut)
	}
	m := decodeExec(t, out)
	status := m["status"].(map[string]any)
	if m["apiVersion"] != kubecli.ExecAPIVersion || m["kind"] != "ExecCredential" || status["token"] == "" {
		t.Errorf("ExecCredential = %v", m)
	}
	exp, err := time.Parse(time.RFC3339, status["expirationTimestamp"].(string))
	if err != nil || time.Until(exp) < 50*time.Minute {
		t.Errorf("expirationTimestamp = %v (%v)", status["expirationTimestamp"], err)
	}
	if strings.Count(out, "\n") != 1 {
		t.Errorf("stdout has more than the ExecCredential: %q", out)
	}

	// The cache answers the next calls; files are private.
	for range 3 {
		if code, out2, _ := e.run(t, kubecli.KubeCredential, false, "", "--cluster", "prod"); code != 0 || out2 != out {
			t.Fatalf("cached call: exit %d, %q", code, out2)
		}
	}
	if n := e.strategy.calls.Load(); n != 1 {
		t.Errorf("strategy called %d times, want 1 (cached)", n)
	}
	checkPrivate(t, e.cache)

	// kubectl's exec info: v1beta1 is echoed, the cluster may come from the
	// cluster's exec extension, interactive=false is honoured.
	info := `{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{"interactive":false,"cluster":{"server":"https://prod.k8s.example.com:6443","config":{"cluster":"prod"}}}}`
	code, out, errOut = e.run(t, kubecli.KubeCredential, true, info)
	if code != 0 || decodeExec(t, out)["apiVersion"] != kubecli.ExecAPIVersionBeta1 {
		t.Errorf("v1beta1 exec info: exit %d, %s %s", code, out, errOut)
	}
	if code, _, errOut := e.run(t, kubecli.KubeCredential, false, `{"apiVersion":"client.authentication.k8s.io/v1alpha1"}`, "--cluster", "prod"); code == 0 || !strings.Contains(errOut, "v1alpha1") {
		t.Errorf("v1alpha1: exit %d, %s", code, errOut)
	}

	// Refusals reach the user on stderr with the daemon's message.
	if code, out, errOut := e.run(t, kubecli.KubeCredential, false, "", "--cluster", "nope"); code == 0 || out != "" || !strings.Contains(errOut, "Unknown cluster 'nope'") {
		t.Errorf("unknown cluster: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, errOut := e.run(t, kubecli.KubeCredential, false, ""); code == 0 || !strings.Contains(errOut, "--cluster is required") {
		t.Errorf("no cluster: exit %d, %s", code, errOut)
	}

	// An expiring cached credential is replaced.
	e.strategy.ttl.Store(30)
	files, _ := filepath.Glob(filepath.Join(e.cache, "credentials", "*.json"))
	for _, f := range files {
		_ = os.Remove(f)
	}
	before := e.strategy.calls.Load()
	e.run(t, kubecli.KubeCredential, false, "", "--cluster", "prod") // cached for 30s: inside the margin
	e.run(t, kubecli.KubeCredential, false, "", "--cluster", "prod")
	if n := e.strategy.calls.Load() - before; n != 2 {
		t.Errorf("a credential within a minute of expiry was reused (%d calls, want 2)", n)
	}

	// After logout: a clear error again, and the daemon's session is gone.
	if code, _, errOut := e.run(t, kubecli.Logout, false, ""); code != 0 || !strings.Contains(errOut, "Signed out") {
		t.Fatalf("logout: exit %d, %s", code, errOut)
	}
	if code, _, errOut := e.run(t, kubecli.KubeCredential, false, "", "--cluster", "prod"); code == 0 || !strings.Contains(errOut, "not signed in") {
		t.Errorf("after logout: exit %d, %s", code, errOut)
	}
}

func checkPrivate(t *testing.T, root string) {
	t.Helper()
	n := 0
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		fi, _ := d.Info()
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		n++
		return nil
	})
	if n < 4 {
		t.Errorf("only %d cache entries", n)
	}
}

func TestConcurrentInvocationsShareOneCredential(t *testing.T) {
	e := setup(t)
	c := &kubecli.Client{Server: e.d.URL, CacheDir: e.cache, Interactive: true, OpenBrowser: e.d.OpenBrowser, LoginTimeout: 20 * time.Second}
	if _, err := c.Login(context.Background()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	outs := make([]string, 8)
	codes := make([]int, 8)
	for i := range outs {
		wg.Go(func() { codes[i], outs[i], _ = e.run(t, kubecli.KubeCredential, false, "", "--cluster", "prod") })
	}
	wg.Wait()
	for i := range outs {
		if codes[i] != 0 || outs[i] != outs[0] {
			t.Errorf("invocation %d: exit %d, %q", i, codes[i], outs[i])
		}
	}
	if n := e.strategy.calls.Load(); n != 1 {
		t.Errorf("8 concurrent invocations called the strategy %d times, want 1", n)
	}
	lines := strings.Count(e.d.Audit.String(), "\n")
	if lines != 1 {
		t.Errorf("%d audit lines, want 1", lines)
	}
}

func TestSessionEndedAtTheDaemon(t *testing.T) {
	e := setup(t)
	c := &kubecli.Client{Server: e.d.URL, CacheDir: e.cache, Interactive: true, OpenBrowser: e.d.OpenBrowser, LoginTimeout: 20 * time.Second}
	if _, err := c.Login(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Another copy of the session signs out: this one's cached access
	// token is refused, the handle too, and it says to sign in again.
	other := filepath.Join(t.TempDir(), "other")
	if err := os.CopyFS(other, os.DirFS(e.cache)); err != nil {
		t.Fatal(err)
	}
	if err := (&kubecli.Client{Server: e.d.URL, CacheDir: other}).Logout(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Interactive = false
	_, err := c.Credential(context.Background(), "prod")
	if !errors.Is(err, kubecli.ErrNotSignedIn) {
		t.Errorf("Credential after the session ended = %v, want ErrNotSignedIn", err)
	}
	// Interactive again: it signs in anew and succeeds.
	c.Interactive = true
	if _, err := c.Credential(context.Background(), "prod"); err != nil {
		t.Errorf("Credential with a new sign-in: %v", err)
	}
}

func TestKubeconfig(t *testing.T) {
	e := setup(t)
	// Needs a session to ask the daemon for the cluster; signs in at a terminal.
	code, out, errOut := e.run(t, kubecli.Kubeconfig, true, "", "--cluster", "prod", "--namespace", "team-a")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var kc struct {
		CurrentContext string `yaml:"current-context"`
		Clusters       []struct {
			Name    string
			Cluster map[string]string
		}
		Users []struct {
			Name string
			User struct {
				Exec struct {
					APIVersion      string `yaml:"apiVersion"`
					Command         string
					Args            []string
					InteractiveMode string `yaml:"interactiveMode"`
				}
			}
		}
		Contexts []struct {
			Name    string
			Context map[string]string
		}
	}
	if err := yaml.Unmarshal([]byte(out), &kc); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, out)
	}
	if kc.CurrentContext != "prod" || len(kc.Clusters) != 1 || kc.Clusters[0].Cluster["server"] != "https://prod.k8s.example.com:6443" || kc.Clusters[0].Cluster["certificate-authority-data"] == "" {
		t.Errorf("kubeconfig:\n%s", out)
	}
	ex := kc.Users[0].User.Exec
	wantArgs := []string{"kube-credential", "--server", e.d.URL, "--cluster", "prod", "--cache-dir", e.cache}
	if ex.APIVersion != kubecli.ExecAPIVersion || ex.Command != "/usr/local/bin/spectroauthd" || ex.InteractiveMode != "IfAvailable" || strings.Join(ex.Args, " ") != strings.Join(wantArgs, " ") {
		t.Errorf("exec = %+v", ex)
	}
	if c := kc.Contexts[0]; c.Context["cluster"] != "prod" || c.Context["user"] != kc.Users[0].Name || c.Context["namespace"] != "team-a" {
		t.Errorf("context = %+v", c)
	}

	// Without the daemon: from flags.
	ca := filepath.Join(t.TempDir(), "ca.pem")
	_ = os.WriteFile(ca, e.d.OPCAPEM, 0o600)
	code, out, _ = e.run(t, kubecli.Kubeconfig, false, "", "--cluster", "x", "--cluster-server", "https://x.example.com", "--cluster-ca-file", ca, "--command", "spectroauthd")
	if code != 0 || !strings.Contains(out, "server: https://x.example.com") || !strings.Contains(out, "command: spectroauthd") {
		t.Errorf("from flags: exit %d\n%s", code, out)
	}
	if code, _, errOut := e.run(t, kubecli.Kubeconfig, false, "", "--cluster", "nope"); code == 0 || !strings.Contains(errOut, `no cluster "nope"`) {
		t.Errorf("unknown cluster: exit %d, %s", code, errOut)
	}
}

func TestServerURLChecks(t *testing.T) {
	var stderr bytes.Buffer
	o := kubecli.IO{Stdout: &bytes.Buffer{}, Stderr: &stderr, Getenv: func(string) string { return "" }, IsTerminal: func() bool { return false }}
	for _, args := range [][]string{
		{"--cluster", "prod"},
		{"--cluster", "prod", "--server", "http://auth.example.com"},
		{"--cluster", "prod", "--server", "not a url"},
	} {
		stderr.Reset()
		if code := kubecli.KubeCredential(context.Background(), args, o); code == 0 || stderr.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}

func TestSignInAsAnotherUserDropsTheCachedCredential(t *testing.T) {
	verified := true
	e := &env{strategy: &counting{}, cache: t.TempDir()}
	e.d = kubetest.Start(t, kubetest.Options{
		Users: []devprovider.User{
			{Username: "alice", Email: "alice@example.com", EmailVerified: &verified},
			{Username: "carol", Email: "carol@example.com", EmailVerified: &verified},
		},
		Clusters: func(d *kubetest.Daemon) []kube.Cluster {
			return []kube.Cluster{{
				Cluster:  sdk.Cluster{Name: "prod", Server: "https://prod.k8s.example.com:6443"},
				Strategy: &kube.StrategyBinding{Plugin: "test", Strategy: "oidc", Impl: e.strategy},
			}}
		},
	})
	tokenOf := func(out string) string {
		t.Helper()
		tok, _ := decodeExec(t, out)["status"].(map[string]any)["token"].(string)
		return tok
	}
	code, out, errOut := e.run(t, kubecli.KubeCredential, true, "", "--cluster", "prod")
	if code != 0 || !strings.Contains(errOut, "as user:default/alice") {
		t.Fatalf("first sign-in: exit %d, %s", code, errOut)
	}
	alice := tokenOf(out)

	// The same person signs in again, as another user: the credential
	// cached for the first one is not theirs.
	if err := e.d.OP.SetSelectedUser("carol"); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := e.run(t, kubecli.Login, true, ""); code != 0 || !strings.Contains(errOut, "as user:default/carol") {
		t.Fatalf("login as carol: exit %d, %s", code, errOut)
	}
	code, out, errOut = e.run(t, kubecli.KubeCredential, false, "", "--cluster", "prod")
	if code != 0 {
		t.Fatalf("credential after the new sign-in: exit %d, %s", code, errOut)
	}
	if tokenOf(out) == alice {
		t.Fatal("kube-credential handed carol the credential cached for alice")
	}
	if n := e.strategy.calls.Load(); n != 2 {
		t.Errorf("strategy called %d times, want 2 (once per user)", n)
	}
	if !strings.Contains(e.d.Audit.String(), `"user":"user:default/carol"`) {
		t.Errorf("no grant to carol in the audit log:\n%s", e.d.Audit.String())
	}
}
