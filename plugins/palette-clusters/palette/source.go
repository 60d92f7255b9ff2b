package palette

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/sdk"
)

// Annotations and labels of discovered clusters.
const (
	AnnotationClusterUID = "spectrocloud.com/cluster-uid"
	AnnotationProjectUID = "spectrocloud.com/project-uid"
	// AnnotationClientID and AnnotationIssuer carry the cluster's OIDC
	// settings from its kubeconfig, for the oidc-cluster strategy.
	AnnotationClientID = "spectrocloud.com/oidc-client-id"
	AnnotationIssuer   = "spectrocloud.com/oidc-issuer-url"
	// AnnotationStale is set on a cluster listed from an earlier reading
	// of its kubeconfig because this listing could not read it (Palette
	// busy or failing); its value is when that kubeconfig was read (RFC 3339).
	AnnotationStale = "spectrocloud.com/stale-since"
	// AnnotationCloudType is the cluster's spec.cloudType.
	AnnotationCloudType = "spectrocloud.com/cloud-type"
	LabelScope          = "spectrocloud.com/scope"
	LabelProject        = "spectrocloud.com/project"
)

// kubeconfigConcurrency is how many kubeconfigs are fetched at once.
const kubeconfigConcurrency = 4

// Source is the palette cluster source. Configure it before use.
type Source struct {
	cfg    Config
	client *Client
	// Getenv defaults to os.Getenv (for PALETTE_API_KEY).
	Getenv func(string) string
	// Logger defaults to hclog.Default().
	Logger hclog.Logger
	// Now defaults to time.Now (the kubeconfig cache's clock).
	Now func() time.Time

	// mu guards cache and stats.
	mu    sync.Mutex
	cache map[string]*cacheEntry
	stats Stats
}

// cacheEntry is what the last reading of a cluster's kubeconfig gave.
type cacheEntry struct {
	// modified is the cluster's lastModifiedTimestamp then.
	modified string
	// fetched is when it was read.
	fetched time.Time
	// ep is nil when the cluster had no OIDC kubeconfig.
	ep *endpoint
}

// Stats describe the last listing.
type Stats struct {
	// Seen is how many clusters Palette listed.
	Seen int
	// Candidates passed the state, scope and project filters.
	Candidates int
	// Listed is how many clusters the listing returned.
	Listed int
	// WithoutOIDC clusters have no OIDC kubeconfig: skipped, not failures.
	WithoutOIDC int
	// Stale clusters were listed from an earlier kubeconfig because this
	// listing could not read theirs.
	Stale int
	// Failed clusters could not be read and were not seen before.
	Failed int
	// Deferred clusters were not read before the listing had to answer
	// and were not seen before: the next listing reads them.
	Deferred int
	// Fetched kubeconfigs were read in this listing; Cached were reused.
	Fetched, Cached int
	// Requests is how many HTTP requests the listing made, retries included.
	Requests int64
	// Projects is how many distinct projects the listed clusters are in.
	Projects int
}

// Plugin describes the plugin for sdk.Serve.
func Plugin() sdk.Plugin {
	return sdk.Plugin{Name: "palette-clusters", Impl: &Source{}}
}

var (
	_ sdk.ClusterSource    = (*Source)(nil)
	_ sdk.Configurer       = (*Source)(nil)
	_ sdk.OptionsValidator = (*Source)(nil)
)

// Configure implements sdk.Configurer.
func (s *Source) Configure(_ context.Context, cfg sdk.Config) error {
	getenv := s.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	c, err := ParseConfig(cfg.Values, getenv)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg, s.client, s.cache = c, NewClient(c), map[string]*cacheEntry{}
	return nil
}

// ValidateOptions implements sdk.OptionsValidator.
func (s *Source) ValidateOptions(_ context.Context, req sdk.ValidateOptionsRequest) error {
	_, err := ParseOptions(req.Options)
	return err
}

// LastStats describes the last listing.
func (s *Source) LastStats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Source) log() hclog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return hclog.Default()
}

// candidate is a listed cluster that passed the filters.
type candidate struct {
	meta    ClusterMeta
	project ProjectMeta
}

// outcome is what reading one candidate's kubeconfig gave.
type outcome struct {
	ep       *endpoint
	stale    time.Time // when ep was read, if from the cache after a failure
	noOIDC   bool
	fetched  bool
	deferred bool // not read in time; ep is the earlier reading, if any
	err      error
	excluded bool // unusable: logged, not counted as a failure
}

// ListClusters implements sdk.ClusterSource: list the clusters
// (GET /v1/dashboard/spectroclusters/meta), find their projects
// (the cluster search), filter by state, scope and project, then read each
// cluster's kubeconfig, paced under Palette's rate limits and reused while
// the cluster has not changed. Clusters without an OIDC kubeconfig are
// skipped quietly; a cluster whose kubeconfig cannot be read now but was
// before stays listed, marked stale; one never read is left out and logged.
func (s *Source) ListClusters(ctx context.Context, req sdk.ListClustersRequest) ([]sdk.Cluster, error) {
	if s.client == nil {
		return nil, sdk.ConfigErrorf("", "the plugin is not configured")
	}
	opts, err := ParseOptions(req.Options)
	if err != nil {
		return nil, err
	}
	before := s.client.Requests()
	metas, err := s.client.ListClusters(ctx)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Unauthorized() {
			return nil, sdk.ConfigErrorf("apiKey", "Palette refused the API key: %v", err)
		}
		return nil, err
	}
	s.forgetGone(metas)
	projects, err := s.projects(ctx, metas)
	if err != nil {
		return nil, err
	}
	st := Stats{Seen: len(metas)}
	candidates := s.filter(metas, projects, opts)
	st.Candidates = len(candidates)
	outcomes := s.read(ctx, candidates, opts)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("listing Palette clusters: %w", err)
	}
	clusters, firstErr := s.build(candidates, outcomes, opts, &st)
	st.Requests = s.client.Requests() - before
	s.mu.Lock()
	s.stats = st
	s.mu.Unlock()
	s.log().Info("listed Palette clusters", "listed", st.Listed, "palette_clusters", st.Seen, "without_oidc", st.WithoutOIDC,
		"stale", st.Stale, "failed", st.Failed, "deferred", st.Deferred, "kubeconfigs_read", st.Fetched, "kubeconfigs_reused", st.Cached, "requests", st.Requests)
	if len(clusters) == 0 && firstErr == nil && st.Deferred > 0 {
		return nil, fmt.Errorf("listing Palette clusters: none of the %d kubeconfigs to read was read before the call's deadline: %w", st.Deferred, context.DeadlineExceeded)
	}
	if len(clusters) == 0 && firstErr != nil {
		// Not a tenant without OIDC clusters: Palette could not say
		// where they are. The daemon keeps its last good list on an error.
		return nil, fmt.Errorf("listing Palette clusters: the kubeconfig of none of the %d clusters could be read; the first failure: %w", st.Failed, firstErr)
	}
	return clusters, nil
}

// forgetGone drops the cached kubeconfigs of clusters Palette no longer
// lists.
func (s *Source) forgetGone(metas []ClusterMeta) {
	listed := map[string]bool{}
	for _, m := range metas {
		listed[m.Metadata.UID] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid := range s.cache {
		if !listed[uid] {
			delete(s.cache, uid)
		}
	}
}

// projects finds each project cluster's project with the documented cluster
// search (specSummary.projectMeta), naming the projects with the projects'
// metadata when the search does not. When the key may not search, it falls
// back on the (undocumented) projectUid annotation of the listed clusters.
func (s *Source) projects(ctx context.Context, metas []ClusterMeta) (map[string]ProjectMeta, error) {
	out := map[string]ProjectMeta{}
	if !slices.ContainsFunc(metas, func(m ClusterMeta) bool { return m.Scope() == ScopeProject }) {
		return out, nil
	}
	found, err := s.client.SearchClusters(ctx, s.cfg.PageSize)
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("listing Palette clusters: %w", cmpOr(ctx.Err(), err))
	}
	if err != nil {
		s.log().Warn("could not search clusters for their projects; using the clusters' projectUid annotations", "error", err)
	}
	for _, f := range found {
		if p := f.Project(); p.UID != "" && f.Metadata.UID != "" {
			out[f.Metadata.UID] = p
		}
	}
	unnamed := false
	for _, m := range metas {
		p := out[m.Metadata.UID]
		if p.UID == "" {
			p.UID = m.Metadata.Annotations["projectUid"]
		}
		if p.UID != "" && m.Scope() == ScopeProject {
			out[m.Metadata.UID] = p
			unnamed = unnamed || p.Name == ""
		}
	}
	if !unnamed {
		return out, nil
	}
	names, err := s.client.ProjectNames(ctx)
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("listing Palette clusters: %w", cmpOr(ctx.Err(), err))
	}
	if err != nil {
		s.log().Warn("could not read the projects' names; a project filter by name cannot match them", "error", err)
	}
	for uid, p := range out {
		if p.Name == "" {
			p.Name = names[p.UID]
			out[uid] = p
		}
	}
	return out, nil
}

// filter applies the state, the scope options and the project lists.
func (s *Source) filter(metas []ClusterMeta, projects map[string]ProjectMeta, opts Options) []candidate {
	filtering := len(opts.IncludeProjects) > 0 || len(opts.ExcludeProjects) > 0
	var out []candidate
	for _, m := range metas {
		name := m.Metadata.Name
		if m.Metadata.UID == "" || name == "" {
			s.log().Warn("Palette listed a cluster without uid or name; skipping it")
			continue
		}
		if st := strings.ToLower(m.State()); st == "deleting" || st == "deleted" {
			continue
		}
		c := candidate{meta: m}
		switch m.Scope() {
		case ScopeTenant:
			if opts.TenantClusters {
				out = append(out, c)
			}
			continue
		case ScopeSystem:
			if opts.SystemClusters {
				out = append(out, c)
			} else {
				s.log().Debug("skipping a system-scoped cluster (systemClusters is false)", "cluster", name)
			}
			continue
		case ScopeProject:
		default:
			s.log().Warn("skipping a cluster of an unknown scope", "cluster", name, "scope", clean(m.Scope()))
			continue
		}
		c.project = projects[m.Metadata.UID]
		if filtering {
			if c.project.UID == "" {
				s.log().Warn("project cluster whose project Palette does not say; leaving it out because a project filter is set", "cluster", name)
				continue
			}
			if !selected(c.project, opts) {
				continue
			}
		}
		out = append(out, c)
	}
	return out
}

// selected applies includeProjects and excludeProjects (names or uids;
// exclude wins).
func selected(p ProjectMeta, opts Options) bool {
	match := func(list []string) bool {
		return slices.ContainsFunc(list, func(x string) bool { return x == p.UID || (p.Name != "" && strings.EqualFold(x, p.Name)) })
	}
	if match(opts.ExcludeProjects) {
		return false
	}
	return len(opts.IncludeProjects) == 0 || match(opts.IncludeProjects)
}

// read gets each candidate's kubeconfig, from the cache when the cluster has
// not changed since and the reading is not older than kubeconfigMaxAge,
// otherwise from Palette, a few at a time (the client paces them). Reading
// stops a little before ctx's deadline so that the listing can answer in
// time: what is left is deferred to the next listing (listed from the
// cache, marked stale, when it was read before).
func (s *Source) read(ctx context.Context, candidates []candidate, opts Options) []outcome {
	rctx, cancel := readContext(ctx)
	defer cancel()
	out := make([]outcome, len(candidates))
	sem := make(chan struct{}, kubeconfigConcurrency)
	var wg sync.WaitGroup
	for i, c := range candidates {
		uid := c.meta.Metadata.UID
		s.mu.Lock()
		e := s.cache[uid]
		s.mu.Unlock()
		if e != nil && e.modified == c.meta.Metadata.LastModifiedTimestamp && s.now().Sub(e.fetched) < s.cfg.KubeconfigMaxAge {
			out[i] = outcome{ep: e.ep, noOIDC: e.ep == nil}
			continue
		}
		if rctx.Err() == nil {
			select {
			case sem <- struct{}{}:
			case <-rctx.Done():
			}
		}
		if rctx.Err() != nil {
			out[i] = deferred(e)
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			start := time.Now()
			o := s.fetch(rctx, c, opts)
			// Out of the listing's time, not of clusterTimeout: the rate
			// limit or the request would have ended after rctx's deadline.
			rdl, ok := rctx.Deadline()
			late := rctx.Err() != nil || (errors.Is(o.err, context.DeadlineExceeded) && ok && rdl.Before(start.Add(opts.ClusterTimeout)))
			s.mu.Lock()
			defer s.mu.Unlock()
			switch {
			case o.err == nil && (o.ep != nil || o.noOIDC):
				s.cache[uid] = &cacheEntry{modified: c.meta.Metadata.LastModifiedTimestamp, fetched: s.now(), ep: o.ep}
			case o.err != nil && late:
				o = deferred(e)
				o.fetched = true
			case o.err != nil && IsTransient(o.err) && e != nil && e.ep != nil:
				o.ep, o.stale = e.ep, e.fetched
			default:
				delete(s.cache, uid)
			}
			out[i] = o
		})
	}
	wg.Wait()
	return out
}

// deferred is the outcome of a cluster whose kubeconfig was not read in
// time: its earlier reading, marked stale, if any.
func deferred(e *cacheEntry) outcome {
	o := outcome{deferred: true}
	if e != nil {
		o.ep, o.noOIDC = e.ep, e.ep == nil
		if e.ep != nil {
			o.stale = e.fetched
		}
	}
	return o
}

// readContext ends a little before ctx's deadline (a tenth of the time
// left, at most 3s), leaving the listing time to answer.
func readContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	margin := min(time.Until(dl)/10, 3*time.Second)
	return context.WithDeadline(ctx, dl.Add(-margin))
}

// fetch reads one cluster's kubeconfig, bounded by clusterTimeout.
func (s *Source) fetch(ctx context.Context, c candidate, opts Options) outcome {
	m := c.meta
	cctx, cancel := context.WithTimeout(ctx, opts.ClusterTimeout)
	defer cancel()
	raw, err := s.client.Kubeconfig(cctx, m.Metadata.UID, c.project.UID, s.cfg.UseSpectroProxy)
	var ae *APIError
	switch {
	case errors.As(err, &ae) && ae.NotFound():
		s.log().Debug("the cluster has no OIDC kubeconfig; skipping it", "cluster", m.Metadata.Name, "uid", m.Metadata.UID)
		return outcome{noOIDC: true, fetched: true}
	case err != nil:
		if cctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (clusterTimeout %s)", err, opts.ClusterTimeout)
		}
		return outcome{err: fmt.Errorf("cluster %s: %w", m.Metadata.Name, err), fetched: true}
	}
	if len(strings.TrimSpace(string(raw))) == 0 {
		s.log().Debug("the cluster's kubeconfig is empty (no OIDC); skipping it", "cluster", m.Metadata.Name, "uid", m.Metadata.UID)
		return outcome{noOIDC: true, fetched: true}
	}
	ep, err := parseKubeconfig(raw)
	if err != nil {
		s.log().Warn("unusable kubeconfig; leaving the cluster out", "cluster", m.Metadata.Name, "uid", m.Metadata.UID, "error", err)
		return outcome{excluded: true, fetched: true}
	}
	if ep.Insecure {
		s.log().Warn("the cluster's kubeconfig asks to skip TLS verification; spectroauth verifies it anyway", "cluster", m.Metadata.Name)
	}
	return outcome{ep: &ep, fetched: true}
}

// build turns the outcomes into clusters with unique names, sorted, counts
// them in st, and returns the
// first failure to read a kubeconfig that left a cluster out.
func (s *Source) build(candidates []candidate, outcomes []outcome, opts Options, st *Stats) ([]sdk.Cluster, error) {
	var firstErr error
	results := make([]*sdk.Cluster, len(candidates))
	for i, c := range candidates {
		o, m := outcomes[i], c.meta
		if o.fetched {
			st.Fetched++
		} else if o.err == nil && !o.excluded {
			st.Cached++
		}
		switch {
		case o.noOIDC:
			st.WithoutOIDC++
			continue
		case o.deferred && o.ep == nil:
			st.Deferred++
			continue
		case o.ep == nil && o.err != nil:
			st.Failed++
			firstErr = cmpOr(firstErr, o.err)
			s.log().Warn("could not read a cluster's kubeconfig; leaving it out of this listing", "cluster", m.Metadata.Name, "uid", m.Metadata.UID, "error", o.err)
			continue
		case o.ep == nil:
			continue
		}
		if !o.stale.IsZero() {
			st.Stale++
			s.log().Warn("could not refresh a cluster's kubeconfig; listing it from the last reading, marked stale", "cluster", m.Metadata.Name, "read_at", o.stale, "error", o.err)
		}
		results[i] = s.cluster(c, *o.ep, o.stale, opts)
	}
	out := uniqueNames(results, s.log())
	st.Listed = len(out)
	projects := map[string]bool{}
	for _, c := range out {
		if p := c.Annotations[AnnotationProjectUID]; p != "" {
			projects[p] = true
		}
	}
	st.Projects = len(projects)
	return out, firstErr
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// uniqueNames makes names unique, drops invalid clusters and sorts by name.
// A name shared by clusters of different projects gets the start of each
// one's uid. Palette's uids are object ids that start with their creation
// time in seconds, so two clusters created in the same second share that
// start; and a qualified name may be another cluster's own name: those get
// the whole uid.
func uniqueNames(results []*sdk.Cluster, log hclog.Logger) []sdk.Cluster {
	count := map[string]int{}
	for _, r := range results {
		if r != nil {
			count[r.Name]++
		}
	}
	qualified := map[*sdk.Cluster]string{} // the cluster's own name
	for _, r := range results {
		if r != nil && count[r.Name] > 1 {
			uid := r.Annotations[AnnotationClusterUID]
			qualified[r] = r.Name
			r.Name = r.Name + "-" + uid[:min(8, len(uid))]
		}
	}
	final := map[string]int{}
	for _, r := range results {
		if r != nil {
			final[r.Name]++
		}
	}
	for r, name := range qualified {
		if final[r.Name] > 1 {
			r.Name = name + "-" + r.Annotations[AnnotationClusterUID]
		}
	}
	seen := map[string]bool{}
	var out []sdk.Cluster
	for _, r := range results {
		if r == nil {
			continue
		}
		if err := r.Validate(); err != nil {
			log.Warn("leaving out a cluster Palette describes in a way spectroauth cannot use", "error", err)
			continue
		}
		if seen[r.Name] {
			log.Warn("leaving out a cluster whose name and uid another cluster has too", "cluster", r.Name)
			continue
		}
		seen[r.Name] = true
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b sdk.Cluster) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// cluster describes one cluster from its listing and its kubeconfig.
func (s *Source) cluster(c candidate, ep endpoint, stale time.Time, opts Options) *sdk.Cluster {
	m := c.meta
	scope := m.Scope()
	out := &sdk.Cluster{
		Name:        m.Metadata.Name,
		Server:      ep.Server,
		CAData:      ep.CAData,
		Strategy:    opts.Strategy,
		Title:       m.Metadata.Name,
		Labels:      map[string]string{LabelScope: scope},
		Annotations: map[string]string{AnnotationClusterUID: m.Metadata.UID},
	}
	if ct := m.CloudType(); ct != "" {
		out.Annotations[AnnotationCloudType] = ct
	}
	switch {
	case scope == ScopeProject && c.project.Name != "":
		out.Labels[LabelProject] = c.project.Name
		out.Description = "Palette cluster in project " + c.project.Name
	case scope == ScopeTenant:
		out.Description = "Palette tenant cluster"
	case scope == ScopeSystem:
		out.Description = "Palette system cluster"
	}
	if scope == ScopeProject && c.project.UID != "" {
		out.Annotations[AnnotationProjectUID] = c.project.UID
	}
	if ep.ClientID != "" {
		out.Annotations[AnnotationClientID] = ep.ClientID
	}
	if ep.Issuer != "" {
		out.Annotations[AnnotationIssuer] = ep.Issuer
	}
	if !stale.IsZero() {
		out.Annotations[AnnotationStale] = stale.UTC().Format(time.RFC3339)
	}
	return out
}
