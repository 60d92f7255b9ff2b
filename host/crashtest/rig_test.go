package crashtest_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/devprovider"
	"github.com/spectroauth/spectroauth/host/internal/atomicfile"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/upstream"
)

const cookieName = "spectrocloud-refresh-token"

// users sign in in turn, so a 200 for the wrong user is caught.
var users = []string{"alice", "bob", "carol", "dave"}

// rig is a real OpenID provider in this process and the configuration of a
// daemon that trusts it; the daemon itself is started and killed by the
// tests.
type rig struct {
	bin, cfg, base, dir, dataDir string
	metrics                      string // the daemon's /metrics URL
	op                           *devprovider.Provider
	signInMu                     sync.Mutex // SetSelectedUser, then the sign-in
	// opDown makes the provider stop answering the daemon, opSlow answer
	// it late (see gate); the browser's requests still reach it.
	opDown, opSlow atomic.Bool
	// opUnanswered counts the daemon's requests gate left unanswered;
	// opLate and opOnTime those it delayed past and within the daemon's
	// upstream timeout; opDelaying those it is delaying now.
	opUnanswered, opLate, opOnTime, opDelaying atomic.Int64
}

// rigOptions shape the daemon and the provider of a rig.
type rigOptions struct {
	// resolver replaces the built-in resolver when not empty (YAML list
	// items under signIn.resolvers); extra is appended (plugins).
	resolver, extra string
	// storage replaces file storage when not empty (a storage: block).
	storage string
	// rotate makes the provider rotate refresh tokens on every use (and
	// revoke a chain whose rotated token is replayed); by default it
	// answers with the same one, as SpectroCloud documents.
	rotate bool
	// reuseGrace, with rotate, keeps a rotated token usable that long
	// (devprovider.Config.RefreshReuseGrace).
	reuseGrace time.Duration
}

// browserAgent is the User-Agent of the test's browser (signIn), which
// gate lets through while the provider is down or slow for the daemon.
const browserAgent = "crashtest-browser"

// clientTimeout bounds the test's requests to the daemon: longer than any
// wait the daemon itself bounds (upstream.DefaultTimeout, a plugin's call
// timeout), so that the daemon's own answer is what the test sees.
const clientTimeout = 2 * upstream.DefaultTimeout

// Delays of the provider while slow, in turn: past the daemon's upstream
// timeout (the daemon gives up first) and well within it.
const (
	lateDelay   = upstream.DefaultTimeout + time.Second
	onTimeDelay = upstream.DefaultTimeout / 5
)

// gate is the provider as the daemon sees it. While opDown is set, every
// request but the browser's (discovery, keys, token, userinfo, revocation:
// the back channel) has its connection closed unanswered, as a provider
// that crashed or a network partition between daemon and provider would.
// While opSlow is set, each such request is answered, in turn, lateDelay
// or onTimeDelay late (the provider then does the work: a refresh grant
// answered after the daemon gave up still happened). The browser still
// reaches the login pages at once, so a sign-in gets as far as the
// daemon's callback and the daemon's answer is what the test sees.
func (r *rig) gate(op http.Handler) http.Handler {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.UserAgent() == browserAgent {
			op.ServeHTTP(w, req)
			return
		}
		if r.opDown.Load() {
			r.opUnanswered.Add(1)
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					_ = conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		}
		if r.opSlow.Load() {
			r.opDelaying.Add(1)
			defer r.opDelaying.Add(-1)
			delay := onTimeDelay
			if n.Add(1)%2 == 1 {
				delay = lateDelay
				r.opLate.Add(1)
			} else {
				r.opOnTime.Add(1)
			}
			time.Sleep(delay)
		}
		op.ServeHTTP(w, req)
	})
}

// newRig writes the daemon's configuration.
func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	r := &rig{bin: daemonBinary(t), dir: t.TempDir()}
	r.dataDir = filepath.Join(r.dir, "data")
	port, metricsPort := freePort(t), freePort(t)
	r.base = "http://127.0.0.1:" + port
	r.metrics = "http://127.0.0.1:" + metricsPort + "/metrics"
	opL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + opL.Addr().String()
	yes := true
	var us []devprovider.User
	for _, u := range users {
		us = append(us, devprovider.User{Username: u, Email: u + "@example.com", EmailVerified: &yes, GivenName: u, Groups: []string{"dev"}})
	}
	r.op, err = devprovider.New(devprovider.Config{
		Issuer:              issuer,
		Clients:             []devprovider.Client{{ID: "crash", Secret: "crash-secret", RedirectURIs: []string{r.base + "/api/auth/spectrocloud/handler/frame"}}},
		Users:               us,
		AutoApprove:         users[0],
		RefreshTokens:       true,
		StableRefreshTokens: !o.rotate,
		RefreshReuseGrace:   o.reuseGrace,
		IDTokenLifetime:     time.Hour,
		AllowInsecure:       true,
	})
	if err != nil {
		t.Fatal(err)
	}
	opSrv := &http.Server{Handler: r.gate(r.op), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = opSrv.Serve(opL) }()
	t.Cleanup(func() { _ = opSrv.Close() })
	if o.resolver == "" {
		o.resolver = "            - plugin: builtin\n              resolver: emailLocalPartMatchingUserEntityName\n"
	}
	if o.storage == "" {
		o.storage = fmt.Sprintf("storage:\n  type: file\n  path: %s\n", r.dataDir)
	}
	r.cfg = filepath.Join(r.dir, "config.yaml")
	writeFile(t, r.cfg, fmt.Sprintf(`server:
  listen: 127.0.0.1:%s
  metricsListen: 127.0.0.1:%s
  baseUrl: %s
  # One client signs in many times a second here: the limits are not
  # what these tests measure.
  rateLimits: {signInsPerClientPerMinute: 1000000, signInBurst: 10000, codeExchangesPerSecond: 10000}
app:
  baseUrl: %s
auth:
  providers:
    spectrocloud:
      development:
        issuer: %s
        allowInsecureIssuer: true
        clientId: crash
        clientSecret: crash-secret
        scopes: [openid, profile, email, offline_access]
        revalidateInterval: 1m
        signIn:
          resolvers:
%s%s%s`, port, metricsPort, r.base, r.base, issuer, o.resolver, o.storage, o.extra))
	return r
}

// start starts the daemon and waits until /readyz answers 200.
func (r *rig) start(t *testing.T, logName string) *daemon {
	t.Helper()
	return startDaemon(t, r.bin, r.cfg, r.base, filepath.Join(r.dir, logName))
}

// signIn signs user in and returns the session handle.
func (r *rig) signIn(ctx context.Context, user string) (string, error) {
	r.signInMu.Lock()
	defer r.signInMu.Unlock()
	if err := r.op.SetSelectedUser(user); err != nil {
		return "", err
	}
	return signIn(ctx, r.base)
}

func userRef(user string) string { return "user:default/" + user }

// checkStore reads every file of the file store's directories: each must
// decode, and the session journal must read without an unreadable record
// (a torn tail after a kill is not one: replay stops before it). After a
// restart (opened) no temporary file may be left; after a kill they may, as
// the store removes them when it opens. It returns how many files it read,
// and sessions in the journal.
func checkStore(t *testing.T, dataDir string, opened bool) int {
	t.Helper()
	n := 0
	for _, sub := range []string{"sessions", "keys", "userinfo"} {
		d := filepath.Join(dataDir, sub)
		entries, err := os.ReadDir(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && !opened {
				continue
			}
			t.Fatalf("%s: %v", d, err)
		}
		for _, e := range entries {
			if sub == "sessions" && e.Name() == "journal" {
				continue // not JSON: read by ReadFileSessions below
			}
			if atomicfile.IsTemp(e.Name()) || (sub == "sessions" && e.Name() == "journal.tmp") {
				if opened {
					t.Fatalf("%s/%s: a temporary file survived the store's opening", sub, e.Name())
				}
				continue
			}
			b, err := os.ReadFile(filepath.Join(d, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			n++
			if !json.Valid(b) {
				t.Fatalf("%s/%s is not whole JSON (%d bytes): a torn write", sub, e.Name(), len(b))
			}
		}
	}
	_, unreadable, err := session.ReadFileSessions(dataDir, time.Now(), hclog.NewNullLogger(), func(session.Key, *session.Session) error { n++; return nil })
	if err != nil || unreadable != 0 {
		t.Fatalf("sessions: %d unreadable, %v", unreadable, err)
	}
	return n
}

type daemon struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

func startDaemon(t *testing.T, bin, cfg, base, logPath string) *daemon {
	t.Helper()
	d, err := launch(bin, cfg, base, logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.kill)
	return d
}

// launch starts the daemon and waits until /readyz answers 200; on failure
// the daemon is gone and the error holds its log.
func launch(bin, cfg, base, logPath string) (*daemon, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-config", cfg, "-log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &daemon{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(d.done) }()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return nil, fmt.Errorf("the daemon exited on start:\n%s", d.log())
		default:
		}
		if res, err := client.Get(base + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return d, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.kill()
	return nil, fmt.Errorf("the daemon did not get ready in 20s:\n%s", d.log())
}

// stop sends sig and waits for the daemon to exit (SIGKILL after 15 s).
func (d *daemon) stop(sig syscall.Signal) {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.done
	}
}

// kill SIGKILLs the daemon and waits for it to be gone.
func (d *daemon) kill() { d.stop(syscall.SIGKILL) }

func (d *daemon) log() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

// signIn runs the popup flow and returns the session handle, once the
// frame page (the client's confirmation) has arrived.
func signIn(ctx context.Context, base string) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: clientTimeout}
	q := url.Values{"scope": {"openid profile email"}, "origin": {base}, "flow": {"popup"}, "env": {"development"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/auth/spectrocloud/start?"+q.Encode(), nil)
	req.Header.Set("User-Agent", browserAgent) // kept across redirects
	res, err := c.Do(req)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK || !strings.Contains(string(body), "backstageIdentity") {
		return "", fmt.Errorf("sign-in did not complete: %d %v%s", res.StatusCode, err, frameError(body))
	}
	u, _ := url.Parse(base + "/api/auth/spectrocloud/refresh")
	for _, ck := range jar.Cookies(u) {
		if ck.Name == cookieName {
			return ck.Value, nil
		}
	}
	return "", fmt.Errorf("no %s cookie after sign-in", cookieName)
}

// refresh asks /refresh for the session's Backstage identity: it returns
// the status and the identity's userEntityRef, which on a 200 must be the
// Backstage token's subject too (else it returns what differs, which is no
// user's reference, so a token for another user is caught as one).
func refresh(base, handle string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, base+"/api/auth/spectrocloud/refresh?optional&scope=openid%20profile%20email&env=development", nil)
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	req.Header.Set("Origin", base)
	req.Header.Set("Cookie", cookieName+"="+handle)
	res, err := (&http.Client{Timeout: clientTimeout}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	var body struct {
		BackstageIdentity struct {
			Token    string `json:"token"`
			Identity struct {
				UserEntityRef string `json:"userEntityRef"`
			} `json:"identity"`
		} `json:"backstageIdentity"`
	}
	_ = json.NewDecoder(res.Body).Decode(&body)
	user := body.BackstageIdentity.Identity.UserEntityRef
	if res.StatusCode == http.StatusOK {
		if sub := tokenSubject(body.BackstageIdentity.Token); sub != user {
			return res.StatusCode, fmt.Sprintf("identity %q with a token for %q", user, sub)
		}
	}
	return res.StatusCode, user
}

// tokenSubject returns the sub claim of a JWT's payload, unverified (the
// soak checks whose token it is; the e2e tests verify the signature), or
// "" when it has none.
func tokenSubject(jwt string) string {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(payload, &claims)
	return claims.Sub
}

// daemonBinary is $SPECTROAUTHD (make's bin/spectroauthd when set) or a
// fresh build of ./host.
func daemonBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("SPECTROAUTHD"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "spectroauthd")
	cmd := exec.Command("go", "build", "-o", bin, "./host")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the daemon: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// frameError is " (NAME: MESSAGE)" for the error a frame page posts to the
// app, or "" when body holds none.
func frameError(body []byte) string {
	_, rest, ok := strings.Cut(string(body), "decodeURIComponent('")
	if !ok {
		return ""
	}
	enc, _, _ := strings.Cut(rest, "'")
	data, err := url.PathUnescape(enc)
	if err != nil {
		return ""
	}
	var msg struct {
		Error *struct {
			Name    string `json:"name"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(data), &msg) != nil || msg.Error == nil {
		return ""
	}
	return " (" + msg.Error.Name + ": " + msg.Error.Message + ")"
}
