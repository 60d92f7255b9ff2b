// Package palette is the palette-clusters plugin: a cluster source that
// lists the clusters of a SpectroCloud Palette tenant through Palette's REST
// API and reads each one's API server endpoint and CA certificate from its
// user kubeconfig (the one that holds the cluster's OIDC settings). TLS is
// always verified: Palette's API with the system roots or a given CA, and
// the clusters' endpoints are reported with the CA from their kubeconfig.
//
// The plugin's config: block (once, at start):
//
//	url:             Palette's API base URL, https, e.g. https://api.spectrocloud.com. Required.
//	apiKey:          a Palette API key that may list clusters, e.g. ${PALETTE_API_KEY};
//	                 default: the plugin's PALETTE_API_KEY environment variable. Required.
//	caData / caFile: PEM certificates to trust for url instead of the system's.
//	requestTimeout:  bound on one request to Palette (default 15s, at most 1m).
//	pageSize:        clusters per page of the cluster search (default 50, 1 to 50).
//	kubeconfigMaxAge: how long a cluster's kubeconfig is reused while the cluster's
//	                 lastModifiedTimestamp stays the same (default 1h; 0 reads it
//	                 on every listing).
//	useSpectroProxy: ask for kubeconfigs that go through Spectro Proxy (frp=true;
//	                 default true); false asks for the direct endpoint.
//
// The source's options (kubernetes.sources[].options):
//
//	includeProjects: project names or uids whose clusters to list; default all.
//	excludeProjects: project names or uids to leave out (wins over include).
//	tenantClusters:  list tenant-scoped clusters too (default true).
//	systemClusters:  list system-scoped clusters (Palette's own) too (default false).
//	clusterTimeout:  bound on fetching one cluster's kubeconfig (default 10s); a
//	                 cluster that takes longer is left out of this listing.
//	strategy:        the strategy name to suggest for every discovered cluster.
package palette

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
)

// Defaults and bounds.
const (
	DefaultRequestTimeout = 15 * time.Second
	DefaultClusterTimeout = 10 * time.Second
	DefaultPageSize       = MaxPageSize
	DefaultKubeconfigAge  = time.Hour
	maxKubeconfigAge      = 7 * 24 * time.Hour
	maxRequestTimeout     = time.Minute
	maxClusterTimeout     = 24 * time.Hour
	// APIKeyEnv is read when config has no apiKey.
	APIKeyEnv = "PALETTE_API_KEY"
)

// Config is the checked config: block.
type Config struct {
	// BaseURL is Palette's API URL (https), without a trailing slash.
	BaseURL *url.URL
	// APIKey is sent as the ApiKey header; never printed.
	APIKey string
	// RootCAs, when set, are the only CAs trusted for BaseURL.
	RootCAs *x509.CertPool
	// RequestTimeout bounds one list or project request.
	RequestTimeout time.Duration
	// PageSize is the limit of each page of the cluster search.
	PageSize int
	// UseSpectroProxy asks for kubeconfigs through Spectro Proxy (frp=true).
	UseSpectroProxy bool
	// KubeconfigMaxAge bounds how long a kubeconfig is reused.
	KubeconfigMaxAge time.Duration
	// Limits pace the requests; zero means DefaultLimits. Not a config
	// key: SpectroCloud's limits are not the tenant's to choose.
	Limits Limits
	// Retry bounds retries; zero means DefaultRetry. Not a config key.
	Retry Retry
}

// String describes the configuration without the API key.
func (c Config) String() string {
	key := `""`
	if c.APIKey != "" {
		key = "[redacted]"
	}
	base := ""
	if c.BaseURL != nil {
		base = c.BaseURL.String()
	}
	return fmt.Sprintf("Config{URL:%s APIKey:%s CustomCA:%t RequestTimeout:%s PageSize:%d UseSpectroProxy:%t KubeconfigMaxAge:%s}",
		base, key, c.RootCAs != nil, c.RequestTimeout, c.PageSize, c.UseSpectroProxy, c.KubeconfigMaxAge)
}

// GoString is String, so %#v hides the key too.
func (c Config) GoString() string { return c.String() }

// ParseConfig checks a config: block; getenv reads PALETTE_API_KEY when
// apiKey is absent. Errors are *sdk.ConfigError naming the key.
func ParseConfig(v sdk.Options, getenv func(string) string) (Config, error) {
	var c Config
	if err := v.RejectUnknown("url", "apiKey", "caData", "caFile", "requestTimeout", "pageSize", "useSpectroProxy", "kubeconfigMaxAge"); err != nil {
		return c, err
	}
	raw, err := v.String("url")
	if err != nil {
		return c, err
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return c, sdk.ConfigErrorf("url", "must be Palette's https API URL without credentials, query or fragment, not %q", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	c.BaseURL = u
	if c.APIKey, err = v.StringOr("apiKey", ""); err != nil {
		return c, err
	}
	if !v.Has("apiKey") && getenv != nil {
		c.APIKey = getenv(APIKeyEnv)
	}
	if c.APIKey == "" {
		return c, sdk.ConfigErrorf("apiKey", "is required: a Palette API key, e.g. apiKey: ${PALETTE_API_KEY} (or the plugin's %s environment variable)", APIKeyEnv)
	}
	if strings.ContainsFunc(c.APIKey, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return c, sdk.ConfigErrorf("apiKey", "has spaces, line breaks or characters other than printable ASCII (is the variable it comes from quoted or followed by a newline?)")
	}
	if c.RootCAs, err = v.CertPool("caData", "caFile"); err != nil {
		return c, err
	}
	if c.RequestTimeout, err = v.Duration("requestTimeout", DefaultRequestTimeout); err != nil {
		return c, err
	}
	if c.RequestTimeout <= 0 || c.RequestTimeout > maxRequestTimeout {
		return c, sdk.ConfigErrorf("requestTimeout", "is %s, want more than 0 and at most %s", c.RequestTimeout, maxRequestTimeout)
	}
	if c.PageSize, err = v.Int("pageSize", DefaultPageSize); err != nil {
		return c, err
	}
	if c.PageSize < 1 || c.PageSize > MaxPageSize {
		return c, sdk.ConfigErrorf("pageSize", "is %d, want 1 to %d (Palette refuses larger pages)", c.PageSize, MaxPageSize)
	}
	if c.KubeconfigMaxAge, err = v.Duration("kubeconfigMaxAge", DefaultKubeconfigAge); err != nil {
		return c, err
	}
	if c.KubeconfigMaxAge < 0 || c.KubeconfigMaxAge > maxKubeconfigAge {
		return c, sdk.ConfigErrorf("kubeconfigMaxAge", "is %s, want 0 to %s", c.KubeconfigMaxAge, maxKubeconfigAge)
	}
	if c.UseSpectroProxy, err = v.Bool("useSpectroProxy", true); err != nil {
		return c, err
	}
	return c, nil
}

func (c Config) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.RootCAs}
}

// Options are the checked options of the source.
type Options struct {
	// IncludeProjects and ExcludeProjects are project names or uids;
	// exclude wins, an empty include means every project.
	IncludeProjects []string
	ExcludeProjects []string
	// TenantClusters lists tenant-scoped clusters too.
	TenantClusters bool
	// SystemClusters lists system-scoped clusters too.
	SystemClusters bool
	// ClusterTimeout bounds reading one cluster's kubeconfig.
	ClusterTimeout time.Duration
	// Strategy is the strategy name suggested for every cluster.
	Strategy string
}

// ParseOptions checks the source's options.
func ParseOptions(o sdk.Options) (Options, error) {
	var opts Options
	if err := o.RejectUnknown("includeProjects", "excludeProjects", "tenantClusters", "systemClusters", "clusterTimeout", "strategy"); err != nil {
		return opts, err
	}
	var err error
	if opts.IncludeProjects, err = o.Strings("includeProjects"); err != nil {
		return opts, err
	}
	if opts.ExcludeProjects, err = o.Strings("excludeProjects"); err != nil {
		return opts, err
	}
	if opts.TenantClusters, err = o.Bool("tenantClusters", true); err != nil {
		return opts, err
	}
	if opts.SystemClusters, err = o.Bool("systemClusters", false); err != nil {
		return opts, err
	}
	if opts.ClusterTimeout, err = o.Duration("clusterTimeout", DefaultClusterTimeout); err != nil {
		return opts, err
	}
	if opts.ClusterTimeout <= 0 || opts.ClusterTimeout > maxClusterTimeout {
		return opts, sdk.ConfigErrorf("clusterTimeout", "is %s, want more than 0 and at most %s", opts.ClusterTimeout, maxClusterTimeout)
	}
	if opts.Strategy, err = o.StringOr("strategy", ""); err != nil {
		return opts, err
	}
	if opts.Strategy != "" {
		probe := sdk.Cluster{Name: "probe", Server: "https://probe", Strategy: opts.Strategy}
		if probe.Validate() != nil {
			return opts, sdk.ConfigErrorf("strategy", "%q is not a strategy name", opts.Strategy)
		}
	}
	return opts, nil
}
