//go:build linux

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/devprovider"
)

// reloadRig is a real spectroauthd process with the pluginhost test plugin,
// signed in through a provider in this process.
type reloadRig struct {
	t         *testing.T
	dir       string
	bin       string // the daemon binary
	cfgPath   string
	base      string
	metrics   string
	provider  *devprovider.Provider
	issuer    string
	daemon    *exec.Cmd
	log       *bytes.Buffer
	logMu     *sync.Mutex
	providerL net.Listener
	plugin    rigPlugin
}

// rigPlugin is the plugin the rig's configuration declares and signs in
// through.
type rigPlugin struct {
	name, resolver string
	options        string // the resolver's options, a YAML flow mapping, or ""
	entry          string // more keys of plugins.<name>: lines indented by four spaces, each ending in a newline
}

// buildReloadBinaries builds the daemon (daemonBinary) and the test plugin
// in two versions.
func buildReloadBinaries(t *testing.T, dir string) (daemonBin string, plugins map[string]string) {
	t.Helper()
	plugins = map[string]string{"1.0.0": filepath.Join(dir, "tp-v1"), "2.0.0": filepath.Join(dir, "tp-v2")}
	var builds [][]string
	for v, p := range plugins {
		builds = append(builds, []string{"-ldflags", "-X main.version=" + v, "-o", p, "./pluginhost/testdata/testplugin"})
	}
	goBuilds(t, builds...)
	return daemonBinary(t), plugins
}

// built is the daemon binary that the tests running it share: linking it
// costs seconds of CPU.
var built struct {
	once     sync.Once
	dir, bin string
	err      error
}

// daemonBinary returns the daemon, built once for the package's tests and
// removed after them.
func daemonBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "spectroauthd-test-"); built.err != nil {
			return
		}
		afterTests = append(afterTests, func() { _ = os.RemoveAll(built.dir) })
		built.bin = filepath.Join(built.dir, "spectroauthd")
		cmd := exec.Command("go", "build", "-o", built.bin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("building the daemon: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// goBuilds runs go build with each of builds' arguments, at once.
func goBuilds(t *testing.T, builds ...[]string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(builds))
	for i, args := range builds {
		wg.Go(func() {
			cmd := exec.Command("go", append([]string{"build"}, args...)...)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go build %v: %v\n%s", args, err, out)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func digestOf(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// newReloadRig starts the provider and writes nothing yet.
func newReloadRig(t *testing.T, bin string) *reloadRig {
	t.Helper()
	r := &reloadRig{t: t, dir: t.TempDir(), bin: bin, log: &bytes.Buffer{}, logMu: &sync.Mutex{},
		plugin: rigPlugin{name: "tp", resolver: "byEmail"}}
	r.cfgPath = filepath.Join(r.dir, "config.yaml")
	r.base = "http://127.0.0.1:" + freeLoopbackPort(t)
	r.metrics = "127.0.0.1:" + freeLoopbackPort(t)
	var err error
	if r.providerL, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	r.issuer = "http://" + r.providerL.Addr().String()
	verified := true
	r.provider, err = devprovider.New(devprovider.Config{
		Issuer:  r.issuer,
		Clients: []devprovider.Client{{ID: "reload", Secret: "reload-secret", RedirectURIs: []string{r.base + "/api/auth/spectrocloud/handler/frame"}}},
		Users: []devprovider.User{
			{Username: "alice", Email: "pid@example.com", EmailVerified: &verified},
			{Username: "slowpoke", Email: "slow@example.com", EmailVerified: &verified},
		},
		AutoApprove:     "alice",
		RefreshTokens:   true,
		IDTokenLifetime: time.Hour,
		AllowInsecure:   true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r.provider, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(r.providerL) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

// writeConfig writes the daemon's configuration with r.plugin at command
// and digest; extra is appended as is.
func (r *reloadRig) writeConfig(command, digest, extra string) {
	r.t.Helper()
	var options string
	if r.plugin.options != "" {
		options = "\n              options: " + r.plugin.options
	}
	cfg := fmt.Sprintf(`server:
  listen: %s
  baseUrl: %s
  metricsListen: %s
  rateLimits:
    signInsPerClientPerMinute: 10000
    signInBurst: 1000
app:
  baseUrl: %s
auth:
  providers:
    spectrocloud:
      development:
        issuer: %s
        allowInsecureIssuer: true
        clientId: reload
        clientSecret: reload-secret
        scopes: [openid, profile, email, offline_access]
        signIn:
          resolvers:
            - plugin: %[6]s
              resolver: %[7]s%[8]s
plugins:
  %[6]s:
    command: %[9]s
    sha256: %[10]s
    callTimeout: 5s
%[11]sstorage:
  type: file
  path: %[12]s
%[13]s`, strings.TrimPrefix(r.base, "http://"), r.base, r.metrics, r.base, r.issuer,
		r.plugin.name, r.plugin.resolver, options, command, digest, r.plugin.entry, filepath.Join(r.dir, "data"), extra)
	if err := os.WriteFile(r.cfgPath, []byte(cfg), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (r *reloadRig) logText() string {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	return r.log.String()
}

// start runs the daemon and waits for /readyz.
func (r *reloadRig) start() {
	r.t.Helper()
	r.daemon = exec.Command(r.bin, "-config", r.cfgPath, "-log-format", "json")
	w := lockedWriter{r.logMu, r.log}
	r.daemon.Stdout, r.daemon.Stderr = w, w
	if err := r.daemon.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() {
		_ = r.daemon.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = r.daemon.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = r.daemon.Process.Kill()
			<-done
		}
		if r.t.Failed() {
			r.t.Logf("daemon log:\n%s", r.logText())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get(r.base + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatalf("the daemon was not ready within 30s; its log:\n%s", r.logText())
}

// signedIn is a signed-in browser: its refresh cookie.
type signedIn struct{ cookie *http.Cookie }

// signIn runs the popup flow as the provider's selected user.
func (r *reloadRig) signIn() (signedIn, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	q := url.Values{"scope": {"openid profile email"}, "origin": {r.base}, "flow": {"popup"}, "env": {"development"}}
	res, err := c.Get(r.base + "/api/auth/spectrocloud/start?" + q.Encode())
	if err != nil {
		return signedIn{}, err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "backstageIdentity") {
		return signedIn{}, fmt.Errorf("sign-in did not complete (%d): %.400s", res.StatusCode, body)
	}
	u, _ := url.Parse(r.base + "/api/auth/spectrocloud/refresh")
	for _, ck := range jar.Cookies(u) {
		if ck.Name == "spectrocloud-refresh-token" {
			return signedIn{ck}, nil
		}
	}
	return signedIn{}, fmt.Errorf("no refresh cookie after sign-in")
}

// refresh calls /refresh with s and returns the status and the Backstage
// token's claims.
func (r *reloadRig) refresh(client *http.Client, s signedIn) (int, map[string]any, error) {
	req, _ := http.NewRequest(http.MethodGet, r.base+"/api/auth/spectrocloud/refresh?optional&env=development", nil)
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	req.Header.Set("Origin", r.base)
	req.AddCookie(s.cookie)
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	var body struct {
		BackstageIdentity struct {
			Token string `json:"token"`
		} `json:"backstageIdentity"`
	}
	if res.StatusCode != http.StatusOK {
		return res.StatusCode, nil, nil
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return res.StatusCode, nil, err
	}
	parts := strings.Split(body.BackstageIdentity.Token, ".")
	if len(parts) != 3 {
		return res.StatusCode, nil, fmt.Errorf("not a JWT: %q", body.BackstageIdentity.Token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return res.StatusCode, nil, err
	}
	var claims map[string]any
	return res.StatusCode, claims, json.Unmarshal(payload, &claims)
}

// pluginOf signs in anew and returns the version and pid the resolver
// put into the Backstage token.
func (r *reloadRig) pluginOf() (string, int) {
	r.t.Helper()
	s, err := r.signIn()
	if err != nil {
		r.t.Fatalf("sign-in: %v", err)
	}
	status, claims, err := r.refresh(http.DefaultClient, s)
	if err != nil || status != http.StatusOK {
		r.t.Fatalf("refresh after sign-in: %d %v", status, err)
	}
	v, _ := claims["version"].(string)
	pid, _ := claims["pid"].(float64)
	if v == "" {
		r.t.Fatalf("the token carries no plugin version: %v", claims)
	}
	return v, int(pid)
}

// reload runs `spectroauthd reload -config` and returns its exit status
// and output.
func (r *reloadRig) reload() (int, string) {
	r.t.Helper()
	cmd := exec.Command(r.bin, "reload", "-config", r.cfgPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		r.t.Fatalf("spectroauthd reload: %v", err)
	}
	return 0, string(out)
}

// metric returns the value of the sample line that starts with name.
func (r *reloadRig) metric(name string) string {
	r.t.Helper()
	res, err := http.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	return ""
}

func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// TestReload runs the real daemon with real plugin processes: a reload
// to a new plugin version under /refresh load (no failed request, nobody
// signed out, /readyz green, the new version serves, the old process
// stops), refusals that leave the old configuration serving (invalid
// configuration, wrong digest, a plugin that exits, a setting that cannot
// change live), a call in flight on the old plugin that completes, and
// SIGHUP.
func TestReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	bins := t.TempDir()
	daemonBin, plugins := buildReloadBinaries(t, bins)
	v1, v2 := plugins["1.0.0"], plugins["2.0.0"]
	d1, d2 := digestOf(t, v1), digestOf(t, v2)

	r := newReloadRig(t, daemonBin)
	r.writeConfig(v1, d1, "")
	r.start()
	if v, _ := r.pluginOf(); v != "1.0.0" {
		t.Fatalf("plugin version %q at start, want 1.0.0", v)
	}
	_, oldPID := r.pluginOf()

	// Signed-in sessions, then the load.
	var sessions []signedIn
	for range 4 {
		s, err := r.signIn()
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	var (
		stop               atomic.Bool
		wg                 sync.WaitGroup
		ok, failed, notRdy atomic.Int64
		firstFailure       atomic.Value
	)
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for w := range 8 {
		wg.Go(func() {
			s := sessions[w%len(sessions)]
			for i := 0; i < 100000 && !stop.Load(); i++ {
				status, _, err := r.refresh(client, s)
				if err != nil || status != http.StatusOK {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("status %d, error %v", status, err))
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Go(func() {
		for i := 0; i < 100000 && !stop.Load(); i++ {
			res, err := client.Get(r.base + "/readyz")
			if err != nil || res.StatusCode != http.StatusOK {
				notRdy.Add(1)
			}
			if err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	// Sign-ins through the plugin chain go on during the swap too.
	var signIns, signInFailures atomic.Int64
	wg.Go(func() {
		for i := 0; i < 10000 && !stop.Load(); i++ {
			if _, err := r.signIn(); err != nil {
				signInFailures.Add(1)
				firstFailure.CompareAndSwap(nil, "sign-in: "+err.Error())
				continue
			}
			signIns.Add(1)
		}
	})
	time.Sleep(300 * time.Millisecond)
	r.writeConfig(v2, d2, "")
	code, out := r.reload()
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if code != 0 || !strings.Contains(out, "reloaded: 1 plugins started, 1 stopped") {
		t.Fatalf("spectroauthd reload: exit %d, output %q", code, out)
	}
	if failed.Load() > 0 || ok.Load() == 0 {
		t.Fatalf("/refresh under reload: %d ok, %d failed (first: %v)", ok.Load(), failed.Load(), firstFailure.Load())
	}
	if signInFailures.Load() > 0 || signIns.Load() == 0 {
		t.Fatalf("sign-ins under reload: %d ok, %d failed (first: %v)", signIns.Load(), signInFailures.Load(), firstFailure.Load())
	}
	if notRdy.Load() > 0 {
		t.Fatalf("/readyz was not 200 %d times during the reload", notRdy.Load())
	}
	t.Logf("during the reload: %d /refresh requests and %d sign-ins, none failed", ok.Load(), signIns.Load())
	v, newPID := r.pluginOf()
	if v != "2.0.0" {
		t.Fatalf("after the reload the resolver runs version %q, want 2.0.0", v)
	}
	if newPID == oldPID || !processGone(oldPID) {
		t.Fatalf("the old plugin process %d still runs (new one: %d)", oldPID, newPID)
	}
	if got := r.metric(`spectroauth_config_generation`); got != "2" {
		t.Fatalf("config generation metric %q, want 2", got)
	}

	refused := func(t *testing.T, want string) {
		t.Helper()
		code, out := r.reload()
		if code != 1 || !strings.Contains(out, want) {
			t.Fatalf("spectroauthd reload: exit %d, output %q; want exit 1 naming %q", code, out, want)
		}
		t.Logf("refused: %s", strings.TrimSpace(out))
		if v, _ := r.pluginOf(); v != "2.0.0" {
			t.Fatalf("after a refused reload the resolver runs version %q, want the old 2.0.0", v)
		}
		for _, s := range sessions {
			if status, _, err := r.refresh(http.DefaultClient, s); status != http.StatusOK {
				t.Fatalf("a session was lost by a refused reload: %d %v", status, err)
			}
		}
	}
	t.Run("invalid configuration", func(t *testing.T) {
		r.writeConfig(v2, d2, "kubernetes:\n  clusters:\n    - name: c\n      url: https://c.example.com\n      strategy: {plugin: nope, strategy: token}\n")
		refused(t, "kubernetes.clusters[0].strategy.plugin")
	})
	t.Run("wrong digest", func(t *testing.T) {
		r.writeConfig(v1, d2, "")
		refused(t, "plugins.tp.sha256")
	})
	t.Run("plugin exits at start", func(t *testing.T) {
		exits := filepath.Join(t.TempDir(), "exits")
		if err := os.WriteFile(exits, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		r.writeConfig(exits, digestOf(t, exits), "")
		refused(t, "plugins.tp")
	})
	t.Run("setting that cannot change live", func(t *testing.T) {
		r.writeConfig(v1, d1, "")
		cfg, _ := os.ReadFile(r.cfgPath)
		cfg = bytes.Replace(cfg, []byte("server:\n"), []byte("server:\n  shutdownTimeout: 7s\n"), 1)
		if err := os.WriteFile(r.cfgPath, cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		refused(t, "server.shutdownTimeout cannot change while the daemon runs")
	})
	if got := r.metric(`spectroauth_config_reloads_total{result="refused"}`); got != "4" {
		t.Fatalf(`reloads_total{result="refused"} = %q, want 4`, got)
	}

	t.Run("call in flight finishes on the old plugin", func(t *testing.T) {
		// slowpoke's sign-in spends 400ms in the plugin; the reload swaps
		// the plugin during that call.
		if err := r.provider.SetSelectedUser("slowpoke"); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = r.provider.SetSelectedUser("alice") }()
		before := strings.Count(r.logText(), "slow call started")
		done := make(chan error, 1)
		go func() {
			_, err := r.signIn()
			done <- err
		}()
		deadline := time.Now().Add(20 * time.Second)
		for strings.Count(r.logText(), "slow call started") == before {
			if time.Now().After(deadline) {
				t.Fatal("the slow resolver call never started")
			}
			time.Sleep(5 * time.Millisecond)
		}
		r.writeConfig(v1, d1, "")
		if code, out := r.reload(); code != 0 {
			t.Fatalf("spectroauthd reload: exit %d, %s", code, out)
		}
		if err := <-done; err != nil {
			t.Fatalf("the sign-in in flight during the reload failed: %v", err)
		}
	})

	t.Run("SIGHUP", func(t *testing.T) {
		r.writeConfig(v2, d2, "")
		if err := r.daemon.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for r.metric(`spectroauth_config_generation`) != "4" {
			if time.Now().After(deadline) {
				t.Fatalf("SIGHUP did not reload; generation %s", r.metric(`spectroauth_config_generation`))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if v, _ := r.pluginOf(); v != "2.0.0" {
			t.Fatalf("after SIGHUP the resolver runs version %q, want 2.0.0", v)
		}
	})

	t.Run("plugin reload after a rebuild", func(t *testing.T) {
		// The inner loop: the configured binary is replaced (as go build
		// does), then one command writes the digest and reloads.
		bin := filepath.Join(t.TempDir(), "tp")
		install := func(src string) {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(bin+".new", b, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(bin+".new", bin); err != nil {
				t.Fatal(err)
			}
		}
		install(v1)
		r.writeConfig(bin, d1, "")
		if code, out := r.reload(); code != 0 {
			t.Fatalf("spectroauthd reload: exit %d, %s", code, out)
		}
		install(v2)
		began := time.Now()
		out, err := exec.Command(r.bin, "plugin", "reload", "-config", r.cfgPath, "tp").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "plugins.tp.sha256: "+d2) || !strings.Contains(string(out), "reloaded: 1 plugins started, 1 stopped") {
			t.Fatalf("spectroauthd plugin reload: %v\n%s", err, out)
		}
		t.Logf("plugin reload took %s: %s", time.Since(began).Round(time.Millisecond), strings.TrimSpace(string(out)))
		if v, _ := r.pluginOf(); v != "2.0.0" {
			t.Fatalf("after plugin reload the resolver runs version %q, want 2.0.0", v)
		}
	})
}
