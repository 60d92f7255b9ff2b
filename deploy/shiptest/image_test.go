package shiptest

import (
	"bytes"
	"context"
	"crypto/rand"
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
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// podman runs podman on a store of the test's own, in a temporary
// directory, with the settings this kind of machine needs (runc, cgroupfs,
// no default ulimits) in the test's own containers.conf.
type podman struct {
	t    *testing.T
	args []string
	env  []string
}

func newPodman(t *testing.T) *podman {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		if os.Getenv("SPECTROAUTH_REQUIRE") != "" {
			t.Fatal("podman not found (apt-get install podman)")
		}
		t.Skip("podman not found (apt-get install podman)")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "containers.conf")
	// The default ulimits are refused in some containers and CI runners.
	if err := os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &podman{t: t,
		args: []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs",
			"--cgroup-manager", "cgroupfs", "--runtime", "runc", "--events-backend", "file", "--tmpdir", filepath.Join(dir, "tmp")},
		env: append(os.Environ(), "CONTAINERS_CONF="+conf),
	}
}

// run runs podman with args and returns its standard output.
func (p *podman) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "podman", append(append([]string{}, p.args...), args...)...)
	cmd.Env = p.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// The image, started by podman with a read-only root file system, a data
// volume and the network of the host, runs the daemon on its development
// defaults; a browser-like client signs in through its development provider
// and the Backstage token it gets verifies against the daemon's JWKS.
func TestImageSignIn(t *testing.T) {
	archive := os.Getenv("SPECTROAUTH_IMAGE")
	if archive == "" {
		t.Skip("SPECTROAUTH_IMAGE not set: run make test-image")
	}
	p := newPodman(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := p.run(ctx, "load", "-q", "-i", archive)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`Loaded image(?:\(s\))?: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("podman load said %q", out)
	}
	image := m[1]
	user, err := p.run(ctx, "image", "inspect", "--format", "{{.Config.User}}", image)
	if err != nil {
		t.Fatal(err)
	}
	if u := strings.TrimSpace(user); u == "" || strings.HasPrefix(u, "0") || strings.HasPrefix(u, "root") {
		t.Errorf("the image runs as %q, want a numeric non-root user", u)
	}

	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(data, 0o777); err != nil { // the image's user owns nothing here
		t.Fatal(err)
	}
	port := freePort(t)
	base := "http://localhost:" + port
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := "spectroauth-test-" + hex.EncodeToString(suffix)
	_, err = p.run(ctx, "run", "-d", "--name", name, "--network", "host", "--read-only",
		"-v", data+":/var/lib/spectroauth",
		"-e", "SPECTROAUTH_SERVER__LISTEN=127.0.0.1:"+port,
		"-e", "SPECTROAUTH_SERVER__BASEURL="+base,
		"-e", "SPECTROAUTH_APP__BASEURL="+base,
		"-e", "SPECTROAUTH_AUTH__PROVIDERS__SPECTROCLOUD__DEVELOPMENT__ISSUER="+base+"/dev/oidc",
		image, "-log-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			logs, _ := p.run(ctx, "logs", name)
			t.Logf("the container's log:\n%s", logs)
		}
		if _, err := p.run(ctx, "rm", "-f", "-t", "5", name); err != nil {
			t.Log(err)
		}
	})

	deadline := time.Now().Add(time.Minute)
	for {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon in the container was not ready within a minute: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	health := getJSON[struct{ Status, Version string }](t, base+"/healthz")
	if want := os.Getenv("SPECTROAUTH_VERSION"); health.Status != "ok" || want != "" && health.Version != want {
		t.Errorf("/healthz = %+v, want ok and version %q", health, want)
	}

	token := signIn(t, base, "alice")
	jwks := getJSON[jose.JSONWebKeySet](t, base+"/api/auth/.well-known/jwks.json")
	issuer := getJSON[struct{ Issuer string }](t, base+"/api/auth/.well-known/openid-configuration").Issuer
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("the Backstage token: %v", err)
	}
	var claims jwt.Claims
	if err := parsed.Claims(jwks, &claims); err != nil {
		t.Fatalf("the Backstage token does not verify against the daemon's JWKS: %v", err)
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: issuer, Subject: "user:default/alice", Time: time.Now()}, time.Minute); err != nil {
		t.Errorf("the Backstage token's claims: %v (%+v)", err, claims)
	}
	if entries, _ := os.ReadDir(data); len(entries) == 0 {
		t.Error("the daemon wrote nothing to its data volume")
	}
}

// signIn signs user in as a browser would, through the daemon's
// development provider, and returns the Backstage token /refresh answers.
func signIn(t *testing.T, base, user string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	res, err := c.Get(base + "/api/auth/spectrocloud/start?scope=openid&origin=" + url.QueryEscape(base) + "&flow=popup&env=development")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	form := url.Values{"username": {user}}
	for _, field := range []string{"authRequestID", "csrf"} {
		m := regexp.MustCompile(`name="` + field + `" value="([^"]*)"`).FindSubmatch(page)
		if m == nil {
			t.Fatalf("the development provider's login page (%d) has no %s field: %.500s", res.StatusCode, field, page)
		}
		form.Set(field, string(m[1]))
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/dev/oidc/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	if res, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	frame, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(frame), "authorization_response") {
		t.Fatalf("the sign-in did not reach the frame page (%d): %.500s", res.StatusCode, frame)
	}
	req, _ = http.NewRequest(http.MethodGet, base+"/api/auth/spectrocloud/refresh?env=development", nil)
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	req.Header.Set("Origin", base)
	if res, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		BackstageIdentity struct {
			Token string `json:"token"`
		} `json:"backstageIdentity"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != http.StatusOK || body.BackstageIdentity.Token == "" {
		t.Fatalf("refresh after sign-in: %d %v", res.StatusCode, err)
	}
	return body.BackstageIdentity.Token
}

func getJSON[T any](t *testing.T, u string) T {
	t.Helper()
	var v T
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", u, res.StatusCode, err)
	}
	return v
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
