package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestBackend runs a minimal, unmodified Backstage backend from npm
// (@backstage/backend-defaults, the catalog on in-memory SQLite, and a tiny
// plugin in host/e2e/testdata/node/backend.cjs) whose discovery sends the `auth`
// plugin to spectroauthd, configured with examples/backstage/app-config.yaml.
// Backstage's own services must accept the daemon's token as alice, with
// her ownership read from the daemon's /v1/userinfo, and refuse tampered,
// expired and foreign-key tokens.
func TestBackend(t *testing.T) {
	p := locate(t)
	node := needNode(t, p)
	if !nativeSQLiteBuilt(p) {
		skipf(t, "better-sqlite3's native module is not built: run `npm run build-native` in host/e2e/testdata/node (npm ci --ignore-scripts skips it)")
	}
	art := artifactDir(t, p)
	e := startEnv(t, p, art, envOptions{appBaseURL: "http://127.0.0.1:3000"})

	session, _ := e.signIn(t, "http://127.0.0.1:3000")
	token := session.BackstageIdentity.Token
	header, claims := decodeJWT(t, token)
	if _, has := claims["ent"]; has {
		t.Fatalf("the daemon's token carries ent; this test wants ownership to come from /v1/userinfo")
	}

	// The backend reaches the daemon through a recording proxy, to show
	// which of the daemon's routes Backstage's services use.
	rec := newRecorder(t, e.daemonURL)
	be := startBackend(t, p, art, node, rec.srv.URL)

	t.Run("our token is accepted as the signed-in user", func(t *testing.T) {
		status, body := be.get(t, "/api/e2e/whoami", bearer(token))
		if status != http.StatusOK {
			t.Fatalf("whoami: %d %s", status, body)
		}
		var got struct {
			Principal struct {
				Type          string `json:"type"`
				UserEntityRef string `json:"userEntityRef"`
			} `json:"principal"`
			UserInfo struct {
				UserEntityRef       string   `json:"userEntityRef"`
				OwnershipEntityRefs []string `json:"ownershipEntityRefs"`
			} `json:"userInfo"`
		}
		mustJSON(t, body, &got)
		if got.Principal.Type != "user" || got.Principal.UserEntityRef != aliceRef {
			t.Errorf("httpAuth.credentials principal = %+v, want user %s", got.Principal, aliceRef)
		}
		// The token has no ent: Backstage read this from the daemon's /v1/userinfo.
		if got.UserInfo.UserEntityRef != aliceRef || !slices.Equal(got.UserInfo.OwnershipEntityRefs, []string{aliceRef}) {
			t.Errorf("userInfo.getUserInfo = %+v, want %s owning [%s]", got.UserInfo, aliceRef, aliceRef)
		}
		for _, route := range []string{"/api/auth/.well-known/jwks.json", "/api/auth/v1/userinfo"} {
			if rec.count(route) == 0 {
				t.Errorf("the backend never called the daemon's %s (calls: %v)", route, rec.calls())
			}
		}
	})

	t.Run("the catalog serves the user", func(t *testing.T) {
		if status, body := be.get(t, "/api/catalog/entities?limit=1", bearer(token)); status != http.StatusOK {
			t.Errorf("catalog with our token: %d %s", status, body)
		}
		if status, body := be.get(t, "/api/catalog/entities?limit=1", nil); status != http.StatusUnauthorized {
			t.Errorf("catalog without a token: %d %s, want 401", status, body)
		}
	})

	t.Run("limited user cookie rebuilt from uip is accepted", func(t *testing.T) {
		// Backstage rebuilds a limited token from the `uip` claim: this only
		// verifies if the daemon signed exactly the bytes Backstage rebuilds.
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
		status, body := be.getWith(t, c, "/api/e2e/cookie", bearer(token))
		if status != http.StatusOK {
			t.Fatalf("issueUserCookie: %d %s", status, body)
		}
		status, body = be.getWith(t, c, "/api/e2e/limited", nil)
		if status != http.StatusOK {
			t.Fatalf("request with the limited-user cookie only: %d %s", status, body)
		}
		var got struct {
			Principal struct {
				UserEntityRef string `json:"userEntityRef"`
			} `json:"principal"`
		}
		mustJSON(t, body, &got)
		if got.Principal.UserEntityRef != aliceRef {
			t.Errorf("limited principal = %q, want %s", got.Principal.UserEntityRef, aliceRef)
		}
		if status, body := be.get(t, "/api/e2e/limited", nil); status != http.StatusUnauthorized {
			t.Errorf("limited route without the cookie: %d %s, want 401", status, body)
		}
	})

	// The daemon's own current signing key, from its file store, to forge
	// tokens that differ from a real one in one respect only.
	key := daemonKey(t, e.dataDir, header["kid"].(string))
	now := time.Now().Unix()
	valid := clone(claims)
	valid["iat"], valid["exp"] = now-10, now+600
	expired := clone(claims)
	expired["iat"], expired["exp"] = now-7200, now-3600
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("control: a token re-signed with the daemon's key is accepted", func(t *testing.T) {
		// Proves the forging below is sound, so each refusal has one cause.
		tok := sign(t, key, header["kid"].(string), valid)
		if status, body := be.get(t, "/api/e2e/whoami", bearer(tok)); status != http.StatusOK {
			t.Errorf("whoami: %d %s", status, body)
		}
	})

	refused := map[string]string{
		"tampered payload":            tamper(t, token),
		"tampered signature":          tamperSignature(token),
		"expired":                     sign(t, key, header["kid"].(string), expired),
		"foreign key under our kid":   sign(t, otherKey, header["kid"].(string), valid),
		"foreign key and unknown kid": sign(t, otherKey, "4c1d7e52-0000-4000-8000-000000000000", valid),
		"unsigned (alg none)":         unsigned(header, valid),
	}
	for _, name := range slices.Sorted(maps.Keys(refused)) {
		tok := refused[name]
		t.Run("refused: "+name, func(t *testing.T) {
			for _, path := range []string{"/api/e2e/whoami", "/api/catalog/entities?limit=1"} {
				status, body := be.get(t, path, bearer(tok))
				if status != http.StatusUnauthorized {
					t.Errorf("%s: %d %s, want 401", path, status, body)
					continue
				}
				if !strings.Contains(string(body), "AuthenticationError") {
					t.Errorf("%s: 401 without Backstage's AuthenticationError: %s", path, body)
				}
			}
		})
	}
}

// nativeSQLiteBuilt reports whether better-sqlite3's addon was compiled.
func nativeSQLiteBuilt(p paths) bool {
	_, err := os.Stat(filepath.Join(p.node, "node_modules", "better-sqlite3", "build", "Release", "better_sqlite3.node"))
	return err == nil
}

// recorder is a reverse proxy to the daemon that remembers request paths.
type recorder struct {
	srv  *testServer
	mu   sync.Mutex
	seen []string
}

func newRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	r.srv = newServer(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		proxy.ServeHTTP(w, req)
	}))
	return r
}

func (r *recorder) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

func (r *recorder) count(path string) int {
	n := 0
	for _, c := range r.calls() {
		if strings.HasSuffix(c, " "+path) {
			n++
		}
	}
	return n
}

type backend struct {
	url  string
	proc *process
}

// startBackend starts host/e2e/testdata/node/backend.cjs with the example app config,
// a test overlay and moreConfigs (files, later ones win), and waits until
// Backstage says it is ready.
func startBackend(t *testing.T, p paths, art, node, daemonURL string, moreConfigs ...string) *backend {
	t.Helper()
	port := freePort(t)
	be := &backend{url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	overlay := fmt.Sprintf(`backend:
  baseUrl: %s
  listen:
    host: 127.0.0.1
    port: %d
  database:
    client: better-sqlite3
    connection: ':memory:'
app:
  baseUrl: http://127.0.0.1:3000
`, be.url, port)
	overlayPath := filepath.Join(t.TempDir(), "app-config.e2e.yaml")
	if err := os.WriteFile(overlayPath, []byte(overlay), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	argv := []string{node, "backend.cjs",
		"--config", filepath.Join(p.repo, "examples", "backstage", "app-config.yaml"),
		"--config", overlayPath}
	for _, c := range moreConfigs {
		argv = append(argv, "--config", c)
	}
	be.proc = startProcess(t, "backstage backend", filepath.Join(art, "backend.log"), p.node,
		[]string{"SPECTROAUTH_URL=" + daemonURL, "NO_COLOR=1", "FORCE_COLOR=0"}, argv...)
	if err := waitHTTP(be.proc, be.url+"/.backstage/health/v1/readiness", 90*time.Second); err != nil {
		t.Fatalf("Backstage backend did not get ready: %v\n%s", err, be.proc.tail())
	}
	t.Logf("Backstage backend ready at %s in %s", be.url, time.Since(start).Round(time.Millisecond))
	return be
}

func (b *backend) get(t *testing.T, path string, h http.Header) (int, []byte) {
	t.Helper()
	return b.getWith(t, &http.Client{Timeout: 10 * time.Second}, path, h)
}

func (b *backend) getWith(t *testing.T, c *http.Client, path string, h http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h != nil {
		req.Header = h.Clone()
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, b.proc.tail())
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, body
}

func bearer(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}

func decodeJWT(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", tok)
	}
	for i, v := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		mustJSON(t, b, v)
	}
	return header, claims
}

func clone(m map[string]any) map[string]any { return maps.Clone(m) }

// sign makes a compact ES256 JWS of claims with the Backstage user token type.
func sign(t *testing.T, key *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	tok, err := signJWT(jose.ES256, key, kid, "vnd.backstage.user", claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tamper makes the token claim someone else, keeping the signature.
func tamper(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	_, claims := decodeJWT(t, tok)
	claims["sub"] = "user:default/mallory"
	b, _ := json.Marshal(claims)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// tamperSignature flips bits in the middle of the signature.
func tamperSignature(tok string) string {
	parts := strings.Split(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[len(sig)/2] ^= 0xff
	parts[2] = base64.RawURLEncoding.EncodeToString(sig)
	return strings.Join(parts, ".")
}

func unsigned(header, claims map[string]any) string {
	h := clone(header)
	h["alg"] = "none"
	hb, _ := json.Marshal(h)
	cb, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb) + "."
}

// daemonKey finds the private key with this kid in the daemon's data
// directory: a JSON file named <kid>.json holding the JWK under "key".
func daemonKey(t *testing.T, dataDir, kid string) *ecdsa.PrivateKey {
	t.Helper()
	var found *ecdsa.PrivateKey
	err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != kid+".json" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var f struct {
			Key jose.JSONWebKey `json:"key"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		k, ok := f.Key.Key.(*ecdsa.PrivateKey)
		if !ok {
			return fmt.Errorf("%s: key is %T, not an EC private key", path, f.Key.Key)
		}
		found = k
		return fs.SkipAll
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == nil {
		t.Fatalf("no key file %s.json under the daemon's storage.path %s", kid, dataDir)
	}
	return found
}
