package palette

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Body bounds.
const (
	maxListBody   = 16 << 20
	maxSmallBody  = 1 << 20
	maxPagesGuard = 10000
	// MaxPageSize is the largest limit Palette accepts on a paginated list.
	MaxPageSize = 50
)

// Limits are the request rates the client keeps to. SpectroCloud limits
// each source address to 10 requests/s with a burst of 5 on
// /v1/spectroclusters/:uid/assets and to 10 requests/s on /v1/dashboard and
// /v1/projects, and answers 429 past that; the defaults stay under both.
type Limits struct {
	// Assets paces /v1/spectroclusters/{uid}/assets/*.
	Assets rate.Limit
	// AssetsBurst is the burst allowed on Assets.
	AssetsBurst int
	// API paces /v1/dashboard and /v1/projects.
	API rate.Limit
	// APIBurst is the burst allowed on API.
	APIBurst int
}

// DefaultLimits stay just under SpectroCloud's documented limits.
var DefaultLimits = Limits{Assets: 9, AssetsBurst: 4, API: 9, APIBurst: 4}

// Retry bounds the retries of a request Palette answered with 429 or a 5xx
// (or that failed on the network).
type Retry struct {
	// Attempts is the number of tries in all (at least 1).
	Attempts int
	// Base is the first backoff; it doubles each time, with jitter.
	Base time.Duration
	// Max caps a backoff and a Retry-After.
	Max time.Duration
}

// DefaultRetry tries a request four times over a few seconds.
var DefaultRetry = Retry{Attempts: 4, Base: 500 * time.Millisecond, Max: 10 * time.Second}

// Client is a small typed client of the Palette REST API, authenticated with
// an API key, pacing its requests under Palette's rate limits.
type Client struct {
	base           *url.URL
	apiKey         string
	http           *http.Client
	requestTimeout time.Duration
	assets, api    *rate.Limiter
	retry          Retry
	requests       atomic.Int64
}

// NewClient returns a client for cfg. TLS is verified with cfg's CA or the
// system roots; redirects are not followed (they would carry the API key
// elsewhere).
func NewClient(cfg Config) *Client {
	lim := cfg.Limits
	if lim == (Limits{}) {
		lim = DefaultLimits
	}
	retry := cfg.Retry
	if retry.Attempts < 1 {
		retry = DefaultRetry
	}
	return &Client{
		base:           cfg.BaseURL,
		apiKey:         cfg.APIKey,
		requestTimeout: cfg.RequestTimeout,
		assets:         rate.NewLimiter(lim.Assets, max(1, lim.AssetsBurst)),
		api:            rate.NewLimiter(lim.API, max(1, lim.APIBurst)),
		retry:          retry,
		http: &http.Client{
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				TLSClientConfig:     cfg.tlsConfig(),
				TLSHandshakeTimeout: cfg.RequestTimeout,
				MaxIdleConnsPerHost: 8,
				IdleConnTimeout:     90 * time.Second,
				ForceAttemptHTTP2:   true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Requests is how many HTTP requests the client has sent, retries included.
func (c *Client) Requests() int64 { return c.requests.Load() }

// ObjectMeta is Palette's v1ObjectMeta, as far as the source reads it.
type ObjectMeta struct {
	// UID identifies the object.
	UID string `json:"uid"`
	// Name is its name.
	Name string `json:"name"`
	// Annotations hold, for clusters, scope (project, tenant or system) and,
	// undocumented, projectUid.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Labels are the object's labels.
	Labels map[string]string `json:"labels,omitempty"`
	// LastModifiedTimestamp changes when the object does (RFC 3339).
	LastModifiedTimestamp string `json:"lastModifiedTimestamp,omitempty"`
}

// ProjectMeta is Palette's v1ProjectMeta: a project named inside another
// object.
type ProjectMeta struct {
	// UID identifies the project.
	UID string `json:"uid"`
	// Name is the project's name.
	Name string `json:"name"`
}

// ClusterMeta is v1SpectroClusterMeta, one item of GET
// /v1/dashboard/spectroclusters/meta. It names no project.
type ClusterMeta struct {
	// Metadata names the cluster and holds its scope.
	Metadata ObjectMeta `json:"metadata"`
	// Spec holds the cloud type.
	Spec *struct {
		CloudType string `json:"cloudType,omitempty"`
	} `json:"spec,omitempty"`
	// Status holds the cluster's state (Running, Deleting, ...).
	Status *struct {
		State string `json:"state,omitempty"`
	} `json:"status,omitempty"`
}

// Cluster scopes (metadata.annotations.scope).
const (
	ScopeProject = "project"
	ScopeTenant  = "tenant"
	ScopeSystem  = "system"
)

// Scope is metadata.annotations.scope, lower-cased; project when absent.
func (c ClusterMeta) Scope() string {
	if s := strings.ToLower(c.Metadata.Annotations["scope"]); s != "" {
		return s
	}
	return ScopeProject
}

// CloudType is spec.cloudType, "" when absent.
func (c ClusterMeta) CloudType() string {
	if c.Spec == nil {
		return ""
	}
	return c.Spec.CloudType
}

// State is status.state, "" when absent.
func (c ClusterMeta) State() string {
	if c.Status == nil {
		return ""
	}
	return c.Status.State
}

// ClusterSummary is v1SpectroClusterSummary, an item of POST
// /v1/dashboard/spectroclusters/search, as far as the source reads it: the
// documented place of a cluster's project.
type ClusterSummary struct {
	// Metadata names the cluster.
	Metadata ObjectMeta `json:"metadata"`
	// SpecSummary holds the cluster's project.
	SpecSummary *struct {
		ProjectMeta *ProjectMeta `json:"projectMeta,omitempty"`
	} `json:"specSummary,omitempty"`
}

// Project is specSummary.projectMeta, zero when absent.
func (c ClusterSummary) Project() ProjectMeta {
	if c.SpecSummary == nil || c.SpecSummary.ProjectMeta == nil {
		return ProjectMeta{}
	}
	return *c.SpecSummary.ProjectMeta
}

// listMeta is v1ListMetaData. Offset is the next offset, not this page's.
type listMeta struct {
	Continue string `json:"continue"`
	Count    int    `json:"count"`
	Limit    int    `json:"limit"`
	Offset   int    `json:"offset"`
}

// APIError is an error answer of the Palette API (a v1Error body when it
// has one).
type APIError struct {
	// Op says what was being done.
	Op string
	// Status is the HTTP status.
	Status int
	// Code and Message are from Palette's error body, when it has one.
	Code, Message string
	// RetryAfter is the answer's Retry-After, 0 when absent.
	RetryAfter time.Duration
}

// Error says what was being done and what Palette answered.
func (e *APIError) Error() string {
	msg := fmt.Sprintf("%s: Palette answered %d %s", e.Op, e.Status, http.StatusText(e.Status))
	if e.Code != "" || e.Message != "" {
		msg += " (" + clean(strings.TrimSpace(e.Code+" "+e.Message)) + ")"
	}
	return msg
}

// Unauthorized reports whether Palette refused the API key.
func (e *APIError) Unauthorized() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
}

// NotFound reports whether the object does not exist, which for a
// cluster's kubeconfig means the cluster has no OIDC kubeconfig.
func (e *APIError) NotFound() bool {
	return e.Status == http.StatusNotFound || e.Status == http.StatusGone
}

// Transient reports whether the same request may succeed later: Palette was
// busy (429) or failing (5xx).
func (e *APIError) Transient() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// IsTransient reports whether err is worth retrying later: a 429 or 5xx
// answer, a timeout or a network failure, but not the caller's own
// cancellation.
func IsTransient(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Transient()
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF)
}

// ListClusters is GET /v1/dashboard/spectroclusters/meta: every cluster the
// key may see, in one bare array (the operation takes no parameters).
func (c *Client) ListClusters(ctx context.Context) ([]ClusterMeta, error) {
	body, err := c.do(ctx, request{op: "listing clusters", method: http.MethodGet,
		path: "/v1/dashboard/spectroclusters/meta", limit: maxListBody, limiter: c.api})
	if err != nil {
		return nil, err
	}
	var items []ClusterMeta
	if err := json.Unmarshal(body, &items); err != nil {
		return nil, fmt.Errorf("listing clusters: the answer is not a list of clusters: %w", err)
	}
	return items, nil
}

// searchSpec is the v1SearchFilterSummarySpec the client sends: no filter,
// sorted by name so that pages are stable.
var searchSpec = []byte(`{"sort":[{"field":"clusterName","order":"asc"}]}`)

// SearchClusters is POST /v1/dashboard/spectroclusters/search, every page
// of pageSize (at most 50): the clusters with their project.
func (c *Client) SearchClusters(ctx context.Context, pageSize int) ([]ClusterSummary, error) {
	pageSize = min(max(pageSize, 1), MaxPageSize)
	var all []ClusterSummary
	seen := map[string]bool{}
	q := url.Values{"limit": {strconv.Itoa(pageSize)}}
	for page := 0; ; page++ {
		if page >= maxPagesGuard {
			return nil, fmt.Errorf("searching clusters: more than %d pages", maxPagesGuard)
		}
		body, err := c.do(ctx, request{op: "searching clusters", method: http.MethodPost,
			path: "/v1/dashboard/spectroclusters/search", query: q, body: searchSpec, limit: maxListBody, limiter: c.api})
		if err != nil {
			return nil, err
		}
		var res struct {
			Items    []ClusterSummary `json:"items"`
			ListMeta *listMeta        `json:"listmeta"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			return nil, fmt.Errorf("searching clusters: the answer is not a cluster summary list: %w", err)
		}
		all = append(all, res.Items...)
		if res.ListMeta == nil || res.ListMeta.Continue == "" || len(res.Items) == 0 {
			return all, nil
		}
		if seen[res.ListMeta.Continue] {
			return nil, errors.New("searching clusters: Palette repeated a continue token")
		}
		seen[res.ListMeta.Continue] = true
		// listmeta.offset is where the next page starts.
		q = url.Values{"limit": {strconv.Itoa(pageSize)}, "continue": {res.ListMeta.Continue}}
		if res.ListMeta.Offset > 0 {
			q.Set("offset", strconv.Itoa(res.ListMeta.Offset))
		}
	}
}

// ProjectNames is GET /v1/dashboard/projects/metadata: the name of every
// project the key may see, by uid.
func (c *Client) ProjectNames(ctx context.Context) (map[string]string, error) {
	body, err := c.do(ctx, request{op: "listing projects", method: http.MethodGet,
		path: "/v1/dashboard/projects/metadata", limit: maxListBody, limiter: c.api})
	if err != nil {
		return nil, err
	}
	var res struct {
		Items []struct {
			Metadata *ProjectMeta `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("listing projects: the answer is not a project list: %w", err)
	}
	out := map[string]string{}
	for _, it := range res.Items {
		if it.Metadata != nil && it.Metadata.UID != "" {
			out[it.Metadata.UID] = it.Metadata.Name
		}
	}
	return out, nil
}

// Kubeconfig returns a cluster's user kubeconfig (the one with its OIDC
// settings), through Spectro Proxy when frp. It is text, or base64 of it.
// A cluster without OIDC has none: that is an *APIError whose NotFound is
// true.
func (c *Client) Kubeconfig(ctx context.Context, clusterUID, projectUID string, frp bool) ([]byte, error) {
	return c.do(ctx, request{op: "reading the kubeconfig of cluster " + clusterUID, method: http.MethodGet,
		path:  "/v1/spectroclusters/" + url.PathEscape(clusterUID) + "/assets/kubeconfig",
		query: url.Values{"frp": {strconv.FormatBool(frp)}}, project: projectUID,
		accept: "application/octet-stream", limit: maxSmallBody, limiter: c.assets})
}

// request is one call of the API.
type request struct {
	op, method, path string
	query            url.Values
	body             []byte
	project, accept  string
	limit            int64
	limiter          *rate.Limiter
}

// do makes a request, paced by its limiter, retrying 429 and 5xx answers
// and network failures with backoff (honouring Retry-After) a bounded
// number of times within ctx.
func (c *Client) do(ctx context.Context, r request) ([]byte, error) {
	var lastErr error
	for attempt := 0; attempt < c.retry.Attempts; attempt++ {
		if attempt > 0 {
			wait := c.backoff(attempt, lastErr)
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
				return nil, lastErr
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, lastErr
			case <-t.C:
			}
		}
		if err := r.limiter.Wait(ctx); err != nil {
			if lastErr != nil {
				return nil, lastErr
			}
			// The rate limit lets the request go only after ctx's deadline.
			return nil, fmt.Errorf("%s: waiting for the rate limit: %w", r.op, cmpOr(ctx.Err(), context.DeadlineExceeded))
		}
		body, err := c.once(ctx, r)
		if err == nil || !IsTransient(err) || ctx.Err() != nil {
			return body, err
		}
		lastErr = err
	}
	return nil, lastErr
}

// backoff is the wait before a retry: Retry-After when Palette sent one,
// otherwise base * 2^(attempt-1) with jitter; capped by Max.
func (c *Client) backoff(attempt int, err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		return min(ae.RetryAfter, c.retry.Max)
	}
	d := c.retry.Base << (attempt - 1)
	d += rand.N(d/2 + 1)
	return min(d, c.retry.Max)
}

// once makes one authenticated request, bounded in time (the request
// timeout, within ctx) and size.
func (c *Client) once(ctx context.Context, r request) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.requestTimeout)
	defer cancel()
	u := *c.base
	u.Path = c.base.Path + r.path
	u.RawQuery = r.query.Encode()
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.op, err)
	}
	req.Header.Set("ApiKey", c.apiKey)
	accept := r.accept
	if accept == "" {
		accept = "application/json"
	}
	req.Header.Set("Accept", accept)
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.project != "" {
		req.Header.Set("ProjectUid", r.project)
	}
	c.requests.Add(1)
	res, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s: %w", r.op, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, r.limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: reading the answer: %w", r.op, err)
	}
	if int64(len(data)) > r.limit {
		return nil, fmt.Errorf("%s: the answer is larger than %d bytes", r.op, r.limit)
	}
	if res.StatusCode != http.StatusOK {
		ae := &APIError{Op: r.op, Status: res.StatusCode, RetryAfter: retryAfter(res.Header.Get("Retry-After"), time.Now())}
		var eb struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &eb) == nil {
			ae.Code, ae.Message = eb.Code, eb.Message
		}
		return nil, ae
	}
	return data, nil
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// clean keeps a Palette-supplied string short and printable.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
