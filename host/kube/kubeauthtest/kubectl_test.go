package kubeauthtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"

	"github.com/spectroauth/spectroauth/host/kube/kubecli"
)

// apiServer is the smallest Kubernetes API server kubectl auth whoami
// needs, authenticating every request with kube-apiserver's own JWT
// authenticator: discovery (/api, /apis, /version) and SelfSubjectReview.
type apiServer struct {
	srv *httptest.Server

	mu       sync.Mutex
	auth     authenticator.Token // set once the provider is known
	requests []string
}

func (a *apiServer) setAuthenticator(auth authenticator.Token) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.auth = auth
}

func newAPIServer(t *testing.T) *apiServer {
	a := &apiServer{}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	return a
}

func (a *apiServer) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw})
}

func (a *apiServer) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.requests)
}

// status writes a metav1.Status, as the API server does for errors.
func status(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code,
	})
}

func (a *apiServer) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.requests = append(a.requests, r.Method+" "+r.URL.Path)
	auth := a.auth
	a.mu.Unlock()

	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || auth == nil {
		status(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized")
		return
	}
	res, ok, err := auth.AuthenticateToken(r.Context(), token)
	if err != nil || !ok {
		status(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api":
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": "APIVersions", "versions": []string{"v1"},
			"serverAddressByClientCIDRs": []any{map[string]any{"clientCIDR": "0.0.0.0/0", "serverAddress": r.Host}}})
	case r.Method == http.MethodGet && r.URL.Path == "/apis":
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": "APIGroupList", "apiVersion": "v1", "groups": []any{map[string]any{
			"name":             "authentication.k8s.io",
			"versions":         []any{map[string]any{"groupVersion": "authentication.k8s.io/v1", "version": "v1"}},
			"preferredVersion": map[string]any{"groupVersion": "authentication.k8s.io/v1", "version": "v1"},
		}}})
	case r.Method == http.MethodGet && r.URL.Path == "/apis/authentication.k8s.io/v1":
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "authentication.k8s.io/v1",
			"resources": []any{map[string]any{"name": "selfsubjectreviews", "singularName": "selfsubjectreview", "namespaced": false, "kind": "SelfSubjectReview", "verbs": []string{"create"}}}})
	case r.Method == http.MethodGet && r.URL.Path == "/version":
		_ = json.NewEncoder(w).Encode(map[string]any{"major": "1", "minor": "32", "gitVersion": "v1.32.0-spectroauth-test", "platform": "linux/amd64"})
	case r.Method == http.MethodPost && r.URL.Path == "/apis/authentication.k8s.io/v1/selfsubjectreviews":
		groups := append(slices.Clone(res.User.GetGroups()), "system:authenticated")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
			"metadata": map[string]any{"creationTimestamp": nil},
			"status":   map[string]any{"userInfo": map[string]any{"username": res.User.GetName(), "groups": groups}},
		})
	default:
		status(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
	}
}

// buildDaemon builds spectroauthd, the command kubeconfig files run.
func buildDaemon(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(t.TempDir(), "spectroauthd")
	cmd := exec.Command(goBin, "build", "-o", out, "github.com/spectroauth/spectroauth/host")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building spectroauthd: %v\n%s", err, b)
	}
	return out
}

// TestKubectlWhoAmI runs the real kubectl with spectroauthd kube-credential
// as its exec credential plugin against an API server that authenticates
// with kube-apiserver's authenticator: sign-in (through the daemon's CLI
// routes, the provider approving automatically), credential, kubectl.
func TestKubectlWhoAmI(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		const why = "kubectl is not installed (Debian package kubernetes-client; .ci/run installs it)"
		if os.Getenv("CI") != "" {
			t.Fatal(why + ", and CI is set: this fails rather than skips")
		}
		t.Skip(why)
	}
	api := newAPIServer(t)
	d, _ := withOIDCCluster(t, api.srv.URL, api.caPEM())
	api.setAuthenticator(kubeAuthenticator(t, d.OP.Issuer(), d.OPCAPEM, d.ClientID))
	daemonBin := buildDaemon(t)
	cache := t.TempDir()
	home := t.TempDir()
	ctx := context.Background()

	// Sign the command line in: what `spectroauthd login` does, with the
	// test browser instead of the user's.
	cli := &kubecli.Client{Server: d.URL, CacheDir: cache, Interactive: true, OpenBrowser: d.OpenBrowser, LoginTimeout: 30 * time.Second}
	if user, err := cli.Login(ctx); err != nil || user != "user:default/alice" {
		t.Fatalf("login: %q %v", user, err)
	}

	// The kubeconfig spectroauthd prints, asking the daemon for the cluster.
	var kubeconfig, stderr bytes.Buffer
	code := kubecli.Kubeconfig(ctx, []string{"--server", d.URL, "--cluster", "prod", "--cache-dir", cache, "--command", daemonBin},
		kubecli.IO{Stdout: &kubeconfig, Stderr: &stderr, IsTerminal: func() bool { return false }})
	if code != 0 {
		t.Fatalf("kubeconfig: %s", stderr.String())
	}
	kcPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (string, string, error) {
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kcPath}, args...)...)
		cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		return out.String(), errOut.String(), err
	}
	out, errOut, err := run("auth", "whoami", "-o", "json")
	if err != nil {
		t.Fatalf("kubectl auth whoami: %v\nstdout: %s\nstderr: %s\nAPI requests: %v", err, out, errOut, api.seen())
	}
	var review struct {
		Kind   string
		Status struct {
			UserInfo struct {
				Username string
				Groups   []string
			} `json:"userInfo"`
		}
	}
	if err := json.Unmarshal([]byte(out), &review); err != nil {
		t.Fatalf("kubectl's output is not JSON: %v\n%s", err, out)
	}
	if review.Kind != "SelfSubjectReview" || review.Status.UserInfo.Username != "alice@example.com" ||
		!slices.Contains(review.Status.UserInfo.Groups, "dev") || !slices.Contains(review.Status.UserInfo.Groups, "ops") {
		t.Errorf("kubectl auth whoami = %+v", review)
	}
	t.Logf("kubectl auth whoami called: %v", api.seen())

	// The table form, from the cached credential: one grant for both runs.
	out, errOut, err = run("auth", "whoami")
	if err != nil || !strings.Contains(out, "alice@example.com") || !strings.Contains(out, "[dev ops system:authenticated]") {
		t.Errorf("kubectl auth whoami (table): %v\n%s\n%s", err, out, errOut)
	}
	if n := strings.Count(d.Audit.String(), `"outcome":"granted"`); n != 1 {
		t.Errorf("%d grants audited for two kubectl runs, want 1 (the second one cached):\n%s", n, d.Audit.String())
	}

	// Without a session and without a terminal, kubectl fails with our
	// message (the exec plugin's stderr reaches the user) and never hangs
	// waiting for a browser.
	if err := os.RemoveAll(cache); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = run("auth", "whoami")
	if err == nil || !strings.Contains(errOut, "not signed in") || !strings.Contains(errOut, "spectroauthd login --server "+d.URL) {
		t.Errorf("kubectl without a session: err=%v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
}
