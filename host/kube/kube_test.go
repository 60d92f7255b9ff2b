package kube_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.yaml.in/yaml/v3"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/kube"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/upstream"
	"github.com/spectroauth/spectroauth/sdk"
)

const (
	idToken    = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLWFsaWNl"
	paletteTok = "palette-session-token-never-for-kubernetes"
)

// Tokens the fake session functions know, shaped as JWS with the real typ
// headers (the broker picks the verifier by typ; the fakes verify nothing).
var (
	aliceToken     = fakeJWT(identity.TypeCLIAccess, "alice")
	endedToken     = fakeJWT(identity.TypeCLIAccess, "ended")
	brokenToken    = fakeJWT(identity.TypeCLIAccess, "broken")
	forgedToken    = fakeJWT(identity.TypeCLIAccess, "forged")
	aliceUserToken = fakeJWT(identity.TypeUser, "alice")
	aliceLimited   = fakeJWT(identity.TypeLimitedUser, "alice")
)

func fakeJWT(typ, name string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"typ":"`+typ+`","alg":"ES256","kid":"k"}`)) + "." + enc([]byte(`{"sub":"`+name+`"}`)) + "." + enc([]byte("signature-of-"+name))
}

// sessions stands in for (*server.Server).UserSession and CLISession.
func sessions(_ context.Context, token string) (*server.UserSession, error) {
	switch token {
	case aliceToken, aliceUserToken:
		return &server.UserSession{
			Env:     "development",
			Session: &session.Session{UserEntityRef: "user:default/alice"},
			Tokens: &upstream.Tokens{
				IDToken:             idToken,
				PaletteSessionToken: paletteTok,
				IDTokenExpiry:       time.Now().Add(time.Hour),
				Claims:              map[string]any{"sub": "alice-sub", "email": "alice@example.com"},
				Profile:             upstream.Profile{Subject: "alice-sub", Email: "alice@example.com"},
			},
		}, nil
	case endedToken:
		return nil, fmt.Errorf("%w: signed out", server.ErrSessionEnded)
	case brokenToken:
		return nil, errors.New("reading the session: disk on fire")
	}
	return nil, fmt.Errorf("%w: bad signature", server.ErrUnauthenticated)
}

// strategy is a scripted cluster strategy.
type strategy struct {
	mu   sync.Mutex
	reqs []sdk.CredentialRequest
	fn   func(ctx context.Context, req sdk.CredentialRequest) (sdk.Credential, error)
}

func (s *strategy) Credential(ctx context.Context, req sdk.CredentialRequest) (sdk.Credential, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.mu.Unlock()
	return s.fn(ctx, req)
}

func handsIDToken() *strategy {
	return &strategy{fn: func(_ context.Context, req sdk.CredentialRequest) (sdk.Credential, error) {
		return sdk.Credential{Token: req.Session.IDToken, ExpiresAt: req.Session.IDTokenExpiresAt}, nil
	}}
}

func failing(err error) *strategy {
	return &strategy{fn: func(context.Context, sdk.CredentialRequest) (sdk.Credential, error) { return sdk.Credential{}, err }}
}

// source is a scripted cluster source.
type source struct {
	mu       sync.Mutex
	clusters []sdk.Cluster
	err      error
	calls    int
}

func (s *source) ListClusters(context.Context, sdk.ListClustersRequest) ([]sdk.Cluster, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return slices.Clone(s.clusters), s.err
}

func (s *source) set(clusters []sdk.Cluster, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusters, s.err = clusters, err
}

func testCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func bind(name string, s kube.Strategy) *kube.StrategyBinding {
	return &kube.StrategyBinding{Plugin: "test", Strategy: name, Options: map[string]any{"clientId": "k8s"}, Impl: s}
}

// fixture is a broker behind an HTTP test server, auditing to a buffer.
type fixture struct {
	broker *kube.Broker
	srv    *httptest.Server
	audit  *syncBuffer
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

func newFixture(t *testing.T, cfg kube.Config) *fixture {
	t.Helper()
	f := &fixture{audit: &syncBuffer{}, logs: &syncBuffer{}}
	cfg.Sessions = sessions
	cfg.CLISessions = sessions
	cfg.Audit = kube.NewAuditLog(f.audit)
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: f.logs, Level: hclog.Debug})
	b, err := kube.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	f.broker = b
	f.srv = httptest.NewServer(b)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) do(t *testing.T, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+kube.RoutePrefix+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: not JSON (%d): %s", method, path, res.StatusCode, raw)
	}
	return res.StatusCode, m
}

// auditLines decodes the audit log.
func (f *fixture) auditLines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(f.audit.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line is not JSON: %v: %s", err, line)
		}
		out = append(out, m)
	}
	return out
}

func cluster(t *testing.T, name string) sdk.Cluster {
	return sdk.Cluster{Name: name, Server: "https://" + name + ".k8s.example.com:6443", CAData: testCA(t)}
}

// The broker's routes sit under the auth provider's own path, which
// kube spells out rather than importing Backstage's routes for it.
func TestRoutePrefixIsTheProvidersPath(t *testing.T) {
	if want := "/api/auth/" + server.ProviderID + "/kubernetes/"; kube.RoutePrefix != want {
		t.Fatalf("kube.RoutePrefix = %q, want %q", kube.RoutePrefix, want)
	}
}

func TestCredentialGrantAndAudit(t *testing.T) {
	s := handsIDToken()
	f := newFixture(t, kube.Config{Clusters: []kube.Cluster{{Cluster: cluster(t, "prod"), Strategy: bind("oidc", s)}}})
	status, body := f.do(t, http.MethodPost, "credential", aliceToken, `{"cluster":"prod"}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	if body["token"] != idToken {
		t.Errorf("token = %v, want the ID token", body["token"])
	}
	exp, err := time.Parse(time.RFC3339, body["expiresAt"].(string))
	if err != nil || time.Until(exp) < 50*time.Minute {
		t.Errorf("expiresAt = %v (%v)", body["expiresAt"], err)
	}
	if len(s.reqs) != 1 {
		t.Fatalf("strategy called %d times", len(s.reqs))
	}
	req := s.reqs[0]
	if req.Strategy != "oidc" || req.Options["clientId"] != "k8s" || req.Cluster.Name != "prod" ||
		req.Session.UserEntityRef != "user:default/alice" || req.Session.Subject != "alice-sub" || req.Session.IDToken != idToken {
		t.Errorf("strategy request = %+v", req)
	}

	lines := f.auditLines(t)
	if len(lines) != 1 {
		t.Fatalf("%d audit lines, want 1: %s", len(lines), f.audit.String())
	}
	want := map[string]any{"event": "kubernetes.credential", "outcome": "granted", "user": "user:default/alice",
		"sub": "alice-sub", "env": "development", "cluster": "prod", "strategy": "test/oidc"}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("audit %s = %v, want %v", k, lines[0][k], v)
		}
	}
	if lines[0]["expiresAt"] != body["expiresAt"] || lines[0]["time"] == nil || lines[0]["remote"] == nil {
		t.Errorf("audit line lacks time, remote or expiry: %v", lines[0])
	}
	for _, secret := range []string{idToken, aliceToken, paletteTok, "c2lnbmF0dXJl"} {
		if strings.Contains(f.audit.String(), secret) || strings.Contains(f.logs.String(), secret) {
			t.Errorf("a credential reached the audit log or the daemon log")
		}
	}
}

func TestCredentialRefusals(t *testing.T) {
	block := &strategy{fn: func(ctx context.Context, _ sdk.CredentialRequest) (sdk.Credential, error) {
		<-ctx.Done()
		return sdk.Credential{}, ctx.Err()
	}}
	f := newFixture(t, kube.Config{
		CredentialTimeout: 100 * time.Millisecond,
		Clusters: []kube.Cluster{
			{Cluster: cluster(t, "ok"), Strategy: bind("oidc", handsIDToken())},
			{Cluster: cluster(t, "nostrategy")},
			{Cluster: cluster(t, "notfound"), Strategy: bind("exchange", failing(fmt.Errorf("no role for user:default/alice: %w", sdk.ErrNotFound)))},
			{Cluster: cluster(t, "audience"), Strategy: bind("oidc", failing(sdk.InvalidInputf("Session.IDToken", `aud ["backstage"] does not hold the cluster's client id "k8s"`)))},
			{Cluster: cluster(t, "badoptions"), Strategy: bind("oidc", failing(sdk.ConfigErrorf("clientId", "is required")))},
			{Cluster: cluster(t, "down"), Strategy: bind("exchange", failing(errors.New("dial tcp 10.0.0.1:443: connection refused")))},
			{Cluster: cluster(t, "slow"), Strategy: bind("exchange", block)},
			{Cluster: cluster(t, "invalid"), Strategy: bind("exchange", failing(nil))},
		},
	})
	for _, tc := range []struct {
		name, token, body string
		status            int
		errName, reason   string
		message           string
	}{
		{"no token", "", `{"cluster":"ok"}`, 401, "AuthenticationError", kube.ReasonUnauthenticated, "sign in again"},
		{"invalid token", forgedToken, `{"cluster":"ok"}`, 401, "AuthenticationError", kube.ReasonUnauthenticated, "sign in again"},
		{"backstage user token", aliceUserToken, `{"cluster":"ok"}`, 401, "AuthenticationError", kube.ReasonWrongToken, "spectroauthd kube-credential"},
		{"backstage limited token", aliceLimited, `{"cluster":"ok"}`, 401, "AuthenticationError", kube.ReasonWrongToken, "does not buy a cluster credential"},
		{"opaque token", "some-opaque-token", `{"cluster":"ok"}`, 401, "AuthenticationError", kube.ReasonUnauthenticated, "command-line access token"},
		{"ended session", endedToken, `{"cluster":"ok"}`, 401, "AuthenticationError", kube.ReasonSessionEnded, "session has ended"},
		{"unreadable session", brokenToken, `{"cluster":"ok"}`, 503, "ServiceUnavailableError", kube.ReasonSessionUnavailable, "try again"},
		{"not JSON", aliceToken, `cluster=ok`, 400, "InputError", kube.ReasonBadRequest, `{"cluster": "<name>"}`},
		{"no cluster", aliceToken, `{}`, 400, "InputError", kube.ReasonBadRequest, `{"cluster": "<name>"}`},
		{"unknown cluster", aliceToken, `{"cluster":"nope"}`, 404, "NotFoundError", kube.ReasonUnknownCluster, "Unknown cluster 'nope'"},
		{"no strategy", aliceToken, `{"cluster":"nostrategy"}`, 404, "NotFoundError", kube.ReasonNoStrategy, "no credential strategy"},
		{"strategy has none", aliceToken, `{"cluster":"notfound"}`, 403, "NotAllowedError", kube.ReasonRefused, "no role for user:default/alice"},
		{"token the cluster would reject", aliceToken, `{"cluster":"audience"}`, 403, "NotAllowedError", kube.ReasonRefused, "client id"},
		{"misconfigured", aliceToken, `{"cluster":"badoptions"}`, 502, "Error", kube.ReasonStrategyMisconfigured, "misconfigured"},
		{"plugin failure", aliceToken, `{"cluster":"down"}`, 502, "Error", kube.ReasonStrategyFailed, "daemon's log"},
		{"timeout", aliceToken, `{"cluster":"slow"}`, 502, "Error", kube.ReasonStrategyFailed, "timed out"},
		{"invalid credential", aliceToken, `{"cluster":"invalid"}`, 502, "Error", kube.ReasonStrategyFailed, "failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.auditLines(t))
			status, body := f.do(t, http.MethodPost, "credential", tc.token, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %v", status, tc.status, body)
			}
			e, _ := body["error"].(map[string]any)
			if e["name"] != tc.errName || !strings.Contains(fmt.Sprint(e["message"]), tc.message) {
				t.Errorf("error = %v, want %s containing %q", e, tc.errName, tc.message)
			}
			if body["response"].(map[string]any)["statusCode"] != float64(tc.status) || body["request"].(map[string]any)["method"] != "POST" {
				t.Errorf("not Backstage's error body: %v", body)
			}
			if strings.Contains(fmt.Sprint(body), "10.0.0.1") {
				t.Errorf("a plugin's internal failure reached the caller: %v", body)
			}
			lines := f.auditLines(t)
			if len(lines) != before+1 {
				t.Fatalf("refusal wrote %d audit lines, want 1", len(lines)-before)
			}
			l := lines[len(lines)-1]
			if l["outcome"] != "refused" || l["reason"] != tc.reason || l["message"] == "" {
				t.Errorf("audit line = %v, want refused/%s", l, tc.reason)
			}
			if tc.token == aliceToken && (l["user"] != "user:default/alice" || l["sub"] != "alice-sub") {
				t.Errorf("audit line does not name the user: %v", l)
			}
			if _, ok := l["expiresAt"]; ok {
				t.Errorf("a refusal has an expiry: %v", l)
			}
		})
	}
	for _, secret := range []string{idToken, aliceToken, paletteTok} {
		if strings.Contains(f.audit.String(), secret) {
			t.Errorf("a credential reached the audit log")
		}
	}
}

func TestClustersRoute(t *testing.T) {
	ca := testCA(t)
	f := newFixture(t, kube.Config{Clusters: []kube.Cluster{
		{Cluster: sdk.Cluster{Name: "b", Server: "https://b.example.com", CAData: ca, Title: "B", Labels: map[string]string{"env": "prod"}}, Strategy: bind("oidc", handsIDToken())},
		{Cluster: sdk.Cluster{Name: "a", Server: "https://a.example.com"}, Strategy: bind("oidc", handsIDToken())},
		{Cluster: sdk.Cluster{Name: "catalog-only", Server: "https://c.example.com"}},
	}})
	if status, _ := f.do(t, http.MethodGet, "clusters", "", ""); status != http.StatusUnauthorized {
		t.Errorf("without a token: status %d", status)
	}
	// The list reveals no secret: Backstage's user token may read it too.
	if status, body := f.do(t, http.MethodGet, "clusters", aliceUserToken, ""); status != http.StatusOK {
		t.Errorf("with a Backstage user token: status %d: %v", status, body)
	}
	status, body := f.do(t, http.MethodGet, "clusters", aliceToken, "")
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	list := body["clusters"].([]any)
	if len(list) != 2 {
		t.Fatalf("clusters = %v, want a and b (catalog-only has no strategy)", list)
	}
	a, b := list[0].(map[string]any), list[1].(map[string]any)
	if a["name"] != "a" || b["name"] != "b" || b["title"] != "B" || b["strategy"] != "test/oidc" || b["origin"] != "static" {
		t.Errorf("clusters = %v", list)
	}
	if got, _ := base64.StdEncoding.DecodeString(b["caData"].(string)); !bytes.Equal(got, ca) {
		t.Errorf("caData is not the base64 of the PEM")
	}
	if status, body := f.do(t, http.MethodGet, "nope", aliceToken, ""); status != http.StatusNotFound || body["error"] == nil {
		t.Errorf("unknown route: %d %v", status, body)
	}
	if len(f.auditLines(t)) != 0 {
		t.Errorf("listing clusters wrote audit lines")
	}
}

func TestSourcesMerge(t *testing.T) {
	s1 := &source{clusters: []sdk.Cluster{
		{Name: "static-one", Server: "https://impostor.example.com"},
		{Name: "shared", Server: "https://s1.example.com"},
		{Name: "s1-only", Server: "https://s1-only.example.com", Strategy: "exchange"},
		{Name: "not valid!", Server: "https://x.example.com"},
	}}
	s2 := &source{clusters: []sdk.Cluster{
		{Name: "shared", Server: "https://s2.example.com"},
		{Name: "s2-only", Server: "https://s2-only.example.com"},
	}}
	oidc, exchange := handsIDToken(), handsIDToken()
	var hints []string
	var mu sync.Mutex
	f := newFixture(t, kube.Config{
		Clusters: []kube.Cluster{{Cluster: cluster(t, "static-one"), Strategy: bind("oidc", oidc)}},
		Sources: []kube.SourceConfig{
			{Name: "sources[0] (palette)", Impl: s1, Interval: time.Hour, Strategy: func(hint string) (*kube.StrategyBinding, error) {
				mu.Lock()
				hints = append(hints, hint)
				mu.Unlock()
				if hint == "exchange" {
					return bind("exchange", exchange), nil
				}
				return bind("oidc", oidc), nil
			}},
			{Name: "sources[1] (other)", Impl: s2, Interval: time.Hour},
		},
	})
	if err := f.broker.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]kube.ClusterInfo{}
	var names []string
	for _, c := range f.broker.Clusters() {
		got[c.Name] = c
		names = append(names, c.Name)
	}
	if want := []string{"s1-only", "s2-only", "shared", "static-one"}; !slices.Equal(names, want) {
		t.Fatalf("clusters = %v, want %v (sorted, invalid one skipped)", names, want)
	}
	if c := got["static-one"]; c.Origin != kube.OriginStatic || c.Server != "https://static-one.k8s.example.com:6443" {
		t.Errorf("static cluster lost to a source: %+v", c)
	}
	if c := got["shared"]; c.Origin != "sources[0] (palette)" || c.Server != "https://s1.example.com" || c.Strategy != "test/oidc" {
		t.Errorf("earlier source should win: %+v", c)
	}
	if c := got["s1-only"]; c.Strategy != "test/exchange" {
		t.Errorf("the source's strategy hint was not honoured: %+v", c)
	}
	if c := got["s2-only"]; c.Strategy != "" {
		t.Errorf("a source without a strategy gave one: %+v", c)
	}
	clashes := f.broker.Clashes()
	wantClashes := []kube.Clash{
		{Name: "static-one", Kept: "static", Dropped: "sources[0] (palette)"},
		{Name: "shared", Kept: "sources[0] (palette)", Dropped: "sources[1] (other)"},
	}
	if !slices.Equal(clashes, wantClashes) {
		t.Errorf("clashes = %+v, want %+v", clashes, wantClashes)
	}
	if logs := f.logs.String(); !strings.Contains(logs, "cluster name clash") || !strings.Contains(logs, "invalid cluster") {
		t.Errorf("clashes and invalid clusters are not reported in the log:\n%s", logs)
	}

	// A discovered cluster issues credentials through its strategy.
	if status, body := f.do(t, http.MethodPost, "credential", aliceToken, `{"cluster":"s1-only"}`); status != 200 || len(exchange.reqs) != 1 {
		t.Errorf("credential for a discovered cluster: %d %v", status, body)
	}

	// A failing source keeps its last good list; the other one moves on.
	s1.set(nil, errors.New("palette is down"))
	s2.set([]sdk.Cluster{{Name: "s2-new", Server: "https://s2-new.example.com"}}, nil)
	if err := f.broker.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "palette is down") {
		t.Errorf("Refresh = %v, want the source's error", err)
	}
	names = nil
	for _, c := range f.broker.Clusters() {
		names = append(names, c.Name)
	}
	if want := []string{"s1-only", "s2-new", "shared", "static-one"}; !slices.Equal(names, want) {
		t.Errorf("after a failure: clusters = %v, want %v", names, want)
	}
	if !strings.Contains(f.logs.String(), "keeping its last good list") {
		t.Errorf("the failure is not logged")
	}
	if c := f.broker.Clashes(); len(c) != 1 {
		t.Errorf("clashes after s2 dropped shared = %+v", c)
	}
}

func TestSourcesRefreshOnInterval(t *testing.T) {
	s := &source{clusters: []sdk.Cluster{{Name: "one", Server: "https://one.example.com"}}}
	f := newFixture(t, kube.Config{Sources: []kube.SourceConfig{{Name: "s", Impl: s, Interval: 20 * time.Millisecond}}})
	f.broker.Start(context.Background())
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		calls := s.calls
		s.mu.Unlock()
		if calls >= 3 && len(f.broker.Clusters()) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("source listed %d times in 5s", calls)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.broker.Close()
	s.mu.Lock()
	calls := s.calls
	s.mu.Unlock()
	time.Sleep(60 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls != calls {
		t.Errorf("the source is still listed after Close")
	}
}

// A reload lists every source before the swap (Refresh), then starts the
// loops: a source already listed waits for its interval instead of being
// listed twice at once (a Palette API call each).
func TestStartAfterRefreshListsOnce(t *testing.T) {
	listed := &source{clusters: []sdk.Cluster{{Name: "one", Server: "https://one.example.com"}}}
	failing := &source{err: errors.New("palette unreachable")}
	f := newFixture(t, kube.Config{Sources: []kube.SourceConfig{
		{Name: "listed", Impl: listed, Interval: time.Hour},
		{Name: "failing", Impl: failing, Interval: time.Hour},
	}})
	_ = f.broker.Refresh(context.Background())
	failing.set(nil, nil)
	f.broker.Start(context.Background())
	defer f.broker.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		failing.mu.Lock()
		calls := failing.calls
		failing.mu.Unlock()
		if calls == 2 {
			break // the source without a good list is listed again at once
		}
		if time.Now().After(deadline) {
			t.Fatalf("the source whose Refresh failed was listed %d times, want 2", calls)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	listed.mu.Lock()
	defer listed.mu.Unlock()
	if listed.calls != 1 {
		t.Errorf("the source Refresh listed was listed %d times, want 1 until its interval", listed.calls)
	}
}

func TestCatalog(t *testing.T) {
	ca := testCA(t)
	f := newFixture(t, kube.Config{
		CatalogOwner: "group:default/sre",
		Clusters: []kube.Cluster{
			{Cluster: sdk.Cluster{Name: "prod", Server: "https://prod.example.com:6443", CAData: ca, Title: "Production",
				Description: "the big one", Labels: map[string]string{"env": "prod", "bad label!": "x"}}, Strategy: bind("oidc", handsIDToken())},
			{Cluster: sdk.Cluster{Name: "my__cluster..with-a-really-long-name-that-does-not-fit-in-sixty-three-characters", Server: "https://long.example.com"}},
		},
	})
	get := func(token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+kube.RoutePrefix+"catalog-info.yaml", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if status, _ := get(""); status != http.StatusUnauthorized {
		t.Errorf("catalog without a token: %d", status)
	}
	if status, _ := get(aliceUserToken); status != http.StatusOK {
		t.Errorf("catalog with a Backstage user token: %d", status)
	}
	status, body := get(aliceToken)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	dec := yaml.NewDecoder(strings.NewReader(body))
	var entities []map[string]any
	for {
		var e map[string]any
		if err := dec.Decode(&e); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("not a YAML stream: %v\n%s", err, body)
		}
		entities = append(entities, e)
	}
	if len(entities) != 2 || strings.Count(body, "\n---\n") != 1 {
		t.Fatalf("%d entities, want 2 in one stream:\n%s", len(entities), body)
	}
	nameRE := regexp.MustCompile(`^[A-Za-z0-9]+([-_.][A-Za-z0-9]+)*$`)
	for _, e := range entities {
		md, spec := e["metadata"].(map[string]any), e["spec"].(map[string]any)
		name := md["name"].(string)
		if e["apiVersion"] != "backstage.io/v1alpha1" || e["kind"] != "Resource" || spec["type"] != "kubernetes-cluster" || spec["owner"] != "group:default/sre" {
			t.Errorf("entity %s: %v", name, e)
		}
		if len(name) > 63 || !nameRE.MatchString(name) {
			t.Errorf("entity name %q is not a valid Backstage name", name)
		}
		ann := md["annotations"].(map[string]any)
		if ann["kubernetes.io/auth-provider"] != "oidc" || ann["kubernetes.io/oidc-token-provider"] != "spectrocloud" ||
			!strings.HasPrefix(ann["kubernetes.io/api-server"].(string), "https://") {
			t.Errorf("entity %s annotations = %v", name, ann)
		}
	}
	prod := entities[1]
	if entities[0]["metadata"].(map[string]any)["name"] == "prod" {
		prod = entities[0]
	}
	md := prod["metadata"].(map[string]any)
	ann := md["annotations"].(map[string]any)
	if got, _ := base64.StdEncoding.DecodeString(fmt.Sprint(ann["kubernetes.io/api-server-certificate-authority"])); !bytes.Equal(got, ca) {
		t.Errorf("CA annotation is not the base64 PEM")
	}
	if md["title"] != "Production" || md["description"] != "the big one" || fmt.Sprint(md["labels"]) != "map[env:prod]" {
		t.Errorf("prod metadata = %v", md)
	}

	public := newFixture(t, kube.Config{CatalogPublic: true, Clusters: []kube.Cluster{{Cluster: sdk.Cluster{Name: "x", Server: "https://x.example.com"}}}})
	f = public
	if status, body := get(""); status != http.StatusOK || !strings.Contains(body, "name: x") {
		t.Errorf("public catalog: %d %s", status, body)
	}
}

func TestEntityName(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{"prod", "a.b_c-d", "a--b", "a-b", "-x", "x.", "UPPER", strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 65), "___"} {
		got := kube.EntityName(name)
		if len(got) > 63 || !regexp.MustCompile(`^[A-Za-z0-9]+([-_.][A-Za-z0-9]+)*$`).MatchString(got) {
			t.Errorf("EntityName(%q) = %q: not a valid entity name", name, got)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("EntityName(%q) = EntityName(%q) = %q", name, prev, got)
		}
		seen[got] = name
	}
	for _, same := range []string{"prod", "a.b_c-d", "a-b", strings.Repeat("a", 63)} {
		if kube.EntityName(same) != same {
			t.Errorf("a valid name %q was changed to %q", same, kube.EntityName(same))
		}
	}
}

func TestAuditFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(`{"earlier":"line"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := kube.OpenAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	if err := a.Record(kube.AuditEvent{Time: exp, Outcome: kube.OutcomeGranted, User: "user:default/alice", ExpiresAt: &exp}); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || lines[0] != `{"earlier":"line"}` {
		t.Fatalf("the log was not appended to: %q", b)
	}
	if !strings.Contains(lines[1], `"time":"2030-01-02T02:04:05Z"`) || !strings.Contains(lines[1], `"expiresAt":"2030-01-02T02:04:05Z"`) ||
		!strings.Contains(lines[1], `"event":"kubernetes.credential"`) {
		t.Errorf("audit line = %s", lines[1])
	}

	fresh := filepath.Join(t.TempDir(), "new.log")
	a, err = kube.OpenAuditLog(fresh)
	if err != nil {
		t.Fatal(err)
	}
	_ = a.Close()
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new audit log mode = %v (%v)", fi.Mode().Perm(), err)
	}
	if _, err := kube.OpenAuditLog(filepath.Join(t.TempDir(), "missing", "dir", "a.log")); err == nil || !strings.Contains(err.Error(), "opening the audit log") {
		t.Errorf("OpenAuditLog in a missing directory = %v", err)
	}
}

// The audit file follows logrotate: after the file is moved away (or
// deleted), the next line goes to a new file at the configured path.
func TestAuditFileFollowsRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	a, err := kube.OpenAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	record := func(user string) {
		t.Helper()
		if err := a.Record(kube.AuditEvent{Time: time.Now(), Outcome: kube.OutcomeGranted, User: user}); err != nil {
			t.Fatal(err)
		}
	}
	record("user:default/before")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	record("user:default/after-move")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	record("user:default/after-delete")
	for file, want := range map[string]string{path + ".1": "before", path: "after-delete"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], want) {
			t.Errorf("%s holds %q, want one line for %s", file, b, want)
		}
		if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", file, fi.Mode().Perm())
		}
	}
}

// failingWriter makes every audit write fail.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestGrantWithheldWhenAuditFails(t *testing.T) {
	b, err := kube.New(kube.Config{
		Sessions:    sessions,
		CLISessions: sessions,
		Audit:       kube.NewAuditLog(failingWriter{}),
		Clusters:    []kube.Cluster{{Cluster: cluster(t, "prod"), Strategy: bind("oidc", handsIDToken())}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+kube.RoutePrefix+"credential", strings.NewReader(`{"cluster":"prod"}`))
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusInternalServerError || strings.Contains(string(body), idToken) {
		t.Errorf("status %d, body %s: a grant that cannot be audited must be withheld", res.StatusCode, body)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	audit := kube.NewAuditLog(io.Discard)
	ok := sdk.Cluster{Name: "a", Server: "https://a.example.com"}
	for name, cfg := range map[string]kube.Config{
		"no sessions":       {Audit: audit},
		"no audit":          {Sessions: sessions},
		"invalid cluster":   {Sessions: sessions, Audit: audit, Clusters: []kube.Cluster{{Cluster: sdk.Cluster{Name: "a", Server: "http://a"}}}},
		"duplicate cluster": {Sessions: sessions, Audit: audit, Clusters: []kube.Cluster{{Cluster: ok}, {Cluster: ok}}},
		"unnamed source":    {Sessions: sessions, Audit: audit, Sources: []kube.SourceConfig{{Impl: &source{}, Interval: time.Minute}}},
		"zero interval":     {Sessions: sessions, Audit: audit, Sources: []kube.SourceConfig{{Name: "s", Impl: &source{}}}},
		"strategy w/o impl": {Sessions: sessions, Audit: audit, Clusters: []kube.Cluster{{Cluster: ok, Strategy: &kube.StrategyBinding{Plugin: "p", Strategy: "s"}}}},
	} {
		if _, err := kube.New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// TestCatalogLabelsAreValidBackstageLabels: every label in
// catalog-info.yaml passes Backstage's label rules
// (KubernetesValidatorFunctions): a key is an object name (at most 63
// characters) with an optional DNS subdomain prefix, each of its labels at
// most 63 characters; others are left out, so the entity is not refused.
func TestCatalogLabelsAreValidBackstageLabels(t *testing.T) {
	long := strings.Repeat("a", 64)
	labels := map[string]string{
		"env":                         "prod",
		"example.com/team":            "sre",
		"example.com/" + long:         "x", // name part too long
		long + ".example.com/team":    "x", // DNS label of the prefix too long
		"Example.com/team":            "x", // upper case in the prefix
		"a/b/c":                       "x", // two slashes
		"/team":                       "x", // empty prefix
		"example.com/":                "x", // empty name
		"ok":                          long,
		strings.Repeat("b", 63):       "y",
		"sub.example.com/" + "team-a": "z",
	}
	f := newFixture(t, kube.Config{CatalogPublic: true, Clusters: []kube.Cluster{
		{Cluster: sdk.Cluster{Name: "prod", Server: "https://prod.example.com:6443", Labels: labels}},
	}})
	res, err := http.Get(f.srv.URL + kube.RoutePrefix + "catalog-info.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var e struct {
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
	}
	if err := yaml.NewDecoder(res.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"env": "prod", "example.com/team": "sre", strings.Repeat("b", 63): "y", "sub.example.com/team-a": "z"}
	if fmt.Sprint(e.Metadata.Labels) != fmt.Sprint(want) {
		t.Errorf("labels = %v, want %v", e.Metadata.Labels, want)
	}
}

// receiving is a strategy that says which tokens it is passed.
type receiving struct {
	*strategy
	tokens []sdk.Token
}

func (r receiving) Receives(t sdk.Token) bool { return slices.Contains(r.tokens, t) }

// The Palette session token lives 15 minutes: a strategy that receives it
// gets it renewed first; one that does not costs no renewal; a renewal
// that cannot be made is a 502, not a stale token handed on.
func TestPaletteTokenRenewedForStrategiesThatReceiveIt(t *testing.T) {
	tests := []struct {
		name       string
		tokens     []sdk.Token
		renewErr   error
		wantStatus int
		wantRenews int
		wantToken  string
	}{
		{"receives the Palette token", []sdk.Token{sdk.TokenID, sdk.TokenPaletteSession}, nil, http.StatusOK, 1, "renewed-palette-token"},
		{"receives the ID token only", []sdk.Token{sdk.TokenID}, nil, http.StatusOK, 0, paletteTok},
		{"renewal unavailable", []sdk.Token{sdk.TokenPaletteSession}, errors.New("palette refresh: status 503"), http.StatusBadGateway, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := handsIDToken()
			renews := 0
			renew := func(_ context.Context, us *lifecycle.UserSession) (*lifecycle.UserSession, error) {
				renews++
				if tt.renewErr != nil {
					return nil, tt.renewErr
				}
				next := *us
				tokens := *us.Tokens
				tokens.PaletteSessionToken = "renewed-palette-token"
				next.Tokens = &tokens
				return &next, nil
			}
			b := bind("oidc", s)
			b.Impl = receiving{strategy: s, tokens: tt.tokens}
			f := newFixture(t, kube.Config{
				Clusters:          []kube.Cluster{{Cluster: cluster(t, "prod"), Strategy: b}},
				RenewPaletteToken: renew,
			})
			status, body := f.do(t, http.MethodPost, "credential", aliceToken, `{"cluster":"prod"}`)
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %v", status, tt.wantStatus, body)
			}
			if renews != tt.wantRenews {
				t.Errorf("renewals = %d, want %d", renews, tt.wantRenews)
			}
			if tt.wantToken == "" {
				if len(s.reqs) != 0 {
					t.Errorf("the strategy was called with a token that could not be renewed")
				}
				return
			}
			if len(s.reqs) != 1 || s.reqs[0].Session.PaletteSessionToken != tt.wantToken {
				t.Errorf("strategy got Palette token %q, want %q", s.reqs[0].Session.PaletteSessionToken, tt.wantToken)
			}
		})
	}
}
