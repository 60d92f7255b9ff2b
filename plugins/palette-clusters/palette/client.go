package palette

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Body bounds.
const (
	maxListPage   = 16 << 20
	maxSmallBody  = 1 << 20
	maxPagesGuard = 10000
)

// Client is a small typed client of the Palette REST API, authenticated with
// an API key.
type Client struct {
	base           *url.URL
	apiKey         string
	http           *http.Client
	requestTimeout time.Duration
}

// NewClient returns a client for cfg. TLS is verified with cfg's CA or the
// system roots; redirects are not followed (they would carry the API key
// elsewhere).
func NewClient(cfg Config) *Client {
	return &Client{
		base:           cfg.BaseURL,
		apiKey:         cfg.APIKey,
		requestTimeout: cfg.RequestTimeout,
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

// ObjectMeta is Palette's metadata of an object.
type ObjectMeta struct {
	// UID identifies the object.
	UID string `json:"uid"`
	// Name is its name.
	Name string `json:"name"`
	// Annotations hold, for clusters, scope (project or tenant) and projectUid.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Labels are the object's labels.
	Labels map[string]string `json:"labels,omitempty"`
}

// ProjectMeta names a project inside another object.
type ProjectMeta struct {
	// UID identifies the project.
	UID string `json:"uid"`
	// Name is the project's name.
	Name string `json:"name"`
}

// ClusterMeta is one item of GET /v1/dashboard/spectroclusters/meta.
type ClusterMeta struct {
	// Metadata names the cluster and holds its scope and project.
	Metadata ObjectMeta `json:"metadata"`
	// SpecSummary may name the project (projectMeta).
	SpecSummary *struct {
		ProjectMeta *ProjectMeta `json:"projectMeta,omitempty"`
		CloudType   string       `json:"cloudType,omitempty"`
	} `json:"specSummary,omitempty"`
	// ProjectMeta may name the project too.
	ProjectMeta *ProjectMeta `json:"projectMeta,omitempty"`
	// Status holds the cluster's state (Running, Deleting, ...).
	Status *struct {
		State string `json:"state,omitempty"`
	} `json:"status,omitempty"`
}

// Scope is "project" or "tenant" (metadata.annotations.scope; project when absent).
func (c ClusterMeta) Scope() string {
	if s := c.Metadata.Annotations["scope"]; s != "" {
		return s
	}
	return "project"
}

// Project is the cluster's project, as far as the item says.
func (c ClusterMeta) Project() ProjectMeta {
	p := ProjectMeta{UID: c.Metadata.Annotations["projectUid"]}
	for _, m := range []*ProjectMeta{c.ProjectMeta, func() *ProjectMeta {
		if c.SpecSummary != nil {
			return c.SpecSummary.ProjectMeta
		}
		return nil
	}()} {
		if m == nil {
			continue
		}
		if p.UID == "" {
			p.UID = m.UID
		}
		if p.Name == "" && (m.UID == "" || m.UID == p.UID) {
			p.Name = m.Name
		}
	}
	return p
}

// State is status.state, "" when absent.
func (c ClusterMeta) State() string {
	if c.Status == nil {
		return ""
	}
	return c.Status.State
}

// listMeta is Palette's pagination metadata.
type listMeta struct {
	Continue string `json:"continue"`
	Count    int    `json:"count"`
	Limit    int    `json:"limit"`
	Offset   int    `json:"offset"`
}

// clusterPage is one page of the cluster list, in its object form.
type clusterPage struct {
	Items    []ClusterMeta `json:"items"`
	ListMeta *listMeta     `json:"listmeta"`
}

// APIError is an error answer of the Palette API.
type APIError struct {
	// Op says what was being done.
	Op string
	// Status is the HTTP status.
	Status int
	// Code and Message are from Palette's error body, when it has one.
	Code, Message string
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

// ListClusters returns every cluster of the tenant the key may see, all pages.
func (c *Client) ListClusters(ctx context.Context, pageSize int) ([]ClusterMeta, error) {
	var all []ClusterMeta
	cont, offset := "", 0
	seen := map[string]bool{}
	for page := 0; ; page++ {
		if page >= maxPagesGuard {
			return nil, fmt.Errorf("listing clusters: more than %d pages", maxPagesGuard)
		}
		q := url.Values{"limit": {strconv.Itoa(pageSize)}}
		if cont != "" {
			q.Set("continue", cont)
		} else if offset > 0 {
			q.Set("offset", strconv.Itoa(offset))
		}
		body, err := c.get(ctx, "listing clusters", "/v1/dashboard/spectroclusters/meta", q, "", maxListPage)
		if err != nil {
			return nil, err
		}
		items, meta, err := decodeClusterPage(body)
		if err != nil {
			return nil, fmt.Errorf("listing clusters: %w", err)
		}
		all = append(all, items...)
		switch {
		case meta == nil || len(items) == 0:
			return all, nil
		case meta.Continue != "":
			if seen[meta.Continue] {
				return nil, errors.New("listing clusters: Palette repeated a continue token")
			}
			seen[meta.Continue] = true
			cont = meta.Continue
		case meta.Count > 0 && meta.Offset+len(items) < meta.Count:
			cont, offset = "", meta.Offset+len(items)
		default:
			return all, nil
		}
	}
}

// decodeClusterPage reads a page: a bare array (the last page) or an object
// with items and listmeta.
func decodeClusterPage(body []byte) ([]ClusterMeta, *listMeta, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var items []ClusterMeta
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return nil, nil, fmt.Errorf("the cluster list is not a list of clusters: %w", err)
		}
		return items, nil, nil
	}
	var page clusterPage
	if err := json.Unmarshal(trimmed, &page); err != nil {
		return nil, nil, fmt.Errorf("the cluster list is not JSON: %w", err)
	}
	return page.Items, page.ListMeta, nil
}

// Project is GET /v1/projects/{uid}.
type Project struct {
	// Metadata holds the project's uid and name.
	Metadata ObjectMeta `json:"metadata"`
}

// Project returns a project.
func (c *Client) Project(ctx context.Context, uid string) (Project, error) {
	var p Project
	body, err := c.get(ctx, "reading project "+uid, "/v1/projects/"+url.PathEscape(uid), nil, "", maxSmallBody)
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return p, fmt.Errorf("reading project %s: not JSON: %w", uid, err)
	}
	return p, nil
}

// Kubeconfig returns a cluster's user kubeconfig (the one with its OIDC
// settings), through Spectro Proxy when frp.
func (c *Client) Kubeconfig(ctx context.Context, clusterUID, projectUID string, frp bool) ([]byte, error) {
	return c.get(ctx, "reading the kubeconfig of cluster "+clusterUID,
		"/v1/spectroclusters/"+url.PathEscape(clusterUID)+"/assets/kubeconfig",
		url.Values{"frp": {strconv.FormatBool(frp)}}, projectUID, maxSmallBody)
}

// get makes one authenticated GET, bounded in time (the request timeout,
// within ctx) and size.
func (c *Client) get(ctx context.Context, op, path string, q url.Values, projectUID string, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.requestTimeout)
	defer cancel()
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("ApiKey", c.apiKey)
	req.Header.Set("Accept", "application/json")
	if projectUID != "" {
		req.Header.Set("ProjectUid", projectUID)
	}
	res, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: reading the answer: %w", op, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%s: the answer is larger than %d bytes", op, limit)
	}
	if res.StatusCode != http.StatusOK {
		ae := &APIError{Op: op, Status: res.StatusCode}
		var eb struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &eb) == nil {
			ae.Code, ae.Message = eb.Code, eb.Message
		}
		return nil, ae
	}
	return body, nil
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
