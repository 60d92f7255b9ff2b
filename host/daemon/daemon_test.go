package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/config"
)

// startDev runs the daemon on its embedded development defaults, moved to a
// free loopback port and a temporary data directory.
func startDev(t *testing.T, log hclog.Logger) (*Daemon, string) {
	t.Helper()
	return startDevOpts(t, Options{Logger: log})
}

// startDevOpts is startDev with opts (their Listener is replaced).
func startDevOpts(t *testing.T, opts Options) (*Daemon, string) {
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts.Listener = l
	d, err := Start(ctx, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	return d, base
}

func portOf(a net.Addr) string { return a.(*net.TCPAddr).AddrPort().String()[len("127.0.0.1:"):] }

func TestDevDefaultsServeTheDemoAndSignIn(t *testing.T) {
	var logs syncBuffer
	_, base := startDev(t, hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: &logs, JSONFormat: true}))
	for _, path := range []string{"/", "/demo.js", "/healthz", "/readyz", "/api/auth/.well-known/jwks.json", "/api/auth/.well-known/openid-configuration", DevProviderPath + "/.well-known/openid-configuration"} {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, res.StatusCode)
		}
	}

	// Click through the development provider's login page as a browser would.
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	res, err := c.Get(base + "/api/auth/spectrocloud/start?scope=openid&origin=" + url.QueryEscape(base) + "&flow=popup&env=development")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(page), "not for production") {
		t.Fatalf("login page does not say it is for development: %s", page)
	}
	field := func(name string) string {
		m := regexp.MustCompile(`name="` + name + `" value="([^"]*)"`).FindSubmatch(page)
		if m == nil {
			t.Fatalf("login page has no %s field", name)
		}
		return string(m[1])
	}
	form := url.Values{"authRequestID": {field("authRequestID")}, "csrf": {field("csrf")}, "username": {"alice"}}
	req, _ := http.NewRequest(http.MethodPost, base+DevProviderPath+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	frame, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(frame), "authorization_response") || !strings.Contains(string(frame), "user%3Adefault%2Falice") {
		t.Fatalf("sign-in did not reach the frame page with alice's identity (%d): %s", res.StatusCode, frame)
	}

	// Even at trace level, the log holds no secret: not the client secret,
	// no token, not the session handle.
	u, _ := url.Parse(base + "/api/auth/spectrocloud/refresh")
	secrets := []string{"dev-secret-not-for-production", "eyJ"}
	for _, c := range jar.Cookies(u) {
		secrets = append(secrets, c.Value)
	}
	if !strings.Contains(logs.String(), "signed in") {
		t.Fatalf("the log does not show the sign-in:\n%s", logs.String())
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(logs.String(), s) {
			t.Errorf("the log contains a secret (%.12s…)", s)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDevProviderRefusesNonLoopbackListen(t *testing.T) {
	cfg := &config.Config{Server: config.Server{Listen: "0.0.0.0:7007"}, DevProvider: config.DevProvider{Enabled: true}}
	_, err := Start(context.Background(), cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), "0.0.0.0:7007") {
		t.Fatalf("err = %v, want a refusal naming the address", err)
	}
}

func TestSecretFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "flow.key")
	a, err := loadOrCreateSecret(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadOrCreateSecret(p)
	if err != nil || string(a) != string(b) || len(a) != 32 {
		t.Fatalf("secret not stable: %v", err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if err := os.WriteFile(p, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateSecret(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("short secret accepted: %v", err)
	}
}

// devSignIn is a browser signing in as user on the development provider of
// devBase: it opens start (a /start URL) with c, submits the provider's
// login page and returns what the final redirect answered (the frame page).
func devSignIn(c *http.Client, start, devBase, user string) (int, string, error) {
	res, err := c.Get(start)
	if err != nil {
		return 0, "", err
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	form := url.Values{"username": {user}}
	for _, name := range []string{"authRequestID", "csrf"} {
		m := regexp.MustCompile(`name="` + name + `" value="([^"]*)"`).FindSubmatch(page)
		if m == nil {
			return 0, "", fmt.Errorf("the login page (%d) has no %s field: %s", res.StatusCode, name, page)
		}
		form.Set(name, string(m[1]))
	}
	req, _ := http.NewRequest(http.MethodPost, devBase+DevProviderPath+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", devBase)
	if res, err = c.Do(req); err != nil {
		return 0, "", err
	}
	frame, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res.StatusCode, string(frame), nil
}

// The test page at / is served only where it can work: when the daemon's
// own origin may receive sign-in results.
func TestDemoPageOnlyWhereItsOriginIsAllowed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra func(base string) []string
		want  int
	}{
		{"app elsewhere", func(string) []string { return nil }, http.StatusNotFound},
		{"daemon origin allowed", func(base string) []string { return []string{base} }, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var self string
			_, base, err := startDevWith(t, func(cfg *config.Config) {
				self = cfg.Server.BaseURL
				cfg.App.BaseURL = "https://backstage.example.com"
				cfg.Auth.ExtraAllowedOrigins = tc.extra(self)
			})
			if err != nil {
				t.Fatal(err)
			}
			res, err := http.Get(base + "/")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tc.want {
				t.Errorf("GET /: %d, want %d", res.StatusCode, tc.want)
			}
		})
	}
}

// /healthz names the build that runs, so that an operator (or a rollout
// check) sees which version a replica runs.
func TestHealthzNamesTheBuild(t *testing.T) {
	_, base := startDevOpts(t, Options{Build: Build{Version: "v1.2.3-4-gabcdef0", Commit: "abcdef0123"}})
	if got, want := getBody(t, base+"/healthz"), `{"status":"ok","version":"v1.2.3-4-gabcdef0","commit":"abcdef0123"}`+"\n"; got != want {
		t.Errorf("/healthz = %s, want %s", got, want)
	}
}

// getBody GETs u and returns the body of a 200 answer.
func getBody(t *testing.T, u string) string {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, res.StatusCode, b)
	}
	return string(b)
}
