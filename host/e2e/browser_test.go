package e2e

import (
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBrowser signs in with Backstage's own frontend auth client
// (@backstage/core-app-api OAuth2, wired as examples/backstage tells an
// admin) in headless Chromium: popup sign-in, the identity, profile and ID
// token it yields, the session coming back after a reload through /refresh,
// sign-out, an extra allowed origin, a refused origin, and the redirect flow.
// Each scenario of host/e2e/testdata/node/browser.mjs is a subtest.
func TestBrowser(t *testing.T) {
	p := locate(t)
	node := needNode(t, p)
	chromium := needChromium(t)
	art := artifactDir(t, p)

	dist := bundleApp(t, p, node, art)

	// Three origins serve the same page: the app (app.baseUrl), another one
	// allowed by an extraAllowedOrigins glob (reached as app.e2e.localhost, which
	// Chromium resolves to loopback), and one the daemon must refuse.
	allowed, extra, disallowed := newServer(t, nil), newServer(t, nil), newServer(t, nil)
	extraURL := "http://app.e2e.localhost:" + extra.port()
	e := startEnv(t, p, art, envOptions{
		appBaseURL:   allowed.URL,
		extraOrigins: []string{"http://*.e2e.localhost:" + extra.port()},
		kubernetes:   true,
	})
	for _, s := range []struct {
		srv    *testServer
		origin string
	}{{allowed, allowed.URL}, {extra, extraURL}, {disallowed, disallowed.URL}} {
		s.srv.setHandler(appHandler(t, dist, e.appConfigs(t, s.origin)))
	}

	spec := map[string]any{
		"chromium":          chromium,
		"artifacts":         art,
		"daemon":            e.daemonURL,
		"totalTimeoutMs":    150_000,
		"scenarioTimeoutMs": 30_000,
		"stepTimeoutMs":     15_000,
		"apps": map[string]string{
			"allowed":    allowed.URL,
			"extra":      extraURL,
			"disallowed": disallowed.URL,
		},
		"expect": map[string]any{
			"userEntityRef": aliceRef,
			// The test plugin's credential for cluster prod.
			"kubeCredential":      "tok-prod-" + alice.ID,
			"ownershipEntityRefs": []string{aliceRef},
			"profile": map[string]string{
				"email":       alice.Email,
				"displayName": alice.Name,
				"picture":     alice.Picture,
			},
			"idToken": map[string]string{
				"iss":   e.issuer,
				"aud":   clientID,
				"sub":   alice.ID,
				"email": alice.Email,
			},
		},
	}
	runBrowser(t, p, node, art, spec)
}

// bundleApp bundles the test page (node/build.mjs) and returns its folder.
func bundleApp(t *testing.T, p paths, node, art string) string {
	t.Helper()
	start := time.Now()
	if err := runNode(t, p, node, 2*time.Minute, filepath.Join(art, "build.log"), "build.mjs"); err != nil {
		t.Fatalf("bundling the test page: %v\n%s", err, readTail(filepath.Join(art, "build.log"), 4000))
	}
	t.Logf("bundled the test page in %s", time.Since(start).Round(time.Millisecond))
	return filepath.Join(p.node, "dist")
}

// runBrowser runs node/browser.mjs with spec and makes each scenario it
// reports a subtest.
func runBrowser(t *testing.T, p paths, node, art string, spec map[string]any) {
	t.Helper()
	if only := os.Getenv("SPECTROAUTH_E2E_ONLY"); only != "" {
		spec["only"] = strings.Split(only, ",")
	}
	specPath := filepath.Join(t.TempDir(), "spec.json")
	resultsPath := filepath.Join(t.TempDir(), "results.json")
	writeJSON(t, specPath, spec)

	start := time.Now()
	logPath := filepath.Join(art, "browser.log")
	runErr := runNode(t, p, node, 3*time.Minute, logPath, "browser.mjs", specPath, resultsPath)
	t.Logf("browser scenarios ran in %s", time.Since(start).Round(time.Millisecond))

	var results []struct {
		Name      string         `json:"name"`
		OK        bool           `json:"ok"`
		Skipped   bool           `json:"skipped"`
		MS        int            `json:"ms"`
		Error     string         `json:"error"`
		Details   map[string]any `json:"details"`
		Artifacts []string       `json:"artifacts"`
	}
	b, err := os.ReadFile(resultsPath)
	if err == nil {
		err = json.Unmarshal(b, &results)
	}
	if err != nil || len(results) == 0 {
		t.Fatalf("the browser driver left no results (%v, driver: %v)\n%s", err, runErr, readTail(logPath, 6000))
	}
	if runErr != nil {
		t.Errorf("browser driver: %v\n%s", runErr, readTail(logPath, 6000))
	}
	for _, r := range results {
		t.Run(r.Name, func(t *testing.T) {
			if r.Skipped {
				t.Skip(r.Error)
			}
			if !r.OK {
				t.Errorf("%s\nartefacts: %s", r.Error, strings.Join(r.Artifacts, ", "))
				return
			}
			t.Logf("passed in %d ms", r.MS)
			// Current Backstage tokens carry no ownership claim: backends read it from /v1/userinfo.
			if bt, ok := r.Details["backstageToken"].(map[string]any); ok {
				if pl, ok := bt["payload"].(map[string]any); ok {
					if _, has := pl["ent"]; has {
						t.Errorf("Backstage token carries ent although auth.includeOwnershipClaim is off: %v", pl["ent"])
					}
				}
			}
		})
	}
	if t.Failed() {
		t.Logf("daemon log: %s", filepath.Join(art, "daemon.log"))
	}
}

// needChromium returns findChromium, or skips when there is none.
func needChromium(t *testing.T) string {
	t.Helper()
	c := findChromium()
	if c == "" {
		skipf(t, "chromium not found (apt-get install chromium, or set SPECTROAUTH_E2E_CHROMIUM)")
	}
	return c
}

// findChromium is $SPECTROAUTH_E2E_CHROMIUM, else chromium on PATH.
func findChromium() string {
	if c := os.Getenv("SPECTROAUTH_E2E_CHROMIUM"); c != "" {
		return c
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if c, err := exec.LookPath(name); err == nil {
			return c
		}
	}
	return ""
}

// appConfigs are the app configs the test page gets from ./config.json, per
// variant: examples/backstage/app-config.yaml plus what a real app config
// also has; the redirect variant opts in to Backstage's redirect flow.
func (e *env) appConfigs(t *testing.T, origin string) map[string]map[string]any {
	t.Helper()
	base := exampleAppConfig(t, e.paths, e.daemonURL)
	base["app"] = map[string]any{"baseUrl": origin}
	// No backend here: only `auth` is discovered, and it goes to the daemon.
	base["backend"] = map[string]any{"baseUrl": origin}
	redirect := maps.Clone(base)
	redirect["enableExperimentalRedirectFlow"] = true
	return map[string]map[string]any{"popup": base, "redirect": redirect}
}

// appHandler serves the bundled page under /<variant>/ with its config.
func appHandler(t *testing.T, dist string, configs map[string]map[string]any) http.Handler {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for variant, cfg := range configs {
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		prefix := "/" + variant + "/"
		mux.HandleFunc("GET "+prefix+"config.json", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(b)
		})
		mux.Handle("GET "+prefix, http.StripPrefix(prefix, noStore(http.FileServer(http.Dir(dist)))))
	}
	return mux
}

func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
