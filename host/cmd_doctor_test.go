package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spectroauth/spectroauth/host/devprovider"
	"github.com/spectroauth/spectroauth/host/internal/pgtest"
	"github.com/spectroauth/spectroauth/host/storage/postgres"
	"github.com/spectroauth/spectroauth/plugins/palette-clusters/palettetest"
)

const (
	doctorClientID     = "backstage"
	doctorClientSecret = "doctor-client-secret-SECRET"
)

var doctorKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// paletteBinary builds the palette-clusters plugin once per test binary.
var paletteBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "doctor-plugin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "palette-clusters")
	if out, err := exec.Command("go", "build", "-o", bin, "../plugins/palette-clusters").CombinedOutput(); err != nil {
		return "", &exec.ExitError{Stderr: out}
	}
	return bin, nil
})

// doctorEnv is a deployment for doctor: the zitadel test provider (the
// same OP the upstream tests use) behind a handler that can skew its Date
// header or fail its JWKS, a fake Palette, the palette-clusters plugin.
type doctorEnv struct {
	issuer  string
	palette *palettetest.Server
	bin     string
	digest  string
	dir     string

	mu       sync.Mutex
	skew     time.Duration
	failJWKS bool
}

func newDoctorEnv(t *testing.T) *doctorEnv {
	t.Helper()
	bin, err := paletteBinary()
	if err != nil {
		t.Fatalf("building the palette-clusters plugin: %v", err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	e := &doctorEnv{bin: bin, digest: hex.EncodeToString(sum[:]), dir: t.TempDir(), palette: palettetest.New(t)}
	e.palette.Edit(func(p *palettetest.Server) { p.Clusters = doctorClusters() })
	srv := httptest.NewUnstartedServer(nil)
	e.issuer = "http://" + srv.Listener.Addr().String()
	op, err := devprovider.New(devprovider.Config{
		Issuer: e.issuer,
		Clients: []devprovider.Client{{ID: doctorClientID, Secret: doctorClientSecret,
			RedirectURIs: []string{"https://auth.example.com/api/auth/spectrocloud/handler/frame"}}},
		Users:         []devprovider.User{{ID: "u-alice", Username: "alice", Email: "alice@example.com"}},
		RefreshTokens: true,
		AllowInsecure: true,
		Key:           doctorKey(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		skew, failJWKS := e.skew, e.failJWKS
		e.mu.Unlock()
		if skew != 0 {
			w.Header().Set("Date", time.Now().Add(skew).UTC().Format(http.TimeFormat))
		}
		if failJWKS && strings.HasSuffix(r.URL.Path, "/keys") {
			http.Error(w, "key service down", http.StatusServiceUnavailable)
			return
		}
		op.ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(srv.Close)
	return e
}

// doctorClusters is the fake's default tenant without its slow and broken
// clusters, which would hold the listing up.
func doctorClusters() []palettetest.Cluster {
	return append(palettetest.DefaultClusters()[:5], palettetest.DefaultClusters()[7:]...)
}

// config is a configuration of the deployment, changed by edit, written
// to a file.
func (e *doctorEnv) config(t *testing.T, edit func(cfg map[string]any)) string {
	t.Helper()
	provider := map[string]any{"issuer": e.issuer, "allowInsecureIssuer": true, "clientId": doctorClientID, "clientSecret": doctorClientSecret,
		"signIn": map[string]any{"resolvers": []any{map[string]any{"plugin": "builtin", "resolver": "emailLocalPartMatchingUserEntityName"}}}}
	cfg := map[string]any{
		"server":  map[string]any{"baseUrl": "https://auth.example.com", "listen": "127.0.0.1:0"},
		"app":     map[string]any{"baseUrl": "https://backstage.example.com"},
		"auth":    map[string]any{"providers": map[string]any{"spectrocloud": map[string]any{"production": provider}}},
		"storage": map[string]any{"type": "file", "path": filepath.Join(e.dir, "data")},
		"plugins": map[string]any{"palette": map[string]any{"command": e.bin, "sha256": e.digest, "config": e.palette.Config()}},
		"kubernetes": map[string]any{"sources": []any{map[string]any{"plugin": "palette", "interval": "10m",
			"options": map[string]any{"clusterTimeout": "5s"}}}},
	}
	if edit != nil {
		edit(cfg)
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "spectroauth.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// withoutPalette leaves the plugin and its source out, for checks that do
// not concern them (starting the plugin takes most of doctor's time).
func withoutPalette(cfg map[string]any) {
	delete(cfg, "plugins")
	delete(cfg, "kubernetes")
}

func providerOf(cfg map[string]any) map[string]any {
	return cfg["auth"].(map[string]any)["providers"].(map[string]any)["spectrocloud"].(map[string]any)["production"].(map[string]any)
}

func paletteOf(cfg map[string]any) map[string]any {
	return cfg["plugins"].(map[string]any)["palette"].(map[string]any)
}

// TestDoctor runs doctor against the test provider and the fake Palette:
// every check passing, then each check failing, with what to fix.
func TestDoctor(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the palette-clusters plugin")
	}
	e := newDoctorEnv(t)
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return "http://" + l.Addr().String()
	}()
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		setup func(e *doctorEnv)
		edit  func(cfg map[string]any)
		code  int
		// lines are substrings of stdout lines, in order of the checks.
		lines []string
	}{
		{name: "all pass", code: 0, lines: []string{
			"ok    provider production: discovery: " + e.issuer + "/.well-known/openid-configuration answers; its issuer is the configured one",
			"ok    provider production: JWKS: ", "signing key(s)",
			"ok    provider production: token endpoint: the client authenticates with client_secret_basic (an invalid code and an invalid refresh token came back invalid_grant)",
			"ok    provider production: clock: ",
			"ok    storage (file): ", "is writable",
			"ok    plugin palette: started and described: palette-clusters",
			"ok    Palette source kubernetes.sources[0] (palette): the API key works; 7 clusters with OIDC in projects payments, platform, sandbox",
		}},
		{name: "issuer not the discovered one", code: 1,
			edit: func(c map[string]any) {
				withoutPalette(c)
				providerOf(c)["issuer"] = e.issuer + "/"
			},
			lines: []string{"FAIL  provider production: discovery: the discovery document's issuer is \"" + e.issuer + "\"", "fix: set auth.providers.spectrocloud.production.issuer to exactly \"" + e.issuer + "\""}},
		{name: "provider unreachable", code: 1,
			edit: func(c map[string]any) {
				withoutPalette(c)
				providerOf(c)["issuer"] = closed
			},
			lines: []string{"FAIL  provider production: discovery: cannot fetch " + closed, "fix: check auth.providers.spectrocloud.production.issuer and that this host reaches it"}},
		{name: "JWKS down", code: 1, edit: withoutPalette, setup: func(e *doctorEnv) { e.failJWKS = true },
			lines: []string{"FAIL  provider production: JWKS: ", "answered 503", "fix: check the provider's jwks_uri"}},
		{name: "wrong client secret", code: 1,
			edit: func(c map[string]any) {
				withoutPalette(c)
				providerOf(c)["clientSecret"] = "not-the-secret"
			},
			lines: []string{"FAIL  provider production: token endpoint: the provider refused the client", "fix: check auth.providers.spectrocloud.production.clientId, auth.providers.spectrocloud.production.clientSecret and auth.providers.spectrocloud.production.tokenEndpointAuthMethod (now client_secret_basic"}},
		{name: "clock skew", code: 1, edit: withoutPalette, setup: func(e *doctorEnv) { e.skew = -time.Hour },
			lines: []string{"FAIL  provider production: clock: this host's clock is 1h0m", "fix: synchronise this host's clock (NTP)"}},
		{name: "storage not writable", code: 1,
			edit: func(c map[string]any) {
				withoutPalette(c)

				c["storage"] = map[string]any{"type": "file", "path": filepath.Join(notADir, "data")}
			},
			lines: []string{"FAIL  storage (file): cannot create ", "fix: make storage.path a directory"}},
		{name: "database unreachable", code: 1,
			edit: func(c map[string]any) {
				withoutPalette(c)

				c["storage"] = map[string]any{"type": "postgres", "postgresUrl": "postgres://spectroauth:pw-SECRET@127.0.0.1:1/spectroauth?sslmode=disable&connect_timeout=2"}
			},
			lines: []string{"FAIL  storage (postgres): cannot connect", "fix: check storage.postgresUrl"}},
		{name: "plugin digest mismatch", code: 1,
			edit:  func(c map[string]any) { paletteOf(c)["sha256"] = strings.Repeat("ab", 32) },
			lines: []string{"FAIL  plugin palette: plugins.palette.sha256: the binary does not match"}},
		{name: "Palette API key refused", code: 1,
			edit:  func(c map[string]any) { paletteOf(c)["config"].(map[string]any)["apiKey"] = "wrong-key" },
			lines: []string{"ok    plugin palette", "FAIL  Palette source kubernetes.sources[0] (palette): Palette refused the API key", "fix: set plugins.palette.config.apiKey"}},
		{name: "Palette listing slower than the call timeout", code: 1,
			setup: func(e *doctorEnv) {
				e.palette.Edit(func(p *palettetest.Server) { p.Clusters = palettetest.DefaultClusters()[5:6] }) // never answers
			},
			edit: func(c map[string]any) {
				paletteOf(c)["callTimeout"] = "1s"
				c["kubernetes"].(map[string]any)["sources"].([]any)[0].(map[string]any)["options"] = map[string]any{"clusterTimeout": "1h"}
			},
			lines: []string{"FAIL  Palette source kubernetes.sources[0] (palette): listing the clusters took too long", "fix: raise plugins.palette.callTimeout"}},
		{name: "no cluster with OIDC", code: 1,
			setup: func(e *doctorEnv) {
				e.palette.Edit(func(p *palettetest.Server) {
					for i := range p.Clusters {
						p.Clusters[i].Kubeconfig = palettetest.KubeconfigNoOIDC
					}
				})
			},
			lines: []string{"FAIL  Palette source kubernetes.sources[0] (palette): the API key works, but no cluster it sees has OIDC configured", "fix: configure OIDC on the clusters"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.palette.Edit(func(p *palettetest.Server) { p.Clusters = doctorClusters() })
			e.mu.Lock()
			e.skew, e.failJWKS = 0, false
			if tc.setup != nil {
				tc.setup(e)
			}
			e.mu.Unlock()
			path := e.config(t, tc.edit)
			var stdout, stderr bytes.Buffer
			code := run([]string{"doctor", "-config", path, "-timeout", "60s"}, &stdout, &stderr)
			out := stdout.String()
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, stderr.String())
			}
			rest := out
			for _, want := range tc.lines {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Errorf("stdout lacks %q (in order):\n%s", want, out)
					continue
				}
				rest = rest[i:]
			}
			if out == "" {
				t.Fatalf("no checks printed; stderr:\n%s", stderr.String())
			}
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if !strings.HasPrefix(l, "ok    ") && !strings.HasPrefix(l, "FAIL  ") {
					t.Errorf("a line that is not a check: %q", l)
				}
				if strings.HasPrefix(l, "FAIL  ") && !strings.Contains(l, " -> fix: ") {
					t.Errorf("a failure without a fix: %q", l)
				}
			}
			if tc.code != 0 && !strings.Contains(stderr.String(), "checks failed") {
				t.Errorf("stderr = %q", stderr.String())
			}
			if all := out + stderr.String(); strings.Contains(all, "SECRET") || strings.Contains(all, palettetest.APIKey) {
				t.Errorf("a secret was printed:\n%s", all)
			}
		})
	}
}

// TestDoctorPostgres: a database without the daemon's schema fails the
// storage check, one the daemon migrated passes; the password is never
// printed.
func TestDoctorPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the palette-clusters plugin")
	}
	e := newDoctorEnv(t)
	for _, migrated := range []bool{false, true} {
		t.Run(fmt.Sprintf("migrated %t", migrated), func(t *testing.T) {
			dsn := pgtest.NewDatabase(t) + "&password=pw-SECRET-42"
			if migrated {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				db, err := postgres.Open(ctx, dsn, postgres.Options{SweepInterval: -1})
				if err != nil {
					t.Fatal(err)
				}
				_ = db.Close()
			}
			path := e.config(t, func(c map[string]any) {
				c["storage"] = map[string]any{"type": "postgres", "postgresUrl": dsn}
			})
			var stdout, stderr bytes.Buffer
			code := run([]string{"doctor", "-config", path}, &stdout, &stderr)
			want, wantCode := "FAIL  storage (postgres): the database answers, but holds no spectroauth schema -> fix: start the daemon once", 1
			if migrated {
				want, wantCode = "ok    storage (postgres): the database answers; spectroauth schema version ", 0
			}
			if code != wantCode || !strings.Contains(stdout.String(), want) {
				t.Errorf("exit %d, want %d with %q\nstdout:\n%s\nstderr:\n%s", code, wantCode, want, stdout.String(), stderr.String())
			}
			if strings.Contains(stdout.String()+stderr.String(), "SECRET") {
				t.Error("the database password was printed")
			}
		})
	}
}
