package palette

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

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
	LabelScope         = "spectrocloud.com/scope"
	LabelProject       = "spectrocloud.com/project"
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
	s.cfg, s.client = c, NewClient(c)
	return nil
}

// ValidateOptions implements sdk.OptionsValidator.
func (s *Source) ValidateOptions(_ context.Context, req sdk.ValidateOptionsRequest) error {
	_, err := ParseOptions(req.Options)
	return err
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

// ListClusters implements sdk.ClusterSource: list every page, filter by
// scope and project, then read each cluster's kubeconfig (a few at a time,
// each bounded by clusterTimeout; a cluster that fails is left out and
// logged, so one broken cluster does not hide the others).
func (s *Source) ListClusters(ctx context.Context, req sdk.ListClustersRequest) ([]sdk.Cluster, error) {
	if s.client == nil {
		return nil, sdk.ConfigErrorf("", "the plugin is not configured")
	}
	opts, err := ParseOptions(req.Options)
	if err != nil {
		return nil, err
	}
	metas, err := s.client.ListClusters(ctx, s.cfg.PageSize)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Unauthorized() {
			return nil, sdk.ConfigErrorf("apiKey", "Palette refused the API key: %v", err)
		}
		return nil, err
	}
	candidates, err := s.filter(ctx, metas, opts)
	if err != nil {
		return nil, err
	}
	clusters, readErr := s.resolve(ctx, candidates, opts)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("listing Palette clusters: %w", err)
	}
	if len(clusters) == 0 && readErr != nil {
		// Not a tenant without clusters: Palette could not say where they
		// are. The daemon keeps its last good list on an error.
		return nil, fmt.Errorf("listing Palette clusters: the kubeconfig of none of the %d clusters could be read; the first failure: %w", len(candidates), readErr)
	}
	return clusters, nil
}

// filter applies tenantClusters and the project lists. Project names are
// read once per project, and only when a filter needs them.
func (s *Source) filter(ctx context.Context, metas []ClusterMeta, opts Options) ([]candidate, error) {
	filtering := len(opts.IncludeProjects) > 0 || len(opts.ExcludeProjects) > 0
	names := map[string]string{}
	var out []candidate
	for _, m := range metas {
		if m.Metadata.UID == "" || m.Metadata.Name == "" {
			s.log().Warn("Palette listed a cluster without uid or name; skipping it")
			continue
		}
		if st := strings.ToLower(m.State()); st == "deleting" || st == "deleted" {
			continue
		}
		c := candidate{meta: m, project: m.Project()}
		if m.Scope() == "tenant" {
			if opts.TenantClusters {
				out = append(out, c)
			}
			continue
		}
		if filtering {
			if c.project.UID == "" {
				s.log().Warn("project cluster without a project uid; leaving it out because a project filter is set", "cluster", m.Metadata.Name)
				continue
			}
			if c.project.Name == "" {
				name, ok := names[c.project.UID]
				if !ok {
					p, err := s.client.Project(ctx, c.project.UID)
					if err != nil {
						if ctx.Err() != nil {
							return nil, fmt.Errorf("listing Palette clusters: %w", ctx.Err())
						}
						s.log().Warn("could not read a project; leaving its clusters out", "project", c.project.UID, "error", err)
					}
					name = p.Metadata.Name
					names[c.project.UID] = name
				}
				if name == "" {
					continue
				}
				c.project.Name = name
			}
			if !selected(c.project, opts) {
				continue
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// selected applies includeProjects and excludeProjects (names or uids;
// exclude wins).
func selected(p ProjectMeta, opts Options) bool {
	match := func(list []string) bool {
		return slices.ContainsFunc(list, func(x string) bool { return x == p.UID || strings.EqualFold(x, p.Name) })
	}
	if match(opts.ExcludeProjects) {
		return false
	}
	return len(opts.IncludeProjects) == 0 || match(opts.IncludeProjects)
}

// resolve reads the kubeconfigs and builds the clusters, sorted by name. It
// also returns the first failure to read a kubeconfig, if any.
func (s *Source) resolve(ctx context.Context, candidates []candidate, opts Options) ([]sdk.Cluster, error) {
	results := make([]*sdk.Cluster, len(candidates))
	errs := make([]error, len(candidates))
	sem := make(chan struct{}, kubeconfigConcurrency)
	var wg sync.WaitGroup
	for i, c := range candidates {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i], errs[i] = s.cluster(ctx, c, opts)
		})
	}
	wg.Wait()

	// Names must be unique: a name shared by clusters of different
	// projects gets the start of each one's uid. Palette's uids are object
	// ids that start with their creation time in seconds, so two clusters
	// created in the same second share that start; and a qualified name may
	// be another cluster's own name: those get the whole uid.
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
			s.log().Warn("leaving out a cluster Palette describes in a way spectroauth cannot use", "error", err)
			continue
		}
		if seen[r.Name] {
			s.log().Warn("leaving out a cluster whose name and uid another cluster has too", "cluster", r.Name)
			continue
		}
		seen[r.Name] = true
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b sdk.Cluster) int { return strings.Compare(a.Name, b.Name) })
	for _, err := range errs {
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// cluster reads one cluster's kubeconfig; nil when it cannot be used, with
// the error (already logged) when it could not be read.
func (s *Source) cluster(ctx context.Context, c candidate, opts Options) (*sdk.Cluster, error) {
	m := c.meta
	cctx, cancel := context.WithTimeout(ctx, opts.ClusterTimeout)
	defer cancel()
	projectUID := ""
	if m.Scope() != "tenant" {
		projectUID = c.project.UID
	}
	raw, err := s.client.Kubeconfig(cctx, m.Metadata.UID, projectUID, s.cfg.UseSpectroProxy)
	if err != nil {
		if ctx.Err() == nil {
			s.log().Warn("could not read a cluster's kubeconfig; leaving it out of this listing", "cluster", m.Metadata.Name, "uid", m.Metadata.UID, "error", err)
		}
		return nil, fmt.Errorf("cluster %s: %w", m.Metadata.Name, err)
	}
	ep, err := parseKubeconfig(raw)
	if err != nil {
		s.log().Warn("unusable kubeconfig; leaving the cluster out", "cluster", m.Metadata.Name, "uid", m.Metadata.UID, "error", err)
		return nil, nil
	}
	if ep.Insecure {
		s.log().Warn("the cluster's kubeconfig asks to skip TLS verification; spectroauth verifies it anyway", "cluster", m.Metadata.Name)
	}
	out := &sdk.Cluster{
		Name:        m.Metadata.Name,
		Server:      ep.Server,
		CAData:      ep.CAData,
		Strategy:    opts.Strategy,
		Title:       m.Metadata.Name,
		Labels:      map[string]string{LabelScope: m.Scope()},
		Annotations: map[string]string{AnnotationClusterUID: m.Metadata.UID},
	}
	if c.project.UID != "" && m.Scope() != "tenant" {
		out.Annotations[AnnotationProjectUID] = c.project.UID
	}
	if c.project.Name != "" && m.Scope() != "tenant" {
		out.Labels[LabelProject] = c.project.Name
		out.Description = "Palette cluster in project " + c.project.Name
	} else if m.Scope() == "tenant" {
		out.Description = "Palette tenant cluster"
	}
	if ep.ClientID != "" {
		out.Annotations[AnnotationClientID] = ep.ClientID
	}
	if ep.Issuer != "" {
		out.Annotations[AnnotationIssuer] = ep.Issuer
	}
	return out, nil
}
