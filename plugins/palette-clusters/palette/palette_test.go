package palette_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/plugins/palette-clusters/palette"
	"github.com/spectroauth/spectroauth/plugins/palette-clusters/palettetest"
	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/plugintest"
)

// config is the plugin's config for p, with small pages of search.
func config(p *palettetest.Server) sdk.Options {
	c := sdk.Options(p.Config())
	c["pageSize"] = 5 // three pages for the default twelve clusters
	return c
}

// fastPacing keeps tests short: the fake does not limit unless a test
// asks it to.
var (
	fastLimits = palette.Limits{Assets: 2000, AssetsBurst: 50, API: 2000, APIBurst: 50}
	fastRetry  = palette.Retry{Attempts: 4, Base: 5 * time.Millisecond, Max: 50 * time.Millisecond}
)

func names(clusters []sdk.Cluster) []string {
	var out []string
	for _, c := range clusters {
		out = append(out, c.Name)
	}
	return out
}

func TestConformance(t *testing.T) {
	p := palettetest.New(t)
	with := func(k string, v any) sdk.Options {
		c := config(p)
		c[k] = v
		return c
	}
	without := func(k string) sdk.Options {
		c := config(p)
		delete(c, k)
		return c
	}
	optsReq := func(o sdk.Options) sdk.ValidateOptionsRequest {
		return sdk.ValidateOptionsRequest{Role: sdk.CapabilityClusterSource, Options: o}
	}
	t.Setenv(palette.APIKeyEnv, "")
	plugintest.Run(t, palette.Plugin(), plugintest.Suite{
		Config: config(p),
		BadConfigs: []plugintest.BadConfig{
			{Config: without("url"), Key: "url"},
			{Name: "http url", Config: with("url", "http://palette.example.com"), Key: "url"},
			{Name: "no api key", Config: without("apiKey"), Key: "apiKey"},
			{Name: "api key with a newline", Config: with("apiKey", "abc\n"), Key: "apiKey"},
			{Config: with("pageSize", 0), Key: "pageSize"},
			{Name: "page larger than Palette allows", Config: with("pageSize", 51), Key: "pageSize"},
			{Config: with("requestTimeout", "5m"), Key: "requestTimeout"},
			{Config: with("kubeconfigMaxAge", "-1s"), Key: "kubeconfigMaxAge"},
			{Config: with("caData", "nope"), Key: "caData"},
			{Config: with("includeProjects", []any{"x"}), Key: "includeProjects"},
		},
		BadOptions: []plugintest.BadOptions{
			{Request: optsReq(sdk.Options{"includeProjects": "platform"}), Key: "includeProjects"},
			{Request: optsReq(sdk.Options{"clusterTimeout": "0s"}), Key: "clusterTimeout"},
			{Request: optsReq(sdk.Options{"tenantClusters": "yes"}), Key: "tenantClusters"},
			{Request: optsReq(sdk.Options{"systemClusters": "yes"}), Key: "systemClusters"},
			{Request: optsReq(sdk.Options{"strategy": "not a name"}), Key: "strategy"},
			{Request: optsReq(sdk.Options{"projects": []any{"x"}}), Key: "projects"},
		},
		ListClusters: []plugintest.ListClustersCase{
			{Name: "platform and tenant", Request: sdk.ListClustersRequest{Options: sdk.Options{"includeProjects": []any{"platform"}, "clusterTimeout": "2s", "strategy": "oidc"}},
				Check: func(t plugintest.T, got []sdk.Cluster) {
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

// configured is a source configured for p's fake, paced fast.
func configured(t testing.TB, cfg sdk.Options) (*palette.Source, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s := &palette.Source{Logger: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}), Getenv: func(string) string { return "" }}
	if err := s.Configure(context.Background(), sdk.Config{Values: cfg}); err != nil {
		t.Fatal(err)
	}
	s.SetPacing(fastLimits, fastRetry)
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

// warnings are the log's lines above debug.
func (s *syncBuffer) warnings() string {
	var out []string
	for _, l := range strings.Split(s.String(), "\n") {
		if strings.Contains(l, "[WARN]") || strings.Contains(l, "[ERROR]") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func list(t testing.TB, s *palette.Source, opts sdk.Options) []sdk.Cluster {
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

func byName(clusters []sdk.Cluster) map[string]sdk.Cluster {
	out := map[string]sdk.Cluster{}
	for _, c := range clusters {
		out[c.Name] = c
	}
	return out
}

func TestListing(t *testing.T) {
	p := palettetest.New(t)
	s, logs := configured(t, config(p))
	start := time.Now()
	got := list(t, s, sdk.Options{"clusterTimeout": "300ms"})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the slow cluster held the listing up for %s", d)
	}
	want := []string{"dup-c8hhhhhh", "dup-c9iiiiii", "payments-prod", "platform-dev", "platform-prod", "sandbox-1", "shared-services"}
	if !slices.Equal(names(got), want) {
		t.Fatalf("clusters = %v, want %v (slow, broken and no-OIDC left out, deleting and system skipped, duplicates qualified)", names(got), want)
	}
	if n := p.Contract.Calls("v1SpectroClustersMetaGet"); n != 1 {
		t.Errorf("%d cluster list calls, want 1 (a bare array, no paging)", n)
	}
	if n := p.Contract.Calls("v1SpectroClustersSearchFilterSummary"); n != 3 {
		t.Errorf("%d search calls, want 3 (12 clusters, 5 a page)", n)
	}
	for _, msg := range []string{"slow-cluster", "broken-cluster", "kubeconfig not ready"} {
		if !strings.Contains(logs.warnings(), msg) {
			t.Errorf("the log does not warn about %q:\n%s", msg, logs.String())
		}
	}
	if w := logs.warnings(); strings.Contains(w, "no-oidc") || strings.Contains(w, "palette-system") {
		t.Errorf("a cluster without OIDC or a system cluster was warned about:\n%s", w)
	}
	if !strings.Contains(logs.String(), "no OIDC kubeconfig") {
		t.Errorf("no debug line for the cluster without OIDC:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), palettetest.APIKey) {
		t.Errorf("the API key was logged")
	}
	st := s.LastStats()
	if st.Seen != 12 || st.Candidates != 10 || st.Listed != 7 || st.WithoutOIDC != 1 || st.Failed != 2 || st.Stale != 0 || st.Projects != 3 {
		t.Errorf("stats = %+v", st)
	}
	prod := byName(got)["platform-prod"]
	if prod.Server != "https://proxy.spectrocloud.example/c1aaaaaaaaaa:6443" {
		t.Errorf("server = %q, want the Spectro Proxy endpoint from the kubeconfig", prod.Server)
	}
	if !bytes.Equal(prod.CAData, p.ClusterCA) {
		t.Errorf("CA is not the kubeconfig's")
	}
	if prod.Annotations[palette.AnnotationClientID] != "k8s-platform-prod" || prod.Annotations[palette.AnnotationIssuer] != "https://palette.example.com/v1/oidc/tenant/t1" ||
		prod.Annotations[palette.AnnotationClusterUID] != "c1aaaaaaaaaa" || prod.Annotations[palette.AnnotationProjectUID] != "p-platform" ||
		prod.Annotations[palette.AnnotationCloudType] != "aws" {
		t.Errorf("annotations = %v", prod.Annotations)
	}
	if prod.Labels[palette.LabelScope] != "project" || prod.Labels[palette.LabelProject] != "platform" {
		t.Errorf("labels = %v, want the project's name from the cluster search", prod.Labels)
	}
	if tenant := byName(got)["shared-services"]; tenant.Labels[palette.LabelScope] != "tenant" || tenant.Annotations[palette.AnnotationProjectUID] != "" {
		t.Errorf("tenant cluster = %+v", tenant)
	}
	for _, frp := range p.FRP() {
		if frp != "true" {
			t.Errorf("kubeconfig asked with frp=%s, want true by default", frp)
		}
	}
	tenantHdr, _ := p.ProjectHeader("c5eeeeeeeeee")
	projectHdr, _ := p.ProjectHeader("c1aaaaaaaaaa")
	if tenantHdr != "" || projectHdr != "p-platform" {
		t.Errorf("ProjectUid headers: tenant cluster %q, project cluster %q", tenantHdr, projectHdr)
	}
	if got := p.Accepts(); !slices.Equal(got, []string{"application/octet-stream"}) {
		t.Errorf("kubeconfig Accept headers = %v, want application/octet-stream", got)
	}
	if p.KubeconfigRequests("c12lllllllll") != 0 {
		t.Errorf("the system cluster's kubeconfig was read although systemClusters is false")
	}
}

func TestProjectFilters(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		p := palettetest.New(t)
		if fallback {
			// A key that may not search: the projectUid annotation and
			// the projects' metadata stand in.
			p.FailSearch = 403
			for i := range p.Clusters {
				p.Clusters[i].AnnotateProject = true
			}
		}
		s, logs := configured(t, config(p))
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
			{"system clusters", sdk.Options{"includeProjects": []any{"sandbox"}, "tenantClusters": false, "systemClusters": true},
				[]string{"palette-system", "sandbox-1"}},
		} {
			t.Run(fmt.Sprintf("%s/search forbidden %t", tc.name, fallback), func(t *testing.T) {
				got := list(t, s, tc.opts)
				if !slices.Equal(names(got), tc.want) {
					t.Errorf("clusters = %v, want %v", names(got), tc.want)
				}
				for _, c := range got {
					if c.Labels[palette.LabelScope] == "project" && c.Labels[palette.LabelProject] == "" {
						t.Errorf("%s: no project label", c.Name)
					}
				}
				if sys, ok := byName(got)["palette-system"]; ok {
					if hdr, _ := p.ProjectHeader("c12lllllllll"); sys.Labels[palette.LabelScope] != "system" || hdr != "" {
						t.Errorf("system cluster = %+v, ProjectUid %q", sys, hdr)
					}
				}
			})
		}
		if fallback != strings.Contains(logs.warnings(), "could not search clusters") {
			t.Errorf("search forbidden %t, log:\n%s", fallback, logs.warnings())
		}
		if n := p.Contract.Calls("v1ProjectsMetadata"); fallback != (n > 0) {
			t.Errorf("search forbidden %t: %d project metadata calls", fallback, n)
		}
	}
}

// TestNoOIDCTenant: a tenant none of whose clusters has OIDC configured is
// an empty listing, not a failed discovery, and nothing is warned about.
func TestNoOIDCTenant(t *testing.T) {
	p := palettetest.New(t)
	for i := range p.Clusters {
		p.Clusters[i].Kubeconfig = palettetest.KubeconfigNoOIDC
	}
	s, logs := configured(t, config(p))
	got, err := s.ListClusters(context.Background(), sdk.ListClustersRequest{})
	if err != nil || len(got) != 0 {
		t.Fatalf("ListClusters = %v, %v; want no clusters and no error", names(got), err)
	}
	if st := s.LastStats(); st.WithoutOIDC != 10 || st.Failed != 0 {
		t.Errorf("stats = %+v", st)
	}
	if w := logs.warnings(); w != "" {
		t.Errorf("warnings for clusters without OIDC:\n%s", w)
	}
	// Known to have no OIDC: not asked again while unchanged.
	before := p.KubeconfigCalls()
	list(t, s, nil)
	if n := p.KubeconfigCalls() - before; n != 0 {
		t.Errorf("%d kubeconfig requests on the second listing, want 0", n)
	}
}

// TestRetry: 429 and 5xx answers are retried, a bounded number of times,
// after Retry-After when Palette sends one.
func TestRetry(t *testing.T) {
	p := palettetest.New(t)
	p.Clusters = slices.DeleteFunc(p.Clusters, func(c palettetest.Cluster) bool { return c.Kubeconfig == palettetest.KubeconfigSlow })
	p.Throttle, p.ThrottleRetryAfter = 2, "1"
	s, _ := configured(t, config(p))
	s.SetPacing(palette.Limits{Assets: 2000, AssetsBurst: 1, API: 2000, APIBurst: 50}, palette.Retry{Attempts: 4, Base: 5 * time.Millisecond, Max: 2 * time.Second})
	start := time.Now()
	got := list(t, s, sdk.Options{})
	if d := time.Since(start); d < time.Second {
		t.Errorf("the listing took %s; Retry-After: 1 was not honoured", d)
	}
	if len(got) != 7 {
		t.Errorf("clusters = %v, want 7: none dropped because of a 429", names(got))
	}
	if n := p.KubeconfigRequests("c7gggggggggg"); n != 4 {
		t.Errorf("the cluster answering 500 was asked %d times, want 4 (bounded retries)", n)
	}
}

// TestRateLimited: SpectroCloud's limits, five times faster, enforced by
// the fake, and the client paced just under them: nothing is dropped.
func TestRateLimited(t *testing.T) {
	p := palettetest.New(t)
	p.Clusters = palettetest.ManyClusters(40)
	p.AssetsLimit = palettetest.NewLimiter(50, 5)
	p.APILimit = palettetest.NewLimiter(50, 5)
	s, _ := configured(t, config(p))
	s.SetPacing(palette.Limits{Assets: 45, AssetsBurst: 4, API: 45, APIBurst: 4}, palette.Retry{Attempts: 4, Base: 50 * time.Millisecond, Max: 2 * time.Second})
	got := list(t, s, nil)
	if len(got) != 40 {
		t.Errorf("%d clusters, want 40", len(got))
	}
	t.Logf("429 answers: %d, requests: %d", p.Throttled(), s.LastStats().Requests)
}

// TestCache: kubeconfigs are read again only when the cluster changed
// (lastModifiedTimestamp) or the reading is older than kubeconfigMaxAge.
func TestCache(t *testing.T) {
	p := palettetest.New(t)
	p.Clusters = slices.DeleteFunc(p.Clusters, func(c palettetest.Cluster) bool {
		return c.Kubeconfig == palettetest.KubeconfigSlow || c.Kubeconfig == palettetest.KubeconfigBroken
	})
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	s, _ := configured(t, config(p))
	s.Now = func() time.Time { return now }
	list(t, s, nil)
	first := p.KubeconfigCalls()
	if first != 8 {
		t.Fatalf("%d kubeconfig requests on the first listing, want 8", first)
	}
	steps := []struct {
		name string
		do   func()
		want int
	}{
		{"nothing changed", func() {}, 0},
		{"one cluster changed", func() {
			p.Edit(func(p *palettetest.Server) { p.Clusters[0].Modified = p.Clusters[0].Modified.Add(time.Minute) })
		}, 1},
		{"the cache aged", func() { now = now.Add(time.Hour) }, 8},
	}
	for _, st := range steps {
		st.do()
		before := p.KubeconfigCalls()
		if got := list(t, s, nil); len(got) != 7 {
			t.Errorf("%s: clusters = %v", st.name, names(got))
		}
		if n := p.KubeconfigCalls() - before; n != st.want {
			t.Errorf("%s: %d kubeconfig requests, want %d", st.name, n, st.want)
		}
	}
	if st := s.LastStats(); st.Fetched != 8 || st.Cached != 0 {
		t.Errorf("stats after the cache aged = %+v", st)
	}
}

// TestStale: a cluster listed before stays listed, marked stale, while its
// kubeconfig cannot be read; a cluster never read is left out; a cluster
// whose OIDC kubeconfig is gone leaves quietly.
func TestStale(t *testing.T) {
	p := palettetest.New(t)
	p.Clusters = slices.DeleteFunc(p.Clusters, func(c palettetest.Cluster) bool {
		return c.Kubeconfig == palettetest.KubeconfigSlow || c.Kubeconfig == palettetest.KubeconfigBroken
	})
	s, logs := configured(t, config(p))
	list(t, s, nil)

	p.Edit(func(p *palettetest.Server) {
		p.Clusters[0].Kubeconfig = palettetest.KubeconfigBroken // platform-prod
		p.Clusters[0].Modified = p.Clusters[0].Modified.Add(time.Minute)
		p.Clusters = append(p.Clusters, palettetest.Cluster{UID: "c20zzzzzzzzz", Name: "new-broken", Scope: "tenant", Kubeconfig: palettetest.KubeconfigBroken, Modified: time.Now()})
	})
	got := list(t, s, nil)
	prod, ok := byName(got)["platform-prod"]
	if !ok || prod.Annotations[palette.AnnotationStale] == "" {
		t.Errorf("platform-prod = %+v, want it listed and marked stale", prod)
	}
	if _, ok := byName(got)["new-broken"]; ok {
		t.Errorf("a cluster never read was listed")
	}
	if st := s.LastStats(); st.Stale != 1 || st.Failed != 1 || st.Listed != 7 {
		t.Errorf("stats = %+v", st)
	}
	if !strings.Contains(logs.warnings(), "marked stale") {
		t.Errorf("no warning about the stale cluster:\n%s", logs.String())
	}

	p.Edit(func(p *palettetest.Server) {
		p.Clusters[0].Kubeconfig = palettetest.KubeconfigNoOIDC
		p.Clusters[0].Modified = p.Clusters[0].Modified.Add(time.Minute)
	})
	got = list(t, s, nil)
	if _, ok := byName(got)["platform-prod"]; ok {
		t.Errorf("a cluster whose OIDC kubeconfig is gone is still listed")
	}
}

func TestErrors(t *testing.T) {
	p := palettetest.New(t)
	bad := config(p)
	bad["apiKey"] = "wrong"
	s, _ := configured(t, bad)
	_, err := s.ListClusters(context.Background(), sdk.ListClustersRequest{})
	var ce *sdk.ConfigError
	if !errors.As(err, &ce) || ce.Key != "apiKey" || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong API key: %v, want a ConfigError on palettetest.APIKey that does not quote it", err)
	}

	p.Edit(func(p *palettetest.Server) { p.FailList = 500 })
	listed := p.Contract.Calls("v1SpectroClustersMetaGet")
	s, _ = configured(t, config(p))
	if _, err := s.ListClusters(context.Background(), sdk.ListClustersRequest{}); err == nil || !strings.Contains(err.Error(), "database unavailable") {
		t.Errorf("failing list: %v", err)
	}
	if n := p.Contract.Calls("v1SpectroClustersMetaGet") - listed; n != fastRetry.Attempts {
		t.Errorf("the failing list was asked %d times, want %d", n, fastRetry.Attempts)
	}

	noCA := config(p)
	delete(noCA, "caData")
	s, _ = configured(t, noCA)
	if _, err := s.ListClusters(context.Background(), sdk.ListClustersRequest{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted Palette certificate: %v", err)
	}

	direct := config(p)
	direct["useSpectroProxy"] = false
	p.Edit(func(p *palettetest.Server) { p.FailList = 0 })
	s, _ = configured(t, direct)
	got := list(t, s, sdk.Options{"includeProjects": []any{"payments"}, "tenantClusters": false})
	if len(got) == 0 || !strings.HasPrefix(got[0].Server, "https://dup.clusters.example.com") && !strings.HasPrefix(got[0].Server, "https://payments-prod.clusters.example.com") {
		t.Errorf("useSpectroProxy false: %v", got)
	}
}

func TestAPIKeyFromEnvironment(t *testing.T) {
	p := palettetest.New(t)
	cfg := config(p)
	delete(cfg, "apiKey")
	s := &palette.Source{Getenv: func(k string) string {
		if k == palette.APIKeyEnv {
			return palettetest.APIKey
		}
		return ""
	}}
	if err := s.Configure(context.Background(), sdk.Config{Values: cfg}); err != nil {
		t.Fatal(err)
	}
	if got := list(t, s, sdk.Options{"includeProjects": []any{"sandbox"}, "tenantClusters": false}); len(got) != 1 {
		t.Errorf("clusters = %v", names(got))
	}
	c, _ := palette.ParseConfig(config(p), nil)
	if out := fmt.Sprintf("%v %+v %#v", c, c, c); strings.Contains(out, palettetest.APIKey) {
		t.Errorf("the API key is printed")
	}
}

// TestSameNameSameSecond: Palette's uids are object ids whose first eight
// characters are the creation time in seconds, so two clusters of one name
// created in the same second (in different projects) share that prefix;
// and a qualified name may be another cluster's own name. Names stay
// unique, and the listing stays valid.
func TestSameNameSameSecond(t *testing.T) {
	p := palettetest.New(t)
	p.Clusters = []palettetest.Cluster{
		{UID: "6650a1b2c3d4e5f600000001", Name: "twin", Scope: "project", Project: "p-platform"},
		{UID: "6650a1b2c3d4e5f600000002", Name: "twin", Scope: "project", Project: "p-payments"},
		{UID: "6650a1b3aaaaaaaaaaaaaaaa", Name: "other", Scope: "project", Project: "p-platform"},
		{UID: "6650a1b3bbbbbbbbbbbbbbbb", Name: "other", Scope: "project", Project: "p-payments"},
		{UID: "6650a1b4cccccccccccccccc", Name: "other-6650a1b3", Scope: "project", Project: "p-sandbox"},
	}
	s, _ := configured(t, config(p))
	got := list(t, s, sdk.Options{})
	if len(got) != len(p.Clusters) {
		t.Fatalf("clusters = %v, want %d", names(got), len(p.Clusters))
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
	p := palettetest.New(t)
	for i := range p.Clusters {
		p.Clusters[i].Kubeconfig = palettetest.KubeconfigBroken
	}
	s, _ := configured(t, config(p))
	got, err := s.ListClusters(context.Background(), sdk.ListClustersRequest{Options: sdk.Options{"clusterTimeout": "1s"}})
	if err == nil || !strings.Contains(err.Error(), "kubeconfig not ready") {
		t.Errorf("ListClusters = %v, %v; want an error that says why", names(got), err)
	}
}

// TestExtraBase64Kubeconfig is an extra case: the spec says only that the
// kubeconfig is binary; SpectroCloud's SDK also accepts it base64-encoded.
func TestExtraBase64Kubeconfig(t *testing.T) {
	p := palettetest.New(t)
	p.Clusters = []palettetest.Cluster{{UID: "c1aaaaaaaaaa", Name: "encoded", Scope: "tenant", Kubeconfig: palettetest.KubeconfigBase64}}
	s, _ := configured(t, config(p))
	got := list(t, s, nil)
	if len(got) != 1 || got[0].Server != "https://proxy.spectrocloud.example/c1aaaaaaaaaa:6443" || !bytes.Equal(got[0].CAData, p.ClusterCA) ||
		got[0].Annotations[palette.AnnotationClientID] != "k8s-encoded" {
		t.Errorf("clusters = %+v", got)
	}
	if !slices.Contains(p.Contract.Used(), palettetest.ExtraBase64Kubeconfig) {
		t.Errorf("the extra case was not exercised")
	}
}

// TestExtraMissingAnnotations is an extra case: v1ObjectMeta's annotations
// are optional. A cluster without them is a project cluster whose project
// the search tells.
func TestExtraMissingAnnotations(t *testing.T) {
	p := palettetest.New(t)
	p.Clusters = []palettetest.Cluster{{UID: "c1aaaaaaaaaa", Name: "bare", Project: "p-payments", NoAnnotations: true}}
	s, _ := configured(t, config(p))
	got := list(t, s, sdk.Options{"includeProjects": []any{"payments"}})
	if len(got) != 1 || got[0].Labels[palette.LabelProject] != "payments" || got[0].Annotations[palette.AnnotationProjectUID] != "p-payments" {
		t.Errorf("clusters = %+v", got)
	}
	if !slices.Contains(p.Contract.Used(), palettetest.ExtraNoAnnotations) {
		t.Errorf("the extra case was not exercised")
	}
}

// TestCallDeadline: a listing whose call would end before every
// kubeconfig is read answers in time with what it read; the next listing
// reads the rest. No cluster is lost on the way.
func TestCallDeadline(t *testing.T) {
	p := palettetest.New(t)
	p.Clusters = palettetest.ManyClusters(30)
	s, _ := configured(t, config(p))
	s.SetPacing(palette.Limits{Assets: 20, AssetsBurst: 1, API: 2000, APIBurst: 50}, fastRetry)
	listWithin := func(d time.Duration) ([]sdk.Cluster, error) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		start := time.Now()
		got, err := s.ListClusters(ctx, sdk.ListClustersRequest{})
		if took := time.Since(start); took > d {
			t.Errorf("the listing took %s, longer than its %s deadline", took, d)
		}
		return got, err
	}
	got, err := listWithin(700 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	st := s.LastStats()
	if len(got) == 0 || st.Deferred == 0 || st.Listed+st.Deferred != 30 || st.Failed != 0 {
		t.Fatalf("first listing: %d clusters, stats %+v; want some listed, the rest deferred", len(got), st)
	}
	got, err = listWithin(5 * time.Second)
	if err != nil || len(got) != 30 {
		t.Fatalf("second listing: %d clusters, %v; want all 30", len(got), err)
	}
	if st := s.LastStats(); st.Cached == 0 || st.Deferred != 0 {
		t.Errorf("second listing stats %+v; want the first listing's readings reused", st)
	}
}
