package catalog

import (
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

// Bounds on what the client reads and follows.
const (
	// maxBody is the largest catalog response read, in bytes.
	maxBody = 4 << 20
	// maxErrorBody is how much of an error response is read for its message.
	maxErrorBody = 8 << 10
	// maxQuoted is how much of a catalog error message is quoted.
	maxQuoted = 200
	// maxRedirects is how many same-host redirects are followed.
	maxRedirects = 3
	// pageLimit is the page size of by-query requests: two matches are
	// enough to know that a lookup is ambiguous.
	pageLimit = 2
	// maxPages bounds the pages of one by-query lookup.
	maxPages = 5
)

// queryFields are the fields by-query lookups ask for: what identityOf and
// the match checks read.
var queryFields = strings.Join([]string{
	"kind", "metadata.name", "metadata.namespace", "metadata.annotations", "spec.profile.email", "relations",
}, ",")

// entity is the part of a Backstage catalog entity the resolvers read.
type entity struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Profile struct {
			Email string `json:"email"`
		} `json:"profile"`
	} `json:"spec"`
	Relations []relation `json:"relations"`
}

// relation is an entity's relation to another entity.
type relation struct {
	Type      string `json:"type"`
	TargetRef string `json:"targetRef"`
}

// queryResponse is the answer of GET /entities/by-query.
type queryResponse struct {
	Items      []*entity `json:"items"`
	TotalItems int       `json:"totalItems"`
	PageInfo   struct {
		NextCursor string `json:"nextCursor"`
	} `json:"pageInfo"`
}

// client talks to Backstage's catalog REST API.
type client struct {
	base  *url.URL
	token string
	http  *http.Client
}

func newClient(cfg Config) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg.tlsConfig()
	tr.MaxIdleConnsPerHost = 16
	return &client{
		base:  cfg.BaseURL,
		token: cfg.Token,
		http: &http.Client{
			Transport: tr,
			// A backstop: every lookup also runs under a context with
			// cfg.Timeout.
			Timeout:       cfg.Timeout + time.Second,
			CheckRedirect: sameHostRedirects,
		},
	}
}

// sameHostRedirects follows a few redirects on the catalog's own scheme and
// host (where the service token may go) and refuses any other.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	if req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		return fmt.Errorf("the catalog redirected to %s://%s, another host: refusing to follow (is baseUrl right?)", req.URL.Scheme, req.URL.Host)
	}
	if len(via) > maxRedirects {
		return fmt.Errorf("the catalog redirected more than %d times", maxRedirects)
	}
	return nil
}

// errNoEntity is what get returns for a 404 of a by-name lookup.
var errNoEntity = errors.New("no such entity")

// get fetches base+path with query into out (JSON).
func (c *client) get(ctx context.Context, path string, query url.Values, out any) error {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("catalog request %s: %w", path, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "spectroauth-backstage-catalog")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// Leave the URL (and the e-mail address in its query) out of the
		// message; keep the cause, so that errors.Is sees deadlines.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("catalog request GET %s failed: %w", path, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
		if err != nil {
			return fmt.Errorf("reading the catalog's answer to GET %s: %w", path, err)
		}
		if len(body) > maxBody {
			return fmt.Errorf("the catalog's answer to GET %s is larger than %d bytes", path, maxBody)
		}
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("the catalog's answer to GET %s is not the JSON of Backstage's catalog API: %v", path, err)
		}
		return nil
	case resp.StatusCode == http.StatusNotFound && strings.HasPrefix(path, "/entities/by-name/"):
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return errNoEntity
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("the catalog refused GET %s with %s%s: check the plugin's token and that the catalog accepts it", path, resp.Status, errorMessage(resp.Body))
	default:
		return fmt.Errorf("the catalog answered GET %s with %s%s", path, resp.Status, errorMessage(resp.Body))
	}
}

// errorMessage quotes the message of a Backstage error body, bounded.
func errorMessage(body io.Reader) string {
	data, _ := io.ReadAll(io.LimitReader(body, maxErrorBody))
	var e struct {
		Error struct {
			Name    string `json:"name"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &e) != nil || e.Error.Message == "" {
		return ""
	}
	msg := e.Error.Message
	if e.Error.Name != "" {
		msg = e.Error.Name + ": " + msg
	}
	msg = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > maxQuoted {
		msg = msg[:maxQuoted] + "…"
	}
	return " (" + strconv.Quote(msg) + ")"
}

// queryUsers returns the User entities whose field equals value, as the
// catalog compares (without regard to case). Two are enough to know that the
// lookup is ambiguous, so it stops there. Every entity the catalog returns
// must pass match: a catalog that ignores the filter must not sign anybody in
// as somebody else.
func (c *client) queryUsers(ctx context.Context, field, value string, match func(*entity) bool) ([]*entity, error) {
	q := url.Values{}
	q.Set("filter", "kind=user,"+field+"="+value)
	q.Set("fields", queryFields)
	q.Set("limit", strconv.Itoa(pageLimit))
	var found []*entity
	for page := 0; ; page++ {
		var resp queryResponse
		if err := c.get(ctx, "/entities/by-query", q, &resp); err != nil {
			return nil, err
		}
		for _, e := range resp.Items {
			if e == nil {
				continue
			}
			if !isUser(e) || !match(e) {
				return nil, fmt.Errorf("the catalog answered the filter %s=… with %s, which does not match it: refusing to guess", field, describe(e))
			}
			found = append(found, e)
		}
		if len(found) >= 2 || resp.PageInfo.NextCursor == "" {
			return found, nil
		}
		if page+1 >= maxPages {
			return nil, fmt.Errorf("the catalog kept paging through the filter %s=… after %d pages", field, maxPages)
		}
		// A cursor carries the query; only the page size and fields go with it.
		q = url.Values{}
		q.Set("cursor", resp.PageInfo.NextCursor)
		q.Set("fields", queryFields)
		q.Set("limit", strconv.Itoa(pageLimit))
	}
}

// userByName returns the User entity default/name, or errNoEntity. The
// catalog compares names without regard to case. name must be a valid entity
// name (letters, digits, '-', '_' and '.'), which needs no escaping.
func (c *client) userByName(ctx context.Context, name string) (*entity, error) {
	var e entity
	path := "/entities/by-name/user/default/" + name
	if err := c.get(ctx, path, nil, &e); err != nil {
		return nil, err
	}
	if !isUser(&e) || !strings.EqualFold(namespaceOf(&e), "default") || !strings.EqualFold(e.Metadata.Name, name) {
		return nil, fmt.Errorf("the catalog answered GET /entities/by-name/user/default/%s with %s: refusing to guess", name, describe(&e))
	}
	return &e, nil
}

func isUser(e *entity) bool { return strings.EqualFold(e.Kind, "user") }

func namespaceOf(e *entity) string {
	if e.Metadata.Namespace == "" {
		return "default"
	}
	return e.Metadata.Namespace
}

// describe names an entity for messages.
func describe(e *entity) string {
	return strconv.Quote(strings.ToLower(e.Kind) + ":" + namespaceOf(e) + "/" + e.Metadata.Name)
}

// sameText compares two values as the catalog's filters do: without regard
// to case.
func sameText(a, b string) bool {
	return strings.EqualFold(a, b) || strings.ToLower(a) == strings.ToLower(b)
}
