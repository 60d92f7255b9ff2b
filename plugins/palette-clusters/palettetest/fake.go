// Package palettetest is a fake SpectroCloud Palette API for tests, written
// from SpectroCloud's published spec and checked against it: every request
// it receives and every answer it gives is validated (see Contract). It is
// imported by tests only.
package palettetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// APIKey is the key the fake accepts.
const APIKey = "palette-api-key-for-tests"

// Kubeconfig behaviours of a fake cluster.
const (
	KubeconfigNormal  = ""
	KubeconfigNoOIDC  = "no-oidc" // 404 ResourceNotFound: no OIDC configured
	KubeconfigSlow    = "slow"    // never answers
	KubeconfigBroken  = "broken"  // 500 every time
	KubeconfigGarbage = "garbage" // not a kubeconfig
	KubeconfigBase64  = "base64"  // the kubeconfig base64-encoded
)

// Cluster is a cluster of the fake tenant.
type Cluster struct {
	UID, Name string
	// Scope is the scope annotation: project, tenant or system.
	Scope string
	// Project is the project uid (project scope).
	Project string
	// AnnotateProject also sets the undocumented projectUid annotation.
	AnnotateProject bool
	// NoAnnotations leaves metadata.annotations out (ExtraNoAnnotations).
	NoAnnotations bool
	// State is status.state; Running when empty.
	State string
	// Modified is metadata.lastModifiedTimestamp.
	Modified time.Time
	// Kubeconfig is one of the Kubeconfig* behaviours.
	Kubeconfig string
}

// Server is a fake Palette API written from SpectroCloud's published
// spec (testdata/palette-api), every request and answer checked against it
// by a Contract:
//   - GET /v1/dashboard/spectroclusters/meta: a bare array of
//     v1SpectroClusterMeta (metadata, spec.cloudType, status.state);
//   - POST /v1/dashboard/spectroclusters/search?limit=&continue=&offset=:
//     v1SpectroClustersSummary, specSummary.projectMeta, listmeta.offset
//     the next offset, limit at most 50;
//   - GET /v1/dashboard/projects/metadata: v1ProjectsMetadata;
//   - GET /v1/spectroclusters/{uid}/assets/kubeconfig?frp=:
//     application/octet-stream, 404 for a cluster without OIDC;
//   - the ApiKey security header, the ProjectUid scope header, v1Error
//     bodies, and optionally SpectroCloud's rate limits (429 past them).
//
// Change the exported fields before the first request or inside Edit.
type Server struct {
	// URL is the server's https URL.
	URL string
	// CertPEM is the server's certificate, to trust.
	CertPEM []byte
	// ClusterCA is the CA the clusters' kubeconfigs carry (PEM).
	ClusterCA []byte
	// Contract checked every exchange.
	Contract *Contract

	// Clusters is the tenant; Projects names its projects by uid.
	Clusters []Cluster
	Projects map[string]string
	// FailList answers the cluster list with this status.
	FailList int
	// FailSearch answers the cluster search with this status.
	FailSearch int
	// AssetsLimit and APILimit, when set, answer 429 past them, as
	// SpectroCloud does per source address.
	AssetsLimit, APILimit *rate.Limiter
	// Throttle answers this many kubeconfig requests 429 with
	// ThrottleRetryAfter as Retry-After.
	Throttle           int
	ThrottleRetryAfter string

	mu          sync.Mutex
	kubeconfigs map[string]int    // cluster uid -> requests
	frp         []string          // frp of each kubeconfig request
	projectHdrs map[string]string // cluster uid -> ProjectUid header
	accepts     map[string]bool   // Accept headers of kubeconfig requests
	throttled   int               // 429 answers
}

// DefaultClusters is the tenant of most tests: clusters in four projects,
// a tenant cluster, a system cluster, and clusters that are slow, broken,
// being deleted, without OIDC, or share a name.
func DefaultClusters() []Cluster {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	return []Cluster{
		{UID: "c1aaaaaaaaaa", Name: "platform-prod", Scope: "project", Project: "p-platform", Modified: t0},
		{UID: "c2bbbbbbbbbb", Name: "platform-dev", Scope: "project", Project: "p-platform", Modified: t0},
		{UID: "c3cccccccccc", Name: "payments-prod", Scope: "project", Project: "p-payments", Modified: t0},
		{UID: "c4dddddddddd", Name: "sandbox-1", Scope: "project", Project: "p-sandbox", Modified: t0},
		{UID: "c5eeeeeeeeee", Name: "shared-services", Scope: "tenant", Modified: t0},
		{UID: "c6ffffffffff", Name: "slow-cluster", Scope: "project", Project: "p-slow", Modified: t0, Kubeconfig: KubeconfigSlow},
		{UID: "c7gggggggggg", Name: "broken-cluster", Scope: "project", Project: "p-platform", Modified: t0, Kubeconfig: KubeconfigBroken},
		{UID: "c8hhhhhhhhhh", Name: "dup", Scope: "project", Project: "p-platform", Modified: t0},
		{UID: "c9iiiiiiiiii", Name: "dup", Scope: "project", Project: "p-payments", Modified: t0},
		{UID: "c10jjjjjjjjj", Name: "going-away", Scope: "project", Project: "p-platform", State: "Deleting", Modified: t0},
		{UID: "c11kkkkkkkkk", Name: "no-oidc", Scope: "project", Project: "p-platform", Modified: t0, Kubeconfig: KubeconfigNoOIDC},
		{UID: "c12lllllllll", Name: "palette-system", Scope: "system", Modified: t0},
	}
}

// ManyClusters is a tenant of n OIDC clusters in three projects, a tenth
// of them tenant-scoped.
func ManyClusters(n int) []Cluster {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	out := make([]Cluster, 0, n)
	for i := range n {
		c := Cluster{UID: fmt.Sprintf("%024x", 0x6650a1b2000000+i), Name: fmt.Sprintf("cluster-%04d", i), Scope: "project",
			Project: []string{"p-platform", "p-payments", "p-sandbox"}[i%3], Modified: t0}
		if i%10 == 9 {
			c.Scope, c.Project = "tenant", ""
		}
		out = append(out, c)
	}
	return out
}

// NewLimiter is a token bucket like SpectroCloud's per source address.
func NewLimiter(perSecond float64, burst int) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(perSecond), burst)
}

// New starts a fake on a loopback TLS server with DefaultClusters; a
// contract violation fails t.
func New(t testing.TB) *Server {
	p := &Server{
		ClusterCA: testCA(t),
		Projects: map[string]string{
			"p-platform": "platform", "p-payments": "payments", "p-sandbox": "sandbox", "p-slow": "slowpoke",
		},
		Clusters:    DefaultClusters(),
		kubeconfigs: map[string]int{},
		projectHdrs: map[string]string{},
		accepts:     map[string]bool{},
	}
	p.Contract = NewContract(t, t.Errorf)
	srv := httptest.NewTLSServer(p.Contract.Wrap(http.HandlerFunc(p.serve)))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	p.CertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return p
}

// Edit changes the fake's exported fields while it serves.
func (p *Server) Edit(f func(*Server)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

// Config is the palette-clusters plugin's config: block for the fake.
func (p *Server) Config() map[string]any {
	return map[string]any{"url": p.URL, "apiKey": APIKey, "caData": string(p.CertPEM)}
}

// Error answers a v1Error.
func Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg, "ref": "ref-1", "status": status})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (p *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("ApiKey") != APIKey {
		Error(w, http.StatusUnauthorized, "Unauthorized", "invalid api key")
		return
	}
	if r.Header.Get("Authorization") != "" {
		Error(w, http.StatusBadRequest, "BadRequest", "the source must use the API key, not a user's session")
		return
	}
	path := r.URL.Path
	p.mu.Lock()
	limiter := p.APILimit
	if strings.HasPrefix(path, "/v1/spectroclusters/") && strings.Contains(path, "/assets/") {
		limiter = p.AssetsLimit
	}
	limited := limiter != nil && !limiter.Allow()
	if limited {
		p.throttled++
	}
	p.mu.Unlock()
	if limited {
		w.Header().Set("Retry-After", "1")
		Error(w, http.StatusTooManyRequests, "TooManyRequests", "rate limit exceeded")
		return
	}
	switch {
	case r.Method == http.MethodGet && path == "/v1/dashboard/spectroclusters/meta":
		p.list(w)
	case r.Method == http.MethodPost && path == "/v1/dashboard/spectroclusters/search":
		p.search(w, r)
	case r.Method == http.MethodGet && path == "/v1/dashboard/projects/metadata":
		p.mu.Lock()
		items := []map[string]any{}
		for _, uid := range slices.Sorted(maps.Keys(p.Projects)) {
			items = append(items, map[string]any{"metadata": map[string]any{"uid": uid, "name": p.Projects[uid]}})
		}
		p.mu.Unlock()
		writeJSON(w, map[string]any{"items": items})
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/v1/spectroclusters/") && strings.HasSuffix(path, "/assets/kubeconfig"):
		p.kubeconfig(w, r, strings.TrimSuffix(strings.TrimPrefix(path, "/v1/spectroclusters/"), "/assets/kubeconfig"))
	default:
		Error(w, http.StatusNotFound, "ResourceNotFound", "no route "+path)
	}
}

// meta is a v1SpectroClusterMeta.
func (p *Server) meta(c Cluster) map[string]any {
	md := map[string]any{"uid": c.UID, "name": c.Name, "lastModifiedTimestamp": c.Modified.Format(time.RFC3339),
		"creationTimestamp": c.Modified.Add(-time.Hour).Format(time.RFC3339)}
	if c.NoAnnotations {
		p.Contract.Extra(ExtraNoAnnotations)
	} else {
		ann := map[string]any{"scope": c.Scope}
		if c.AnnotateProject && c.Project != "" {
			ann["projectUid"] = c.Project
		}
		md["annotations"] = ann
	}
	state := c.State
	if state == "" {
		state = "Running"
	}
	return map[string]any{"metadata": md, "spec": map[string]any{"cloudType": "aws", "cloudRegion": "eu-west-1"}, "status": map[string]any{"state": state}}
}

func (p *Server) list(w http.ResponseWriter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.FailList != 0 {
		Error(w, p.FailList, "InternalError", "database unavailable")
		return
	}
	items := []map[string]any{}
	for _, c := range p.Clusters {
		items = append(items, p.meta(c))
	}
	writeJSON(w, items)
}

// search pages through the clusters by name; the continue token is the
// next index, and so is listmeta.offset.
func (p *Server) search(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.FailSearch != 0 {
		Error(w, p.FailSearch, "Forbidden", "the key may not search clusters")
		return
	}
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 1 || limit > 50 {
		limit = 50
	}
	start := 0
	if c := q.Get("continue"); c != "" {
		if start, err = strconv.Atoi(strings.TrimPrefix(c, "tok-")); err != nil || start > len(p.Clusters) {
			Error(w, http.StatusBadRequest, "BadRequest", "bad continue token")
			return
		}
		if o := q.Get("offset"); o != "" && o != strconv.Itoa(start) {
			Error(w, http.StatusBadRequest, "BadRequest", "offset does not match the continue token")
			return
		}
	}
	sorted := slices.Clone(p.Clusters)
	slices.SortStableFunc(sorted, func(a, b Cluster) int { return strings.Compare(a.Name, b.Name) })
	end := min(start+limit, len(sorted))
	items := []map[string]any{}
	for _, c := range sorted[start:end] {
		item := map[string]any{"metadata": map[string]any{"uid": c.UID, "name": c.Name}, "status": map[string]any{"state": "Running"}}
		if c.Project != "" {
			item["specSummary"] = map[string]any{"projectMeta": map[string]any{"uid": c.Project, "name": p.Projects[c.Project]}}
		}
		items = append(items, item)
	}
	meta := map[string]any{"count": len(sorted), "limit": limit, "offset": end, "continue": ""}
	if end < len(sorted) {
		meta["continue"] = "tok-" + strconv.Itoa(end)
	}
	writeJSON(w, map[string]any{"items": items, "listmeta": meta})
}

func (p *Server) kubeconfig(w http.ResponseWriter, r *http.Request, uid string) {
	p.mu.Lock()
	i := slices.IndexFunc(p.Clusters, func(c Cluster) bool { return c.UID == uid })
	var c Cluster
	if i >= 0 {
		c = p.Clusters[i]
		p.kubeconfigs[uid]++
		p.frp = append(p.frp, r.URL.Query().Get("frp"))
		p.projectHdrs[uid] = r.Header.Get("ProjectUid")
		p.accepts[r.Header.Get("Accept")] = true
	}
	throttle := i >= 0 && p.Throttle > 0
	if throttle {
		p.Throttle--
		p.throttled++
	}
	retryAfter := p.ThrottleRetryAfter
	p.mu.Unlock()
	switch {
	case i < 0:
		Error(w, http.StatusNotFound, "ResourceNotFound", "no cluster "+uid)
		return
	case throttle:
		w.Header().Set("Retry-After", retryAfter)
		Error(w, http.StatusTooManyRequests, "TooManyRequests", "rate limit exceeded")
		return
	case c.Scope == "project" && r.Header.Get("ProjectUid") != c.Project:
		Error(w, http.StatusNotFound, "ResourceNotFound", "cluster not in this project")
		return
	}
	switch c.Kubeconfig {
	case KubeconfigSlow:
		<-r.Context().Done()
		// Hang up without an answer: returning would send an empty 200,
		// which can reach the client before its own deadline fires.
		panic(http.ErrAbortHandler)
	case KubeconfigBroken:
		Error(w, http.StatusInternalServerError, "InternalError", "kubeconfig not ready")
		return
	case KubeconfigNoOIDC:
		p.Contract.Extra(ExtraNoOIDCKubeconfig)
		Error(w, http.StatusNotFound, "ResourceNotFound", "kubeconfig not found: OIDC is not configured for the cluster")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", "attachment; filename="+c.Name+".kubeconfig")
	kc := p.KubeconfigText(c, r.URL.Query().Get("frp") != "false")
	switch c.Kubeconfig {
	case KubeconfigGarbage:
		kc = "{{{ not a kubeconfig"
	case KubeconfigBase64:
		p.Contract.Extra(ExtraBase64Kubeconfig)
		kc = base64.StdEncoding.EncodeToString([]byte(kc))
	}
	_, _ = w.Write([]byte(kc))
}

// Issuer is the OIDC issuer in the fake's kubeconfigs.
const Issuer = "https://palette.example.com/v1/oidc/tenant/t1"

// KubeconfigText is a Palette user kubeconfig with kubelogin OIDC settings:
// server https://proxy.spectrocloud.example/<uid>:6443 through Spectro
// Proxy, https://<name>.clusters.example.com:6443 directly, client id
// k8s-<name>.
func (p *Server) KubeconfigText(c Cluster, frp bool) string {
	host := c.Name + ".clusters.example.com"
	if frp {
		host = "proxy.spectrocloud.example/" + c.UID
	}
	return fmt.Sprintf(`apiVersion: v1
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
      - --oidc-issuer-url=%[4]s
      - --oidc-client-id=k8s-%[1]s
`, c.Name, host, base64.StdEncoding.EncodeToString(p.ClusterCA), Issuer)
}

// KubeconfigRequests is how many kubeconfig requests a cluster had.
func (p *Server) KubeconfigRequests(uid string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kubeconfigs[uid]
}

// KubeconfigCalls is how many kubeconfig requests the fake had in all.
func (p *Server) KubeconfigCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, v := range p.kubeconfigs {
		n += v
	}
	return n
}

// FRP lists the frp parameter of every kubeconfig request.
func (p *Server) FRP() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.frp)
}

// ProjectHeader is the ProjectUid header of a cluster's last kubeconfig
// request, and whether there was one.
func (p *Server) ProjectHeader(uid string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.projectHdrs[uid]
	return h, ok
}

// Accepts lists the Accept headers of the kubeconfig requests.
func (p *Server) Accepts() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.accepts))
}

// Throttled is how many 429 answers the fake gave.
func (p *Server) Throttled() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.throttled
}

func testCA(t testing.TB) []byte {
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
