package palette_test

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
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/plugins/palette-clusters/palette"
	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/plugintest"
)

const apiKey = "palette-api-key-for-tests"

// fakeCluster is a cluster of the fake tenant.
type fakeCluster struct {
	uid, name, scope, project string
	state                     string
	// kubeconfig behaviour: "" normal, "slow" hangs, "broken" 500,
	// "garbage" not YAML.
	mode string
}

// paletteAPI is a Palette API server written from the documented shapes:
// GET /v1/dashboard/spectroclusters/meta (paginated with limit and continue,
// or a bare array), GET /v1/projects/{uid}, GET
// /v1/spectroclusters/{uid}/assets/kubeconfig?frp=, ApiKey and ProjectUid
// headers, Palette's error body.
type paletteAPI struct {
	t        *testing.T
	srv      *httptest.Server
	ca       []byte
	clusters []fakeCluster
	projects map[string]string // uid -> name
	// bareArray answers the list as a bare array (no pagination).
	bareArray bool
	// offsetPaging paginates with listmeta offset/count instead of continue.
	offsetPaging bool
	// failList makes the list answer 500.
	failList bool

	mu          sync.Mutex
	listCalls   int
	frp         []string
	projectHdrs map[string]string // cluster uid -> ProjectUid header seen
}

func newPaletteAPI(t *testing.T) *paletteAPI {
	p := &paletteAPI{
		t:  t,
		ca: testCA(t),
		projects: map[string]string{
			"p-platform": "platform", "p-payments": "payments", "p-sandbox": "sandbox", "p-slow": "slowpoke",
		},
		clusters: []fakeCluster{
			{uid: "c1aaaaaaaaaa", name: "platform-prod", scope: "project", project: "p-platform"},
			{uid: "c2bbbbbbbbbb", name: "platform-dev", scope: "project", project: "p-platform"},
			{uid: "c3cccccccccc", name: "payments-prod", scope: "project", project: "p-payments"},
			{uid: "c4dddddddddd", name: "sandbox-1", scope: "project", project: "p-sandbox"},
			{uid: "c5eeeeeeeeee", name: "shared-services", scope: "tenant"},
			{uid: "c6ffffffffff", name: "slow-cluster", scope: "project", project: "p-slow", mode: "slow"},
			{uid: "c7gggggggggg", name: "broken-cluster", scope: "project", project: "p-platform", mode: "broken"},
			{uid: "c8hhhhhhhhhh", name: "dup", scope: "project", project: "p-platform"},
			{uid: "c9iiiiiiiiii", name: "dup", scope: "project", project: "p-payments"},
			{uid: "c10jjjjjjjjj", name: "going-away", scope: "project", project: "p-platform", state: "Deleting"},
		},
		projectHdrs: map[string]string{},
	}
	p.srv = httptest.NewTLSServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func paletteError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg, "ref": "ref-1", "status": status})
}

func (p *paletteAPI) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("ApiKey") != apiKey {
		paletteError(w, http.StatusUnauthorized, "Unauthorized", "invalid api key")
		return
	}
	if r.Header.Get("Authorization") != "" {
		paletteError(w, http.StatusBadRequest, "BadRequest", "the source must use the API key, not a user's session")
		return
	}
	path := r.URL.Path
	switch {
	case path == "/v1/dashboard/spectroclusters/meta":
		p.list(w, r)
	case strings.HasPrefix(path, "/v1/projects/"):
		uid := strings.TrimPrefix(path, "/v1/projects/")
		name, ok := p.projects[uid]
		if !ok {
			paletteError(w, http.StatusNotFound, "ProjectNotFound", "no project "+uid)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"metadata": map[string]any{"uid": uid, "name": name}, "spec": map[string]any{}})
	case strings.HasPrefix(path, "/v1/spectroclusters/") && strings.HasSuffix(path, "/assets/kubeconfig"):
		uid := strings.TrimSuffix(strings.TrimPrefix(path, "/v1/spectroclusters/"), "/assets/kubeconfig")
		p.kubeconfig(w, r, uid)
	default:
		paletteError(w, http.StatusNotFound, "NotFound", "no route "+path)
	}
}

func (p *paletteAPI) item(c fakeCluster) map[string]any {
	ann := map[string]any{"scope": c.scope}
	if c.project != "" {
		ann["projectUid"] = c.project
	}
	item := map[string]any{
		"metadata":    map[string]any{"uid": c.uid, "name": c.name, "annotations": ann},
		"specSummary": map[string]any{"cloudType": "aws"},
	}
	if c.state != "" {
		item["status"] = map[string]any{"state": c.state}
	}
	return item
}

func (p *paletteAPI) list(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.listCalls++
	p.mu.Unlock()
	if p.failList {
		paletteError(w, http.StatusInternalServerError, "InternalError", "database unavailable")
		return
	}
	if p.bareArray {
		items := []map[string]any{}
		for _, c := range p.clusters {
			items = append(items, p.item(c))
		}
		_ = json.NewEncoder(w).Encode(items)
		return
	}
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit < 1 {
		paletteError(w, http.StatusBadRequest, "BadRequest", "limit is required")
		return
	}
	start := 0
	if c := r.URL.Query().Get("continue"); c != "" {
		if start, err = strconv.Atoi(strings.TrimPrefix(c, "tok-")); err != nil {
			paletteError(w, http.StatusBadRequest, "BadRequest", "bad continue token")
			return
		}
	} else if o := r.URL.Query().Get("offset"); o != "" {
		start, _ = strconv.Atoi(o)
	}
	end := min(start+limit, len(p.clusters))
	items := []map[string]any{}
	for _, c := range p.clusters[start:end] {
		items = append(items, p.item(c))
	}
	meta := map[string]any{"count": len(p.clusters), "limit": limit, "offset": start}
	if end < len(p.clusters) && !p.offsetPaging {
		meta["continue"] = "tok-" + strconv.Itoa(end)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"items": items, "listmeta": meta})
}

func (p *paletteAPI) kubeconfig(w http.ResponseWriter, r *http.Request, uid string) {
	i := slices.IndexFunc(p.clusters, func(c fakeCluster) bool { return c.uid == uid })
	if i < 0 {
		paletteError(w, http.StatusNotFound, "ClusterNotFound", "no cluster "+uid)
		return
	}
	c := p.clusters[i]
	p.mu.Lock()
	p.frp = append(p.frp, r.URL.Query().Get("frp"))
	p.projectHdrs[uid] = r.Header.Get("ProjectUid")
	p.mu.Unlock()
	if c.scope == "project" && r.Header.Get("ProjectUid") != c.project {
		paletteError(w, http.StatusNotFound, "ClusterNotFound", "cluster not in this project")
		return
	}
	switch c.mode {
	case "slow":
		<-r.Context().Done()
		// Hang up without an answer: returning would send an empty 200,
		// which can reach the client before its own deadline fires.
		panic(http.ErrAbortHandler)
	case "broken":
		paletteError(w, http.StatusInternalServerError, "InternalError", "kubeconfig not ready")
		return
	}
	host := c.name + ".clusters.example.com"
	if r.URL.Query().Get("frp") == "true" {
		host = "proxy.spectrocloud.example/" + c.uid
	}
	fmt.Fprintf(w, `apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster:
    server: https://%[2]s:6443/
    certificate-authority-data: %[3]s
contexts:
- name: %[1]s-oidc@%[1]s
  context:
    cluster: %[1]s
    user: %[1]s-oidc
current-context: %[1]s-oidc@%[1]s
users:
- name: %[1]s-oidc
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: kubectl
      args:
      - oidc-login
      - get-token
      - --oidc-issuer-url=https://palette.example.com/v1/oidc/tenant/t1
      - --oidc-client-id=k8s-%[1]s
`, c.name, host, base64.StdEncoding.EncodeToString(p.ca))
}

func (p *paletteAPI) config() sdk.Options {
	return sdk.Options{
		"url":    p.srv.URL,
		"apiKey": apiKey,
		"caData": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})),
		// Three pages for ten clusters.
		"pageSize": 4,
	}
}

func testCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cluster CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func names(clusters []sdk.Cluster) []string {
	var out []string
	for _, c := range clusters {
		out = append(out, c.Name)
	}
	return out
}

func TestConformance(t *testing.T) {
	p := newPaletteAPI(t)
	with := func(k string, v any) sdk.Options {
		c := p.config()
		c[k] = v
		return c
	}
	without := func(k string) sdk.Options {
		c := p.config()
		delete(c, k)
		return c
	}
	optsReq := func(o sdk.Options) sdk.ValidateOptionsRequest {
		return sdk.ValidateOptionsRequest{Role: sdk.CapabilityClusterSource, Options: o}
	}
	t.Setenv(palette.APIKeyEnv, "")
	plugintest.Run(t, palette.Plugin(), plugintest.Suite{
		Config: p.config(),
		BadConfigs: []plugintest.BadConfig{
			{Config: without("url"), Key: "url"},
			{Name: "http url", Config: with("url", "http://palette.example.com"), Key: "url"},
			{Name: "no api key", Config: without("apiKey"), Key: "apiKey"},
			{Name: "api key with a newline", Config: with("apiKey", "abc\n"), Key: "apiKey"},
			{Config: with("pageSize", 0), Key: "pageSize"},
			{Config: with("requestTimeout", "5m"), Key: "requestTimeout"},
			{Config: with("caData", "nope"), Key: "caData"},
			{Config: with("includeProjects", []any{"x"}), Key: "includeProjects"},
		},
		BadOptions: []plugintest.BadOptions{
			{Request: optsReq(sdk.Options{"includeProjects": "platform"}), Key: "includeProjects"},
			{Request: optsReq(sdk.Options{"clusterTimeout": "0s"}), Key: "clusterTimeout"},
			{Request: optsReq(sdk.Options{"tenantClusters": "yes"}), Key: "tenantClusters"},
			{Request: optsReq(sdk.Options{"strategy": "not a name"}), Key: "strategy"},
			{Request: optsReq(sdk.Options{"projects": []any{"x"}}), Key: "projects"},
		},
		ListClusters: []plugintest.ListClustersCase{
			{Name: "platform and tenant", Request: sdk.ListClustersRequest{Options: sdk.Options{"includeProjects": []any{"platform"}, "clusterTimeout": "2s", "strategy": "oidc"}},
				Check: func(t testing.TB, got []sdk.Cluster) {
					if want := []string{"dup", "platform-dev", "platform-prod", "shared-services"}; !slices.Equal(names(got), want) {
						t.Errorf("clusters = %v, want %v", names(got), want)
					}
					for _, c := range got {
						if c.Strategy != "oidc" {
							t.Errorf("%s: strategy hint %q", c.Name, c.Strategy)
						}
					}
				}},
			{Name: "a cluster that never answers, with a long cluster timeout", Expect: plugintest.ExpectBlock,
				Request: sdk.ListClustersRequest{Options: sdk.Options{"includeProjects": []any{"slowpoke"}, "clusterTimeout": "1h", "tenantClusters": false}}},
		},
	})
}

func configured(t *testing.T, cfg sdk.Options) (*palette.Source, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s := &palette.Source{Logger: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}), Getenv: func(string) string { return "" }}
	if err := s.Configure(context.Background(), sdk.Config{Values: cfg}); err != nil {
		t.Fatal(err)
	}
	return s, logs
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

func list(t *testing.T, s *palette.Source, opts sdk.Options) []sdk.Cluster {
	t.Helper()
	got, err := s.ListClusters(context.Background(), sdk.ListClustersRequest{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	if err := sdk.ValidateClusters(got); err != nil {
		t.Fatalf("invalid list: %v", err)
	}
	return got
}

func TestListing(t *testing.T) {
	p := newPaletteAPI(t)
	s, logs := configured(t, p.config())
	start := time.Now()
	got := list(t, s, sdk.Options{"clusterTimeout": "300ms"})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the slow cluster held the listing up for %s", d)
	}
	want := []string{"dup-c8hhhhhh", "dup-c9iiiiii", "payments-prod", "platform-dev", "platform-prod", "sandbox-1", "shared-services"}
	if !slices.Equal(names(got), want) {
		t.Fatalf("clusters = %v, want %v (slow and broken left out, deleting skipped, duplicates qualified)", names(got), want)
	}
	if p.listCalls != 3 {
		t.Errorf("listed %d pages, want 3 (10 clusters, 4 a page)", p.listCalls)
	}
	for _, msg := range []string{"slow-cluster", "broken-cluster", "kubeconfig not ready"} {
		if !strings.Contains(logs.String(), msg) {
			t.Errorf("the log does not mention %q:\n%s", msg, logs.String())
		}
	}
	if strings.Contains(logs.String(), apiKey) {
		t.Errorf("the API key was logged")
	}
	byName := map[string]sdk.Cluster{}
	for _, c := range got {
		byName[c.Name] = c
	}
	prod := byName["platform-prod"]
	if prod.Server != "https://proxy.spectrocloud.example/c1aaaaaaaaaa:6443" {
		t.Errorf("server = %q, want the Spectro Proxy endpoint from the kubeconfig", prod.Server)
	}
	if !bytes.Equal(prod.CAData, p.ca) {
		t.Errorf("CA is not the kubeconfig's")
	}
	if prod.Annotations[palette.AnnotationClientID] != "k8s-platform-prod" || prod.Annotations[palette.AnnotationIssuer] != "https://palette.example.com/v1/oidc/tenant/t1" ||
		prod.Annotations[palette.AnnotationClusterUID] != "c1aaaaaaaaaa" || prod.Annotations[palette.AnnotationProjectUID] != "p-platform" {
		t.Errorf("annotations = %v", prod.Annotations)
	}
	if prod.Labels[palette.LabelScope] != "project" || prod.Labels[palette.LabelProject] != "" {
		t.Errorf("labels = %v (the project name is only looked up when a filter needs it)", prod.Labels)
	}
	if tenant := byName["shared-services"]; tenant.Labels[palette.LabelScope] != "tenant" || tenant.Annotations[palette.AnnotationProjectUID] != "" {
		t.Errorf("tenant cluster = %+v", tenant)
	}
	p.mu.Lock()
	for _, frp := range p.frp {
		if frp != "true" {
			t.Errorf("kubeconfig asked with frp=%s, want true by default", frp)
		}
	}
	if p.projectHdrs["c5eeeeeeeeee"] != "" || p.projectHdrs["c1aaaaaaaaaa"] != "p-platform" {
		t.Errorf("ProjectUid headers = %v", p.projectHdrs)
	}
	p.mu.Unlock()
}

func TestProjectFilters(t *testing.T) {
	p := newPaletteAPI(t)
	s, _ := configured(t, p.config())
	for _, tc := range []struct {
		name string
		opts sdk.Options
		want []string
	}{
		{"include by name", sdk.Options{"includeProjects": []any{"payments"}, "tenantClusters": false},
			[]string{"dup", "payments-prod"}},
		{"include by uid, case-insensitive names", sdk.Options{"includeProjects": []any{"p-sandbox", "PAYMENTS"}},
			[]string{"dup", "payments-prod", "sandbox-1", "shared-services"}},
		{"exclude wins", sdk.Options{"includeProjects": []any{"payments", "sandbox"}, "excludeProjects": []any{"sandbox"}, "tenantClusters": false},
			[]string{"dup", "payments-prod"}},
		{"exclude only", sdk.Options{"excludeProjects": []any{"platform", "slowpoke", "payments"}},
			[]string{"sandbox-1", "shared-services"}},
		{"no tenant clusters", sdk.Options{"includeProjects": []any{"sandbox"}, "tenantClusters": false},
			[]string{"sandbox-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := list(t, s, tc.opts)
			if !slices.Equal(names(got), tc.want) {
				t.Errorf("clusters = %v, want %v", names(got), tc.want)
			}
			for _, c := range got {
				if c.Labels[palette.LabelScope] == "project" && c.Labels[palette.LabelProject] == "" {
					t.Errorf("%s: no project label although the name was looked up", c.Name)
				}
			}
		})
	}
}

func TestPageShapes(t *testing.T) {
	for _, shape := range []string{"bare array", "offset paging"} {
		t.Run(shape, func(t *testing.T) {
			p := newPaletteAPI(t)
			p.bareArray, p.offsetPaging = shape == "bare array", shape == "offset paging"
			s, _ := configured(t, p.config())
			got := list(t, s, sdk.Options{"clusterTimeout": "200ms", "excludeProjects": []any{"slowpoke"}})
			if len(got) != 7 {
				t.Errorf("%d clusters, want 7: %v", len(got), names(got))
			}
			if want := map[string]int{"bare array": 1, "offset paging": 3}[shape]; p.listCalls != want {
				t.Errorf("%d list calls, want %d", p.listCalls, want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	p := newPaletteAPI(t)
	bad := p.config()
	bad["apiKey"] = "wrong"
	s, _ := configured(t, bad)
	_, err := s.ListClusters(context.Background(), sdk.ListClustersRequest{})
	var ce *sdk.ConfigError
	if !errors.As(err, &ce) || ce.Key != "apiKey" || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong API key: %v, want a ConfigError on apiKey that does not quote it", err)
	}

	p.failList = true
	s, _ = configured(t, p.config())
	if _, err := s.ListClusters(context.Background(), sdk.ListClustersRequest{}); err == nil || !strings.Contains(err.Error(), "database unavailable") {
		t.Errorf("failing list: %v", err)
	}

	noCA := p.config()
	delete(noCA, "caData")
	s, _ = configured(t, noCA)
	if _, err := s.ListClusters(context.Background(), sdk.ListClustersRequest{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted Palette certificate: %v", err)
	}

	direct := p.config()
	direct["useSpectroProxy"] = false
	p.failList = false
	s, _ = configured(t, direct)
	got := list(t, s, sdk.Options{"includeProjects": []any{"payments"}, "tenantClusters": false})
	if len(got) == 0 || !strings.HasPrefix(got[0].Server, "https://dup.clusters.example.com") && !strings.HasPrefix(got[0].Server, "https://payments-prod.clusters.example.com") {
		t.Errorf("useSpectroProxy false: %v", got)
	}
}

func TestAPIKeyFromEnvironment(t *testing.T) {
	p := newPaletteAPI(t)
	cfg := p.config()
	delete(cfg, "apiKey")
	s := &palette.Source{Getenv: func(k string) string {
		if k == palette.APIKeyEnv {
			return apiKey
		}
		return ""
	}}
	if err := s.Configure(context.Background(), sdk.Config{Values: cfg}); err != nil {
		t.Fatal(err)
	}
	if got := list(t, s, sdk.Options{"includeProjects": []any{"sandbox"}, "tenantClusters": false}); len(got) != 1 {
		t.Errorf("clusters = %v", names(got))
	}
	c, _ := palette.ParseConfig(p.config(), nil)
	if out := fmt.Sprintf("%v %+v %#v", c, c, c); strings.Contains(out, apiKey) {
		t.Errorf("the API key is printed")
	}
}

// TestSameNameSameSecond: Palette's uids are object ids whose first eight
// characters are the creation time in seconds, so two clusters of one name
// created in the same second (in different projects) share that prefix;
// and a qualified name may be another cluster's own name. Names stay
// unique, and the listing stays valid.
func TestSameNameSameSecond(t *testing.T) {
	p := newPaletteAPI(t)
	p.clusters = []fakeCluster{
		{uid: "6650a1b2c3d4e5f600000001", name: "twin", scope: "project", project: "p-platform"},
		{uid: "6650a1b2c3d4e5f600000002", name: "twin", scope: "project", project: "p-payments"},
		{uid: "6650a1b3aaaaaaaaaaaaaaaa", name: "other", scope: "project", project: "p-platform"},
		{uid: "6650a1b3bbbbbbbbbbbbbbbb", name: "other", scope: "project", project: "p-payments"},
		{uid: "6650a1b4cccccccccccccccc", name: "other-6650a1b3", scope: "project", project: "p-sandbox"},
	}
	s, _ := configured(t, p.config())
	got := list(t, s, sdk.Options{})
	if len(got) != len(p.clusters) {
		t.Fatalf("clusters = %v, want %d", names(got), len(p.clusters))
	}
	byUID := map[string]string{}
	for _, c := range got {
		byUID[c.Annotations[palette.AnnotationClusterUID]] = c.Name
	}
	if n := byUID["6650a1b4cccccccccccccccc"]; n != "other-6650a1b3" {
		t.Errorf("a cluster whose name is unique was renamed to %q", n)
	}
}

// TestNoKubeconfigReadable: when no listed cluster's kubeconfig can be read
// (Palette's kubeconfig service is down), the listing fails, so that the
// daemon keeps its last good list, rather than reporting that the tenant
// has no clusters.
func TestNoKubeconfigReadable(t *testing.T) {
	p := newPaletteAPI(t)
	for i := range p.clusters {
		p.clusters[i].mode = "broken"
	}
	s, _ := configured(t, p.config())
	got, err := s.ListClusters(context.Background(), sdk.ListClustersRequest{Options: sdk.Options{"clusterTimeout": "1s"}})
	if err == nil || !strings.Contains(err.Error(), "kubeconfig not ready") {
		t.Errorf("ListClusters = %v, %v; want an error that says why", names(got), err)
	}
}
