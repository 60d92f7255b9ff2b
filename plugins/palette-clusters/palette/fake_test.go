package palette_test

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

	"github.com/spectroauth/spectroauth/sdk"
)

const apiKey = "palette-api-key-for-tests"

// Kubeconfig behaviours of a fake cluster.
const (
	kcNormal  = ""
	kcNoOIDC  = "no-oidc" // 404 ResourceNotFound: no OIDC configured
	kcSlow    = "slow"    // never answers
	kcBroken  = "broken"  // 500 every time
	kcGarbage = "garbage" // not a kubeconfig
	kcBase64  = "base64"  // the kubeconfig base64-encoded
)

// fakeCluster is a cluster of the fake tenant.
type fakeCluster struct {
	uid, name string
	// scope is the scope annotation ("" with noAnnotations: none at all).
	scope string
	// project is the project uid (project scope).
	project string
	// annotateProject also sets the undocumented projectUid annotation.
	annotateProject bool
	// noAnnotations leaves metadata.annotations out (ExtraNoAnnotations).
	noAnnotations bool
	state         string
	modified      time.Time
	kubeconfig    string // kc*
}

// paletteAPI is a fake Palette API written from SpectroCloud's published
// spec (testdata/palette-api), every request and answer checked against it
// by a contract:
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
type paletteAPI struct {
	t        testing.TB
	srv      *httptest.Server
	contract *contract
	ca       []byte
	clusters []fakeCluster
	projects map[string]string // uid -> name

	// failList answers the cluster list with this status.
	failList int
	// failSearch answers the cluster search with this status.
	failSearch int
	// assetsLimit and apiLimit, when set, answer 429 past them, as
	// SpectroCloud does per source address.
	assetsLimit, apiLimit *rate.Limiter
	// throttle answers this many kubeconfig requests 429 with Retry-After.
	throttle           int
	throttleRetryAfter string

	mu          sync.Mutex
	kubeconfigs map[string]int    // cluster uid -> requests
	frp         []string          // frp of each kubeconfig request
	projectHdrs map[string]string // cluster uid -> ProjectUid header
	accepts     map[string]bool   // Accept headers of kubeconfig requests
	throttled   int               // 429 answers
}

// defaultClusters is the tenant of most tests.
func defaultClusters() []fakeCluster {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	return []fakeCluster{
		{uid: "c1aaaaaaaaaa", name: "platform-prod", scope: "project", project: "p-platform", modified: t0},
		{uid: "c2bbbbbbbbbb", name: "platform-dev", scope: "project", project: "p-platform", modified: t0},
		{uid: "c3cccccccccc", name: "payments-prod", scope: "project", project: "p-payments", modified: t0},
		{uid: "c4dddddddddd", name: "sandbox-1", scope: "project", project: "p-sandbox", modified: t0},
		{uid: "c5eeeeeeeeee", name: "shared-services", scope: "tenant", modified: t0},
		{uid: "c6ffffffffff", name: "slow-cluster", scope: "project", project: "p-slow", modified: t0, kubeconfig: kcSlow},
		{uid: "c7gggggggggg", name: "broken-cluster", scope: "project", project: "p-platform", modified: t0, kubeconfig: kcBroken},
		{uid: "c8hhhhhhhhhh", name: "dup", scope: "project", project: "p-platform", modified: t0},
		{uid: "c9iiiiiiiiii", name: "dup", scope: "project", project: "p-payments", modified: t0},
		{uid: "c10jjjjjjjjj", name: "going-away", scope: "project", project: "p-platform", state: "Deleting", modified: t0},
		{uid: "c11kkkkkkkkk", name: "no-oidc", scope: "project", project: "p-platform", modified: t0, kubeconfig: kcNoOIDC},
		{uid: "c12lllllllll", name: "palette-system", scope: "system", modified: t0},
	}
}

func newPaletteAPI(t testing.TB) *paletteAPI {
	p := &paletteAPI{
		t:  t,
		ca: testCA(t),
		projects: map[string]string{
			"p-platform": "platform", "p-payments": "payments", "p-sandbox": "sandbox", "p-slow": "slowpoke",
		},
		clusters:    defaultClusters(),
		kubeconfigs: map[string]int{},
		projectHdrs: map[string]string{},
		accepts:     map[string]bool{},
	}
	p.contract = newContract(t, t.Errorf)
	p.srv = httptest.NewTLSServer(p.contract.wrap(http.HandlerFunc(p.serve)))
	t.Cleanup(p.srv.Close)
	return p
}

// paletteError answers a v1Error.
func paletteError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg, "ref": "ref-1", "status": status})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
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
	limiter := p.apiLimit
	if strings.HasPrefix(path, "/v1/spectroclusters/") && strings.Contains(path, "/assets/") {
		limiter = p.assetsLimit
	}
	if limiter != nil && !limiter.Allow() {
		p.mu.Lock()
		p.throttled++
		p.mu.Unlock()
		w.Header().Set("Retry-After", "1")
		paletteError(w, http.StatusTooManyRequests, "TooManyRequests", "rate limit exceeded")
		return
	}
	switch {
	case r.Method == http.MethodGet && path == "/v1/dashboard/spectroclusters/meta":
		p.list(w)
	case r.Method == http.MethodPost && path == "/v1/dashboard/spectroclusters/search":
		p.search(w, r)
	case r.Method == http.MethodGet && path == "/v1/dashboard/projects/metadata":
		items := []map[string]any{}
		for _, uid := range slices.Sorted(maps.Keys(p.projects)) {
			items = append(items, map[string]any{"metadata": map[string]any{"uid": uid, "name": p.projects[uid]}})
		}
		writeJSON(w, map[string]any{"items": items})
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/v1/spectroclusters/") && strings.HasSuffix(path, "/assets/kubeconfig"):
		p.kubeconfig(w, r, strings.TrimSuffix(strings.TrimPrefix(path, "/v1/spectroclusters/"), "/assets/kubeconfig"))
	default:
		paletteError(w, http.StatusNotFound, "ResourceNotFound", "no route "+path)
	}
}

// meta is a v1SpectroClusterMeta.
func (p *paletteAPI) meta(c fakeCluster) map[string]any {
	md := map[string]any{"uid": c.uid, "name": c.name, "lastModifiedTimestamp": c.modified.Format(time.RFC3339),
		"creationTimestamp": c.modified.Add(-time.Hour).Format(time.RFC3339)}
	if c.noAnnotations {
		p.contract.extra(ExtraNoAnnotations)
	} else {
		ann := map[string]any{"scope": c.scope}
		if c.annotateProject && c.project != "" {
			ann["projectUid"] = c.project
		}
		md["annotations"] = ann
	}
	state := c.state
	if state == "" {
		state = "Running"
	}
	return map[string]any{"metadata": md, "spec": map[string]any{"cloudType": "aws", "cloudRegion": "eu-west-1"}, "status": map[string]any{"state": state}}
}

func (p *paletteAPI) list(w http.ResponseWriter) {
	if p.failList != 0 {
		paletteError(w, p.failList, "InternalError", "database unavailable")
		return
	}
	items := []map[string]any{}
	for _, c := range p.clusters {
		items = append(items, p.meta(c))
	}
	writeJSON(w, items)
}

// search pages through the clusters by name; the continue token is the
// next index, and so is listmeta.offset.
func (p *paletteAPI) search(w http.ResponseWriter, r *http.Request) {
	if p.failSearch != 0 {
		paletteError(w, p.failSearch, "Forbidden", "the key may not search clusters")
		return
	}
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 1 || limit > 50 {
		limit = 50
	}
	start := 0
	if c := q.Get("continue"); c != "" {
		if start, err = strconv.Atoi(strings.TrimPrefix(c, "tok-")); err != nil || start > len(p.clusters) {
			paletteError(w, http.StatusBadRequest, "BadRequest", "bad continue token")
			return
		}
		if o := q.Get("offset"); o != "" && o != strconv.Itoa(start) {
			paletteError(w, http.StatusBadRequest, "BadRequest", "offset does not match the continue token")
			return
		}
	}
	sorted := slices.Clone(p.clusters)
	slices.SortStableFunc(sorted, func(a, b fakeCluster) int { return strings.Compare(a.name, b.name) })
	end := min(start+limit, len(sorted))
	items := []map[string]any{}
	for _, c := range sorted[start:end] {
		item := map[string]any{"metadata": map[string]any{"uid": c.uid, "name": c.name}, "status": map[string]any{"state": "Running"}}
		if c.project != "" {
			item["specSummary"] = map[string]any{"projectMeta": map[string]any{"uid": c.project, "name": p.projects[c.project]}}
		}
		items = append(items, item)
	}
	meta := map[string]any{"count": len(sorted), "limit": limit, "offset": end, "continue": ""}
	if end < len(sorted) {
		meta["continue"] = "tok-" + strconv.Itoa(end)
	}
	writeJSON(w, map[string]any{"items": items, "listmeta": meta})
}

func (p *paletteAPI) kubeconfig(w http.ResponseWriter, r *http.Request, uid string) {
	i := slices.IndexFunc(p.clusters, func(c fakeCluster) bool { return c.uid == uid })
	if i < 0 {
		paletteError(w, http.StatusNotFound, "ResourceNotFound", "no cluster "+uid)
		return
	}
	c := p.clusters[i]
	p.mu.Lock()
	p.kubeconfigs[uid]++
	p.frp = append(p.frp, r.URL.Query().Get("frp"))
	p.projectHdrs[uid] = r.Header.Get("ProjectUid")
	p.accepts[r.Header.Get("Accept")] = true
	throttle := p.throttle > 0
	if throttle {
		p.throttle--
		p.throttled++
	}
	p.mu.Unlock()
	if throttle {
		w.Header().Set("Retry-After", p.throttleRetryAfter)
		paletteError(w, http.StatusTooManyRequests, "TooManyRequests", "rate limit exceeded")
		return
	}
	if c.scope == "project" && r.Header.Get("ProjectUid") != c.project {
		paletteError(w, http.StatusNotFound, "ResourceNotFound", "cluster not in this project")
		return
	}
	switch c.kubeconfig {
	case kcSlow:
		<-r.Context().Done()
		// Hang up without an answer: returning would send an empty 200,
		// which can reach the client before its own deadline fires.
		panic(http.ErrAbortHandler)
	case kcBroken:
		paletteError(w, http.StatusInternalServerError, "InternalError", "kubeconfig not ready")
		return
	case kcNoOIDC:
		p.contract.extra(ExtraNoOIDCKubeconfig)
		paletteError(w, http.StatusNotFound, "ResourceNotFound", "kubeconfig not found: OIDC is not configured for the cluster")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", "attachment; filename="+c.name+".kubeconfig")
	kc := p.kubeconfigText(c, r.URL.Query().Get("frp") != "false")
	switch c.kubeconfig {
	case kcGarbage:
		kc = "{{{ not a kubeconfig"
	case kcBase64:
		p.contract.extra(ExtraBase64Kubeconfig)
		kc = base64.StdEncoding.EncodeToString([]byte(kc))
	}
	_, _ = w.Write([]byte(kc))
}

// kubeconfigText is a Palette user kubeconfig with kubelogin OIDC settings.
func (p *paletteAPI) kubeconfigText(c fakeCluster, frp bool) string {
	host := c.name + ".clusters.example.com"
	if frp {
		host = "proxy.spectrocloud.example/" + c.uid
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
      - --oidc-issuer-url=https://palette.example.com/v1/oidc/tenant/t1
      - --oidc-client-id=k8s-%[1]s
`, c.name, host, base64.StdEncoding.EncodeToString(p.ca))
}

// kubeconfigCalls is how many kubeconfig requests the fake had in all.
func (p *paletteAPI) kubeconfigCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, v := range p.kubeconfigs {
		n += v
	}
	return n
}

func (p *paletteAPI) config() sdk.Options {
	return sdk.Options{
		"url":    p.srv.URL,
		"apiKey": apiKey,
		"caData": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})),
		// Three pages of search for twelve clusters.
		"pageSize": 5,
	}
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

// manyClusters is a tenant of n OIDC clusters in ten projects, a tenth of
// them tenant-scoped.
func manyClusters(n int) []fakeCluster {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	out := make([]fakeCluster, 0, n)
	for i := range n {
		c := fakeCluster{uid: fmt.Sprintf("%024x", 0x6650a1b2000000+i), name: fmt.Sprintf("cluster-%04d", i), scope: "project",
			project: []string{"p-platform", "p-payments", "p-sandbox"}[i%3], modified: t0}
		if i%10 == 9 {
			c.scope, c.project = "tenant", ""
		}
		out = append(out, c)
	}
	return out
}

// newLimiter is a token bucket like SpectroCloud's per source address.
func newLimiter(perSecond float64, burst int) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(perSecond), burst)
}
