package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/knadh/koanf/parsers/yaml"

	"github.com/spectroauth/spectroauth/host/devprovider"
)

// The person who signs in, as the test OpenID provider knows them, and what
// the daemon must make of them (builtin resolver
// emailLocalPartMatchingUserEntityName: user:default/<local part>, owning
// only themselves).
var alice = devprovider.User{
	ID:            "3f1c0a9e-alice",
	Username:      "alice",
	Email:         "alice@example.com",
	EmailVerified: ptr(true),
	GivenName:     "Alice",
	FamilyName:    "Liddell",
	Name:          "Alice Liddell",
	Picture:       "https://example.com/alice.png",
	Groups:        []string{"dev"},
}

const (
	aliceRef = "user:default/alice"
	clientID = "backstage-e2e"
	envName  = "development"
	provider = "spectrocloud"
)

func ptr[T any](v T) *T { return &v }

// requireAll turns missing prerequisites into failures instead of skips
// (CI sets it: there, a silently skipped e2e suite would hide a broken install).
func requireAll() bool { return os.Getenv("SPECTROAUTH_E2E_REQUIRE") != "" }

// skipf skips, or fails under SPECTROAUTH_E2E_REQUIRE.
func skipf(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if requireAll() {
		t.Fatal("e2e cannot run: " + msg + " (SPECTROAUTH_E2E_REQUIRE is set: failing instead of skipping)")
	}
	t.Skip("e2e skipped: " + msg)
}

// paths of this package and its Node folder (go test runs in the package dir).
type paths struct {
	pkg, repo, node, artifacts string
}

func locate(t *testing.T) paths {
	t.Helper()
	pkg, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Clean(filepath.Join(pkg, "..", ".."))
	if _, err := os.Stat(filepath.Join(repo, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s: %v", pkg, err)
	}
	art := os.Getenv("SPECTROAUTH_E2E_ARTIFACTS")
	if art == "" {
		art = filepath.Join(pkg, "artifacts")
	}
	return paths{pkg: pkg, repo: repo, node: filepath.Join(pkg, "testdata", "node"), artifacts: art}
}

// needNode skips unless node and the npm packages of host/e2e/testdata/node are there.
func needNode(t *testing.T, p paths) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		skipf(t, "node not found on PATH (install Node.js 20, then `npm ci` in host/e2e/testdata/node)")
	}
	if _, err := os.Stat(filepath.Join(p.node, "node_modules", ".package-lock.json")); err != nil {
		skipf(t, "host/e2e/testdata/node/node_modules is missing: run `npm ci --ignore-scripts` in host/e2e/testdata/node")
	}
	return node
}

// artifactDir is host/e2e/artifacts/<test>: emptied at the start, removed
// again when the test passes (unless SPECTROAUTH_E2E_KEEP is set), so what
// is left belongs to failures.
func artifactDir(t *testing.T, p paths) string {
	t.Helper()
	dir := filepath.Join(p.artifacts, regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_"))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("artefacts of this failure: %s", dir)
			return
		}
		if os.Getenv("SPECTROAUTH_E2E_KEEP") != "" {
			t.Logf("artefacts kept: %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	return dir
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// daemonBinary is $SPECTROAUTHD (make passes bin/spectroauthd) or a fresh
// build of ./host into a temporary directory.
func daemonBinary(t *testing.T, p paths) string {
	t.Helper()
	if bin := os.Getenv("SPECTROAUTHD"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("SPECTROAUTHD=%s: %v", bin, err)
		}
		return bin
	}
	bin := filepath.Join(t.TempDir(), "spectroauthd")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, "./host")
	cmd.Dir = p.repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./host: %v\n%s", err, out)
	}
	t.Logf("built spectroauthd in %s", time.Since(start).Round(time.Millisecond))
	return bin
}

// buildPlugin builds the plugin in package pkg (relative to the
// repository, e.g. ./plugins/token-exchange) and returns its path and SHA-256.
func buildPlugin(t *testing.T, p paths, pkg string) (string, string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = p.repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return bin, hex.EncodeToString(sum[:])
}

// env is one running setup: the test OpenID provider (in-process) and
// spectroauthd (a subprocess) configured as its relying party.
type env struct {
	paths     paths
	artifacts string
	provider  *devprovider.Provider
	issuer    string
	secret    string
	daemonURL string // http://127.0.0.1:<port>
	dataDir   string // the daemon's storage.path
}

type envOptions struct {
	appBaseURL   string   // the daemon's app.baseUrl
	extraOrigins []string // auth.extraAllowedOrigins
	// kubernetes adds cluster "prod" whose strategy is the test plugin's
	// "token" (credential tok-prod-<sub>).
	kubernetes bool
	// extraConfig is appended to the daemon's configuration (top-level
	// keys not written otherwise, e.g. plugins and kubernetes).
	extraConfig string
}

func startEnv(t *testing.T, p paths, art string, o envOptions) *env {
	t.Helper()
	e := &env{paths: p, artifacts: art, secret: "e2e-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	port := freePort(t)
	e.daemonURL = fmt.Sprintf("http://127.0.0.1:%d", port)

	// The test OpenID provider: auto-approves alice, issues refresh tokens.
	opSrv := newServer(t, nil)
	e.issuer = opSrv.URL
	prov, err := devprovider.New(devprovider.Config{
		Issuer: e.issuer,
		Clients: []devprovider.Client{{
			ID:           clientID,
			Secret:       e.secret,
			RedirectURIs: []string{e.daemonURL + "/api/auth/" + provider + "/handler/frame"},
		}},
		Users:         []devprovider.User{alice},
		AutoApprove:   alice.Username,
		AllowInsecure: true,
		RefreshTokens: true,
	})
	if err != nil {
		t.Fatalf("devprovider: %v", err)
	}
	e.provider = prov
	opSrv.setHandler(prov)

	e.dataDir = t.TempDir()
	cfg := fmt.Sprintf(`server:
  listen: 127.0.0.1:%d
  baseUrl: %q
app:
  baseUrl: %q
auth:
  extraAllowedOrigins: %s
  providers:
    spectrocloud:
      %s:
        issuer: %q
        clientId: %q
        clientSecret: %q
        allowInsecureIssuer: true
        scopes: [openid, profile, email, offline_access]
        signIn:
          resolvers:
            - plugin: builtin
              resolver: emailLocalPartMatchingUserEntityName
storage:
  type: file
  path: %q
devProvider:
  enabled: false
`, port, e.daemonURL, o.appBaseURL, yamlList(o.extraOrigins), envName, e.issuer, clientID, e.secret, e.dataDir)
	if o.kubernetes {
		plugin, digest := buildPlugin(t, p, "./host/pluginhost/testdata/testplugin")
		cfg += fmt.Sprintf(`plugins:
  tp:
    command: %q
    sha256: %q
kubernetes:
  clusters:
    - name: prod
      url: https://prod.example.com:6443
      strategy:
        plugin: tp
        strategy: token
`, plugin, digest)
	}
	cfg += o.extraConfig
	cfgPath := filepath.Join(t.TempDir(), "spectroauthd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	d := startProcess(t, "spectroauthd", filepath.Join(art, "daemon.log"), p.repo, nil,
		daemonBinary(t, p), "-config", cfgPath, "-log-format", "json", "-log-level", "debug")
	if err := waitHTTP(d, e.daemonURL+"/readyz", 30*time.Second); err != nil {
		t.Fatalf("spectroauthd did not get ready: %v\n%s", err, d.tail())
	}
	t.Logf("spectroauthd ready at %s in %s", e.daemonURL, time.Since(start).Round(time.Millisecond))
	return e
}

// yamlList is a flow sequence of quoted strings.
func yamlList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// testServer is an httptest-like loopback server whose handler can be set
// after its URL is known.
type testServer struct {
	URL string
	srv *http.Server
	h   atomic.Pointer[http.Handler]
}

func newServer(t *testing.T, h http.Handler) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{URL: "http://" + l.Addr().String()}
	if h == nil {
		h = http.NotFoundHandler()
	}
	s.setHandler(h)
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*s.h.Load()).ServeHTTP(w, r) }),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = s.srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(ctx)
	})
	return s
}

func (s *testServer) setHandler(h http.Handler) { s.h.Store(&h) }

func (s *testServer) port() string {
	u, _ := url.Parse(s.URL)
	return u.Port()
}

// waitHTTP polls url until it answers 200, the process exits, or the time is up.
func waitHTTP(p *process, u string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	c := &http.Client{Timeout: 2 * time.Second}
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		default:
		}
		res, err := c.Get(u)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			last = res.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s: no 200 within %s (last: %s)", u, limit, last)
}

// process is a subprocess whose output goes to a log file; it is stopped at
// cleanup (its whole process group, so nothing it started lingers).
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProcess(t *testing.T, name, logPath, dir string, extraEnv []string, argv ...string) *process {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(baseEnv(), extraEnv...)
	cmd.Stdout, cmd.Stderr = f, f
	setProcessGroup(cmd)
	stdin, err := cmd.StdinPipe() // closed at cleanup: the Backstage backend exits on EOF
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		stdin.Close()
		terminateGroup(cmd)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			killGroup(cmd)
			<-p.done
		}
	})
	return p
}

// baseEnv is this process's environment without SPECTROAUTH_* variables:
// the daemon reads those as configuration overrides (and refuses unknown
// ones, such as this package's own SPECTROAUTH_E2E_* switches), and its
// configuration here must be exactly the file the test writes.
func baseEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(strings.ToUpper(kv), "SPECTROAUTH_")
	})
}

// tail is the end of the process's log, for failure messages.
func (p *process) tail() string {
	b, _ := os.ReadFile(p.log)
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return fmt.Sprintf("--- last lines of %s (%s) ---\n%s", p.name, p.log, b)
}

// signIn runs the popup flow with a plain HTTP client as the browser (the
// provider auto-approves, so no page needs a click) and returns the
// session the daemon's /refresh answers with, and the cookie jar holding it.
func (e *env) signIn(t *testing.T, origin string) (refreshResponse, http.CookieJar) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	base := e.daemonURL + "/api/auth/" + provider
	q := "scope=" + url.QueryEscape("openid profile email") + "&origin=" + url.QueryEscape(origin) + "&flow=popup&env=" + envName
	res, err := c.Get(base + "/start?" + q)
	if err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Request.URL.Path != "/api/auth/"+provider+"/handler/frame" {
		t.Fatalf("sign-in ended at %s with %s:\n%s", res.Request.URL, res.Status, body)
	}
	if !strings.Contains(string(body), "authorization_response") || strings.Contains(string(body), "%22error%22") {
		t.Fatalf("sign-in frame did not carry a successful response:\n%s", body)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/refresh?optional&scope="+url.QueryEscape("openid profile email")+"&env="+envName, nil)
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	res, err = c.Do(req)
	if err != nil {
		t.Fatalf("refresh after sign-in: %v", err)
	}
	defer res.Body.Close()
	body, _ = io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("refresh after sign-in: %s\n%s", res.Status, body)
	}
	var rr refreshResponse
	if err := json.Unmarshal(body, &rr); err != nil {
		t.Fatalf("refresh after sign-in: %v\n%s", err, body)
	}
	if rr.BackstageIdentity.Token == "" {
		t.Fatalf("refresh after sign-in has no Backstage token:\n%s", body)
	}
	return rr, jar
}

type refreshResponse struct {
	Profile struct {
		Email       string `json:"email"`
		DisplayName string `json:"displayName"`
		Picture     string `json:"picture"`
	} `json:"profile"`
	ProviderInfo struct {
		IDToken string `json:"idToken"`
	} `json:"providerInfo"`
	BackstageIdentity struct {
		Token            string `json:"token"`
		ExpiresInSeconds int    `json:"expiresInSeconds"`
		Identity         struct {
			Type                string   `json:"type"`
			UserEntityRef       string   `json:"userEntityRef"`
			OwnershipEntityRefs []string `json:"ownershipEntityRefs"`
		} `json:"identity"`
	} `json:"backstageIdentity"`
}

// exampleAppConfig is examples/backstage/app-config.yaml, as Backstage would
// read it with SPECTROAUTH_URL set, as a JSON-ready map.
func exampleAppConfig(t *testing.T, p paths, daemonURL string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.repo, "examples", "backstage", "app-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.ReplaceAll(string(b), "${SPECTROAUTH_URL}", daemonURL))
	m, err := yaml.Parser().Unmarshal(b)
	if err != nil {
		t.Fatalf("examples/backstage/app-config.yaml: %v", err)
	}
	return m
}

// runNode runs a Node script of host/e2e/testdata/node with a hard deadline.
func runNode(t *testing.T, p paths, node string, limit time.Duration, logPath string, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = p.node
	cmd.Stdout, cmd.Stderr = f, f
	setProcessGroup(cmd)
	cmd.Cancel = func() error { killGroup(cmd); return nil }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("node %s: killed after %s: %w", strings.Join(args, " "), limit, ctx.Err())
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("node %s: exit %d", strings.Join(args, " "), ee.ExitCode())
		}
		return fmt.Errorf("node %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func readTail(path string, max int) string {
	b, _ := os.ReadFile(path)
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
