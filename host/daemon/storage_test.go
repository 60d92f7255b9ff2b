package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// startReplica runs a daemon on the development defaults with its state in
// the PostgreSQL database dsn. All replicas share baseURL (as behind a load
// balancer) and the upstream: the development provider of the first one.
func startReplica(t *testing.T, l net.Listener, baseURL, dsn string, devProvider bool) *Daemon {
	t.Helper()
	cfg := replicaConfig(t, l, baseURL, dsn)
	cfg.DevProvider.Enabled = devProvider
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := Start(ctx, cfg, Options{Listener: l})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	return d
}

// refreshBody is what the tests read of a /refresh answer.
type refreshBody struct {
	BackstageIdentity struct {
		Token    string `json:"token"`
		Identity struct {
			UserEntityRef string `json:"userEntityRef"`
		} `json:"identity"`
	} `json:"backstageIdentity"`
}

// refreshAt refreshes the development session in c's cookies at base, as
// the app at origin does.
func refreshAt(t *testing.T, c *http.Client, base, origin string) (int, refreshBody) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api/auth/spectrocloud/refresh?env=development", nil)
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	req.Header.Set("Origin", origin)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body refreshBody
	_ = json.NewDecoder(res.Body).Decode(&body)
	return res.StatusCode, body
}

func listen(t *testing.T) (net.Listener, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l, "http://localhost:" + portOf(l.Addr())
}

// TestReplicasShareOnePostgresDatabase: two daemons on one database behave
// as one: a sign-in started on one completes on the other, a session made
// on one refreshes on the other with a token both verify, and a sign-out
// on one ends the session on both.
func TestReplicasShareOnePostgresDatabase(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	la, baseA := listen(t)
	lb, baseB := listen(t)
	startReplica(t, la, baseA, dsn, true)
	startReplica(t, lb, baseA, dsn, false)

	for _, base := range []string{baseA, baseB} {
		res, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s/readyz: %d", base, res.StatusCode)
		}
	}

	// Start on B: its state, PKCE verifier and nonce come from the shared
	// flow key. The provider sends the browser back to the public URL (A),
	// which must complete what B started.
	jar, _ := cookiejar.New(nil) // cookies ignore ports: both replicas see them
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	code, frame, err := devSignIn(c, baseB+"/api/auth/spectrocloud/start?scope=openid%20offline_access&origin="+url.QueryEscape(baseA)+"&flow=popup&env=development", baseA, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusOK || !strings.Contains(frame, "authorization_response") || !strings.Contains(frame, "user%3Adefault%2Falice") {
		t.Fatalf("a sign-in started on B did not complete on A (%d): %s", code, frame)
	}

	refresh := func(base string) (int, string) {
		t.Helper()
		code, body := refreshAt(t, c, base, baseA)
		return code, body.BackstageIdentity.Token
	}
	code, token := refresh(baseB)
	if code != http.StatusOK || token == "" {
		t.Fatalf("refresh on B of a session made on A: %d", code)
	}
	// The token B issued verifies on both: they publish the same keys.
	for _, base := range []string{baseA, baseB} {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/auth/v1/userinfo", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "user:default/alice") {
			t.Errorf("%s/v1/userinfo with B's token: %d %s", base, res.StatusCode, body)
		}
	}

	// Both publish the key A made at the sign-in, though B loaded the
	// (then empty) key store before it existed.
	var jwks []string
	for _, base := range []string{baseA, baseB} {
		res, err := http.Get(base + "/api/auth/.well-known/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		jwks = append(jwks, string(body))
	}
	if jwks[0] != jwks[1] || !strings.Contains(jwks[0], `"kid"`) {
		t.Errorf("the replicas publish different keys:\nA: %s\nB: %s", jwks[0], jwks[1])
	}

	// Sign out on A: the session is gone on B too.
	req, _ := http.NewRequest(http.MethodPost, baseA+"/api/auth/spectrocloud/logout?env=development", nil)
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	req.Header.Set("Origin", baseA)
	// The jar drops the cookies on logout; keep them to replay them on B.
	u, _ := url.Parse(baseA + "/api/auth/spectrocloud/refresh")
	kept := jar.Cookies(u)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("logout on A: %d", res.StatusCode)
	}
	jar.SetCookies(u, kept)
	if code, _ := refresh(baseB); code != http.StatusUnauthorized {
		t.Errorf("refresh on B after a sign-out on A: %d, want 401", code)
	}
}

// TestPostgresUnreachableFailsTheStartNamingTheKey: a database that cannot
// be reached stops the start with an error that names the key and not the
// password.
func TestPostgresUnreachableFailsTheStartNamingTheKey(t *testing.T) {
	l, base := listen(t)
	defer l.Close()
	cfg := replicaConfig(t, l, base, "postgres://spectroauth:pw-SECRET-42@127.0.0.1:1/spectroauth?connect_timeout=2")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := Start(ctx, cfg, Options{Listener: l})
	if err == nil {
		_ = d.Close(context.Background())
		t.Fatal("the daemon started without its database")
	}
	if !strings.Contains(err.Error(), "storage.postgresUrl") || strings.Contains(err.Error(), "pw-SECRET-42") {
		t.Errorf("start error = %v; want it to name storage.postgresUrl and not the password", err)
	}
}

// While the daemon waits for its database at start, /healthz says it is
// alive (a liveness probe must not kill it) and /readyz that it does not
// serve yet.
func TestHealthzWhileWaitingForTheDatabase(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	l, base := listen(t)
	cfg := replicaConfig(t, l, base, "postgres://spectroauth@"+silent.Addr().String()+"/spectroauth?sslmode=disable")
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan error, 1)
	go func() {
		d, err := Start(ctx, cfg, Options{Listener: l, Build: Build{Version: "v9.9.9"}})
		if err == nil {
			_ = d.Close(context.Background())
		}
		started <- err
	}()
	get := func(path string) int {
		res, err := http.Get(base + path)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	deadline := time.Now().Add(10 * time.Second)
	for get("/healthz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/healthz never answered 200 while the daemon waited for its database")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while starting: %d, want 503", code)
	}
	if body := getBody(t, base+"/healthz"); body != `{"status":"starting","version":"v9.9.9"}`+"\n" {
		t.Errorf("/healthz while starting: %s", body)
	}
	cancel()
	if err := <-started; err == nil || !strings.Contains(err.Error(), "storage.postgresUrl") {
		t.Errorf("start with a database that never answers: %v", err)
	}
}

// A flood of /readyz checks the database once per interval, not once per
// request.
func TestCachedCheck(t *testing.T) {
	calls := 0
	check := cachedCheck(time.Hour, func() error { calls++; return errors.New("down") })
	for range 100 {
		if err := check(); err == nil || err.Error() != "down" {
			t.Fatalf("check = %v", err)
		}
	}
	if calls != 1 {
		t.Errorf("%d checks for 100 calls within the interval, want 1", calls)
	}
	again := cachedCheck(time.Nanosecond, func() error { calls++; return nil })
	_ = again()
	time.Sleep(time.Millisecond)
	_ = again()
	if calls != 3 {
		t.Errorf("%d checks, want 3 once the interval passed", calls)
	}
}

// replicaConfig is the development defaults on l with baseURL, their
// state in the PostgreSQL database dsn.
func replicaConfig(t *testing.T, l net.Listener, baseURL, dsn string) *config.Config {
	t.Helper()
	cfg, err := config.Load("", config.WithEnv(map[string]string{
		"SPECTROAUTH_SERVER__LISTEN":                                     l.Addr().String(),
		"SPECTROAUTH_SERVER__BASEURL":                                    baseURL,
		"SPECTROAUTH_APP__BASEURL":                                       baseURL,
		"SPECTROAUTH_AUTH__PROVIDERS__SPECTROCLOUD__DEVELOPMENT__ISSUER": baseURL + DevProviderPath,
		"SPECTROAUTH_STORAGE__TYPE":                                      "postgres",
		"SPECTROAUTH_STORAGE__POSTGRESURL":                               dsn,
	}))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
