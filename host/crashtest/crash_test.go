package crashtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/devprovider"
	"github.com/spectroauth/spectroauth/host/internal/atomicfile"
	"github.com/spectroauth/spectroauth/host/session"
)

const (
	cookieName = "spectrocloud-refresh-token"
	wantUser   = "user:default/alice"
)

// TestSIGKILLDuringWrites starts bin/spectroauthd (or a fresh build) on file
// storage against a real OpenID provider, runs sign-ins and refreshes (each
// sign-in writes a session file, a user info file, and the first start the
// signing key), SIGKILLs the daemon at a random moment, and restarts it, in
// a bounded loop. After each restart: the daemon comes up on the same
// store, every session whose sign-in answered before a kill still refreshes
// as its user, and the store's directories hold no temporary file and no
// file that does not decode. After each kill, before the restart, every
// non-temporary file decodes (atomicfile's rename never shows a torn file).
func TestSIGKILLDuringWrites(t *testing.T) {
	iterations := 20
	if testing.Short() {
		iterations = 5
	}
	bin := daemonBinary(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")

	port := freePort(t)
	base := "http://127.0.0.1:" + port
	opL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + opL.Addr().String()
	yes := true
	op, err := devprovider.New(devprovider.Config{
		Issuer:          issuer,
		Clients:         []devprovider.Client{{ID: "crash", Secret: "crash-secret", RedirectURIs: []string{base + "/api/auth/spectrocloud/handler/frame"}}},
		Users:           []devprovider.User{{Username: "alice", Email: "alice@example.com", EmailVerified: &yes, GivenName: "Alice"}},
		AutoApprove:     "alice",
		RefreshTokens:   true,
		IDTokenLifetime: time.Hour,
		AllowInsecure:   true,
	})
	if err != nil {
		t.Fatal(err)
	}
	opSrv := &http.Server{Handler: op, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = opSrv.Serve(opL) }()
	t.Cleanup(func() { _ = opSrv.Close() })

	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, fmt.Sprintf(`server:
  listen: 127.0.0.1:%s
  baseUrl: %s
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
        signIn:
          resolvers:
            - plugin: builtin
              resolver: emailLocalPartMatchingUserEntityName
storage:
  type: file
  path: %s
`, port, base, base, issuer, dataDir))

	var confirmed []string // handles of sessions whose sign-in answered
	kills, tornChecks := 0, 0
	var startTime time.Duration
	for i := range iterations {
		t0 := time.Now()
		d := startDaemon(t, bin, cfg, base, filepath.Join(dir, fmt.Sprintf("daemon-%02d.log", i)))

		// Nothing confirmed before a kill is lost, and the store came up
		// clean.
		for _, h := range confirmed {
			if status, user := refresh(base, h); status != http.StatusOK || user != wantUser {
				d.kill()
				t.Fatalf("restart %d: a session confirmed before a kill refreshes %d as %q, want 200 as %s\n%s", i, status, user, wantUser, d.log())
			}
		}
		checkStore(t, dataDir, true)
		startTime += time.Since(t0)

		// Writes under way, then SIGKILL at a random moment.
		ctx, cancel := context.WithCancel(context.Background())
		var (
			mu    sync.Mutex
			fresh []string
			wg    sync.WaitGroup
		)
		for w := range 4 {
			wg.Go(func() {
				for ctx.Err() == nil {
					if w == 0 && len(confirmed) > 0 {
						// Refreshes rewrite session files too.
						_, _ = refresh(base, confirmed[rand.IntN(len(confirmed))])
						continue
					}
					if h, err := signIn(ctx, base); err == nil {
						mu.Lock()
						fresh = append(fresh, h)
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(time.Duration(50+rand.IntN(250)) * time.Millisecond)
		d.kill()
		kills++
		cancel()
		wg.Wait()
		confirmed = append(confirmed, fresh...)
		tornChecks += checkStore(t, dataDir, false)
	}
	if len(confirmed) == 0 {
		t.Fatal("no sign-in completed: the test wrote nothing")
	}
	t.Logf("%d SIGKILLs, %d confirmed sessions all kept, %d files checked after kills; restarts and checks took %s",
		kills, len(confirmed), tornChecks, startTime.Round(time.Millisecond))
}

// checkStore reads every file of the file store's directories: each must
// decode. After a restart (opened) no temporary file may be left; after a
// kill they may, as the store removes them when it opens. It returns how
// many files it read.
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
			if atomicfile.IsTemp(e.Name()) {
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
	_, unreadable, err := session.ReadFileSessions(dataDir, time.Now(), hclog.NewNullLogger(), func(session.Key, *session.Session) error { return nil })
	if err != nil || unreadable != 0 {
		t.Fatalf("session files: %d unreadable, %v", unreadable, err)
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
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfg, "-log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(d.done) }()
	t.Cleanup(d.kill)
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			t.Fatalf("the daemon exited on start:\n%s", d.log())
		default:
		}
		if res, err := client.Get(base + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return d
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.kill()
	t.Fatalf("the daemon did not get ready in 20s:\n%s", d.log())
	return nil
}

// kill SIGKILLs the daemon and waits for it to be gone.
func (d *daemon) kill() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

func (d *daemon) log() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

// signIn runs the popup flow and returns the session handle, once the
// frame page (the client's confirmation) has arrived.
func signIn(ctx context.Context, base string) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	q := url.Values{"scope": {"openid profile email"}, "origin": {base}, "flow": {"popup"}, "env": {"development"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/auth/spectrocloud/start?"+q.Encode(), nil)
	res, err := c.Do(req)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK || !strings.Contains(string(body), "backstageIdentity") {
		return "", fmt.Errorf("sign-in did not complete: %d %v", res.StatusCode, err)
	}
	u, _ := url.Parse(base + "/api/auth/spectrocloud/refresh")
	for _, ck := range jar.Cookies(u) {
		if ck.Name == cookieName {
			return ck.Value, nil
		}
	}
	return "", fmt.Errorf("no %s cookie after sign-in", cookieName)
}

// refresh asks /refresh for the session's Backstage identity.
func refresh(base, handle string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, base+"/api/auth/spectrocloud/refresh?optional&scope=openid%20profile%20email&env=development", nil)
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	req.Header.Set("Origin", base)
	req.Header.Set("Cookie", cookieName+"="+handle)
	res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	var body struct {
		BackstageIdentity struct {
			Identity struct {
				UserEntityRef string `json:"userEntityRef"`
			} `json:"identity"`
		} `json:"backstageIdentity"`
	}
	_ = json.NewDecoder(res.Body).Decode(&body)
	return res.StatusCode, body.BackstageIdentity.Identity.UserEntityRef
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
