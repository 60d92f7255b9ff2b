package upstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/spectroauth/spectroauth/host/devprovider"
)

const (
	testClientID     = "backstage"
	testClientSecret = "client-secret-value-7f3a"
	callbackPath     = "/api/auth/spectrocloud/handler/frame"
)

var sharedKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func ptr[T any](v T) *T { return &v }

// hookFunc rewrites a JSON response of the OP before the relying party sees
// it. r is the request (its form is parsed).
type hookFunc func(r *http.Request, body map[string]any)

// harness runs the real zitadel OP (host/devprovider) on a loopback
// httptest server, with hooks to tamper with its responses.
type harness struct {
	t        testing.TB
	srv      *httptest.Server
	op       *devprovider.Provider
	base     string
	issuer   string
	redirect string

	mu    sync.Mutex
	hooks map[string]hookFunc // by path below the issuer
}

type harnessOpts struct {
	tls    bool
	prefix string
	op     func(*devprovider.Config)
}

func newHarness(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	scheme := "http"
	if o.tls {
		scheme = "https"
	}
	h := &harness{t: t, srv: srv, hooks: map[string]hookFunc{}}
	h.base = scheme + "://" + srv.Listener.Addr().String()
	h.issuer = h.base + o.prefix
	h.redirect = h.base + callbackPath
	cfg := devprovider.Config{
		Issuer: h.issuer,
		Clients: []devprovider.Client{
			{ID: testClientID, Secret: testClientSecret, RedirectURIs: []string{h.redirect}},
			{ID: "poster", Secret: "poster-secret", RedirectURIs: []string{h.redirect}, AuthMethod: devprovider.AuthMethodPost},
		},
		Users: []devprovider.User{{
			ID: "u-alice", Username: "alice", Email: "alice@example.com", EmailVerified: ptr(true),
			GivenName: "Alice", FamilyName: "Liddell", Name: "Alice Liddell", Picture: "https://example.com/a.png",
			Groups: []string{"dev", "ops"}, ExtraClaims: map[string]any{"tenant": "t-1"},
		}, {
			ID: "u-bob", Username: "bob", Email: "bob@example.com", EmailVerified: ptr(false), GivenName: "Bob",
		}},
		AllowInsecure: !o.tls,
		AutoApprove:   "alice",
		Key:           sharedKey(),
	}
	if o.op != nil {
		o.op(&cfg)
	}
	op, err := devprovider.New(cfg)
	if err != nil {
		t.Fatalf("devprovider.New: %v", err)
	}
	h.op = op
	mux := http.NewServeMux()
	pattern := "/"
	if o.prefix != "" {
		pattern = o.prefix + "/"
	}
	mux.Handle(pattern, h.withHooks(op, o.prefix))
	mux.HandleFunc(callbackPath, func(http.ResponseWriter, *http.Request) {
		t.Errorf("the redirect_uri must not be dialled by the test browser")
	})
	srv.Config.Handler = mux
	if o.tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return h
}

// hook installs fn for responses of path (relative to the issuer).
func (h *harness) hook(path string, fn hookFunc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if fn == nil {
		delete(h.hooks, path)
		return
	}
	h.hooks[path] = fn
}

func (h *harness) withHooks(next http.Handler, prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		fn := h.hooks[strings.TrimPrefix(r.URL.Path, prefix)]
		h.mu.Unlock()
		if fn == nil {
			next.ServeHTTP(w, r)
			return
		}
		_ = r.ParseForm()
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var body map[string]any
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &body) != nil {
			copyResponse(w, rec, rec.Body.Bytes())
			return
		}
		fn(r, body)
		out, _ := json.Marshal(body)
		copyResponse(w, rec, out)
	})
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder, body []byte) {
	for k, v := range rec.Header() {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

func (h *harness) config() Config {
	return Config{
		Issuer:              h.issuer,
		ClientID:            testClientID,
		ClientSecret:        testClientSecret,
		AllowInsecureIssuer: strings.HasPrefix(h.issuer, "http:"),
		HTTPClient:          h.srv.Client(),
	}
}

func (h *harness) provider(mutate ...func(*Config)) *Provider {
	h.t.Helper()
	cfg := h.config()
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := New(context.Background(), cfg)
	if err != nil {
		h.t.Fatalf("upstream.New: %v", err)
	}
	return p
}

// authRequest makes fresh per-sign-in values.
func (h *harness) authRequest(scopes ...string) AuthRequest {
	return AuthRequest{
		RedirectURL:  h.redirect,
		State:        "state-" + oauth2.GenerateVerifier()[:8],
		Nonce:        "nonce-" + oauth2.GenerateVerifier(),
		PKCEVerifier: oauth2.GenerateVerifier(),
		Scopes:       scopes,
	}
}

// authorize drives the front channel with a cookie-jar browser that stops
// at the redirect_uri, and returns the authorization response parameters.
func (h *harness) authorize(authURL string) url.Values {
	h.t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{
		Jar:       jar,
		Transport: h.srv.Client().Transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), h.redirect) {
				return http.ErrUseLastResponse
			}
			if len(via) > 10 {
				return errors.New("too many redirects")
			}
			return nil
		},
	}
	resp, err := browser.Get(authURL)
	if err != nil {
		h.t.Fatalf("authorize: %v", err)
	}
	defer resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, h.redirect) {
		b, _ := io.ReadAll(resp.Body)
		h.t.Fatalf("authorize ended at %d %q: %s", resp.StatusCode, loc, b)
	}
	u, _ := url.Parse(loc)
	return u.Query()
}

// code runs the front channel for ar and returns the code after the state
// and RFC 9207 checks.
func (h *harness) code(p *Provider, ar AuthRequest) string {
	h.t.Helper()
	q := h.authorize(p.AuthCodeURL(ar))
	if q.Get("state") != ar.State {
		h.t.Fatalf("state = %q, want %q", q.Get("state"), ar.State)
	}
	if err := p.CheckAuthorizationResponseIssuer(q.Get("iss")); err != nil {
		h.t.Fatalf("iss check: %v", err)
	}
	if q.Get("code") == "" {
		h.t.Fatalf("no code: %v", q)
	}
	return q.Get("code")
}

// signIn runs a whole sign-in and fails the test on error.
func (h *harness) signIn(p *Provider, scopes ...string) *Tokens {
	h.t.Helper()
	t, err := h.trySignIn(p, scopes...)
	if err != nil {
		h.t.Fatalf("sign-in: %v", err)
	}
	return t
}

func (h *harness) trySignIn(p *Provider, scopes ...string) (*Tokens, error) {
	h.t.Helper()
	ar := h.authRequest(scopes...)
	return p.Exchange(context.Background(), h.code(p, ar), ar.RedirectURL, ar.PKCEVerifier, ar.Nonce)
}

// claimsOf decodes a JWT's payload without verifying it.
func claimsOf(t testing.TB, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// resign returns the id_token of body with its claims changed by edit,
// signed with the OP's own key (so only the edited claims are wrong).
func (h *harness) resign(body map[string]any, edit func(c map[string]any)) {
	raw, _ := body["id_token"].(string)
	c := claimsOf(h.t, raw)
	edit(c)
	signed, err := h.op.SignClaims(c)
	if err != nil {
		h.t.Fatalf("re-signing: %v", err)
	}
	body["id_token"] = signed
}

// unsignedJWT builds a compact JWS with the given header and claims and the
// given signature bytes (for alg none / forged tokens).
func unsignedJWT(header, claims map[string]any, sig []byte) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(header) + "." + enc(claims) + "." + base64.RawURLEncoding.EncodeToString(sig)
}
