package daemon

import (
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/config"
)

// With server.metricsListen set, /metrics on that listener (and only there)
// counts requests by route pattern, the provider calls of each environment
// and the plugins' state and calls; it holds no token or cookie.
func TestMetrics(t *testing.T) {
	path, digest := buildTestPlugin(t)
	d, base, err := startDevWith(t, func(cfg *config.Config) {
		usePlugin(path, digest)(cfg)
		cfg.Server.MetricsListen = freeAddr(t)
	})
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	code, frame, err := devSignIn(c, base+"/api/auth/spectrocloud/start?scope=openid&origin="+url.QueryEscape(base)+"&flow=popup&env=development", base, "alice")
	if err != nil || code != http.StatusOK || !strings.Contains(frame, "authorization_response") {
		t.Fatalf("sign-in: %d %v", code, err)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/api/auth/spectrocloud/refresh?env=development", nil)
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	req.Header.Set("Origin", base)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	token, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, p := range []string{"/no/such/route", "/metrics"} {
		res, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on the main listener: %d, want 404", p, res.StatusCode)
		}
	}

	text := scrape(t, d)
	for _, want := range []string{
		`spectroauth_http_requests_total{code="200",route="GET /api/auth/{provider}/refresh"} 1`,
		`spectroauth_http_requests_total{code="302",route="GET /api/auth/{provider}/start"} 1`,
		`spectroauth_http_requests_total{code="404",route="unmatched"} 2`,
		`spectroauth_http_request_duration_seconds_count{route="GET /api/auth/{provider}/refresh"} 1`,
		`spectroauth_upstream_requests_total{env="development",outcome="2xx"}`,
		`spectroauth_signins_total{client="browser",env="development",outcome="signed-in"} 1`,
		`spectroauth_plugin_up{plugin="tp",state="up"} 1`,
		`spectroauth_plugin_calls_total{plugin="tp"} 1`,
		`spectroauth_plugin_restarts_total{plugin="tp"} 0`,
		`spectroauth_build_info{commit="",version="dev"} 1`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	u, _ := url.Parse(base + "/api/auth/spectrocloud/refresh")
	secrets := []string{"eyJ"}
	for _, ck := range jar.Cookies(u) {
		secrets = append(secrets, ck.Value)
	}
	if len(token) < 100 {
		t.Fatalf("refresh answered %s", token)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("/metrics holds a secret (%.12s…)", s)
		}
	}
}

// freeAddr is a loopback address nothing listens on, for a listener the
// daemon opens itself.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// scrape reads d's /metrics.
func scrape(t *testing.T, d *Daemon) string {
	t.Helper()
	res, err := http.Get("http://" + d.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", res.StatusCode, body)
	}
	return string(body)
}
