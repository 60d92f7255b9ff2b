package catalog

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// testToken is the service token the fake catalog accepts.
const testToken = "test-service-token"

// fakeCatalog serves the parts of Backstage's catalog REST API the plugin
// uses, as @backstage/plugin-catalog-backend's OpenAPI describes them and its
// implementation behaves: GET /entities/by-query (filter, fields, limit,
// cursor; values compared without regard to case) and GET
// /entities/by-name/{kind}/{namespace}/{name} (likewise), behind a bearer
// token, under /api/catalog.
type fakeCatalog struct {
	t        testing.TB
	srv      *httptest.Server
	entities []map[string]any

	// requests counts the requests served.
	requests atomic.Int64

	mu sync.Mutex
	// status, when not 0, is answered to every request.
	status int
	// hang, when it reports true for a request, keeps it waiting until the
	// client gives up.
	hang func(r *http.Request) bool
	// ignoreFilter returns every entity, as a catalog that does not know
	// the filter would.
	ignoreFilter bool
	// redirect, when set, redirects every request to this URL.
	redirect string
	// pageSize, when not 0, caps the page size below the requested limit.
	pageSize int
	// queries records the filter parameters received.
	queries []string
}

// newFakeCatalog serves testdata/catalog.json plus extra entities.
func newFakeCatalog(t testing.TB, extra ...map[string]any) *fakeCatalog {
	t.Helper()
	data, err := os.ReadFile("testdata/catalog.json")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCatalog{t: t}
	if err := json.Unmarshal(data, &f.entities); err != nil {
		t.Fatal(err)
	}
	f.entities = append(f.entities, extra...)
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// baseURL is what the plugin's baseUrl is set to.
func (f *fakeCatalog) baseURL() string { return f.srv.URL + "/api/catalog" }

func (f *fakeCatalog) set(fn func(f *fakeCatalog)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeCatalog) filters() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.queries)
}

func writeError(w http.ResponseWriter, status int, name, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error":    map[string]any{"name": name, "message": msg},
		"response": map[string]any{"statusCode": status},
	})
}

func (f *fakeCatalog) serve(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	f.mu.Lock()
	status, hang, ignore, redirect, pageSize := f.status, f.hang, f.ignoreFilter, f.redirect, f.pageSize
	f.queries = append(f.queries, r.URL.Query()["filter"]...)
	f.mu.Unlock()

	if hang != nil && hang(r) {
		<-r.Context().Done()
		// Hang up without an answer: returning would send an empty 200,
		// which can reach the client before its own deadline fires.
		panic(http.ErrAbortHandler)
	}
	if redirect != "" {
		http.Redirect(w, r, redirect, http.StatusFound)
		return
	}
	if status != 0 {
		writeError(w, status, "ServiceUnavailableError", "the catalog is\nbeing restarted")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		writeError(w, http.StatusUnauthorized, "AuthenticationError", "Missing credentials")
		return
	}
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "Error", "method")
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/api/catalog")
	if !ok {
		writeError(w, http.StatusNotFound, "NotFoundError", "no such route")
		return
	}
	switch {
	case path == "/entities/by-query":
		f.byQuery(w, r, ignore, pageSize)
	case strings.HasPrefix(path, "/entities/by-name/"):
		parts := strings.Split(strings.TrimPrefix(path, "/entities/by-name/"), "/")
		if len(parts) != 3 {
			writeError(w, http.StatusBadRequest, "InputError", "bad ref")
			return
		}
		for _, e := range f.entities {
			flat := flatten(e)
			if has(flat, "kind", parts[0]) && has(flat, "metadata.namespace", parts[1]) && has(flat, "metadata.name", parts[2]) {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(e)
				return
			}
		}
		writeError(w, http.StatusNotFound, "NotFoundError", fmt.Sprintf("No entity named '%s' found, with kind '%s' in namespace '%s'", parts[2], parts[0], parts[1]))
	default:
		writeError(w, http.StatusNotFound, "NotFoundError", "no such route")
	}
}

// cursor is the fake's pagination state, opaque to clients.
type cursor struct {
	Filters []string `json:"filters"`
	Offset  int      `json:"offset"`
}

func (f *fakeCatalog) byQuery(w http.ResponseWriter, r *http.Request, ignore bool, pageSize int) {
	q := r.URL.Query()
	cur := cursor{Filters: q["filter"]}
	if c := q.Get("cursor"); c != "" {
		if len(q["filter"]) > 0 {
			writeError(w, http.StatusBadRequest, "InputError", "cursor and filter together")
			return
		}
		data, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil || json.Unmarshal(data, &cur) != nil {
			writeError(w, http.StatusBadRequest, "InputError", "bad cursor")
			return
		}
	}
	limit := 20
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "InputError", "bad limit")
			return
		}
		limit = n
	}
	if pageSize > 0 {
		limit = min(limit, pageSize)
	}
	var matching []map[string]any
	for _, e := range f.entities {
		if ignore || matchesAny(flatten(e), cur.Filters) {
			matching = append(matching, e)
		}
	}
	slices.SortFunc(matching, func(a, b map[string]any) int {
		return strings.Compare(fmt.Sprint(a["metadata"].(map[string]any)["name"]), fmt.Sprint(b["metadata"].(map[string]any)["name"]))
	})
	end := min(cur.Offset+limit, len(matching))
	page := matching[cur.Offset:end]
	resp := map[string]any{"items": []any{}, "totalItems": len(matching), "pageInfo": map[string]any{}}
	items := []any{}
	for _, e := range page {
		items = append(items, project(e, q.Get("fields")))
	}
	resp["items"] = items
	if end < len(matching) {
		data, _ := json.Marshal(cursor{Filters: cur.Filters, Offset: end})
		resp["pageInfo"] = map[string]any{"nextCursor": base64.RawURLEncoding.EncodeToString(data)}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// flatten maps the dotted, lower-case paths of an entity to its lower-case
// values, as the catalog's search table does.
func flatten(e map[string]any) map[string][]string {
	out := map[string][]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				key := k
				if prefix != "" {
					key = prefix + "." + k
				}
				walk(key, c)
			}
		case []any:
			for _, c := range v {
				walk(prefix, c)
			}
		default:
			out[strings.ToLower(prefix)] = append(out[strings.ToLower(prefix)], strings.ToLower(fmt.Sprint(v)))
		}
	}
	walk("", e)
	if _, ok := out["metadata.namespace"]; !ok {
		out["metadata.namespace"] = []string{"default"}
	}
	return out
}

func has(flat map[string][]string, key, value string) bool {
	return slices.Contains(flat[strings.ToLower(key)], strings.ToLower(value))
}

// matchesAny applies filter parameters as the catalog does: the entity must
// match every key=value statement of at least one parameter.
func matchesAny(flat map[string][]string, filters []string) bool {
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		all := true
		for stmt := range strings.SplitSeq(f, ",") {
			stmt = strings.TrimSpace(stmt)
			if stmt == "" {
				continue
			}
			key, value, _ := strings.Cut(stmt, "=")
			if !has(flat, strings.TrimSpace(key), strings.TrimSpace(value)) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// project keeps only the fields asked for (dotted paths into nested maps).
func project(e map[string]any, fields string) map[string]any {
	if fields == "" {
		return e
	}
	out := map[string]any{}
	for field := range strings.SplitSeq(fields, ",") {
		parts := strings.Split(field, ".")
		var src any = e
		for _, p := range parts {
			m, ok := src.(map[string]any)
			if !ok {
				src = nil
				break
			}
			src = m[p]
		}
		if src == nil {
			continue
		}
		dst := out
		for _, p := range parts[:len(parts)-1] {
			next, ok := dst[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				dst[p] = next
			}
			dst = next
		}
		dst[parts[len(parts)-1]] = src
	}
	return out
}

// userEntity builds a User entity in the catalog's shape.
func userEntity(name, email string, groups ...string) map[string]any {
	rels := []any{}
	for _, g := range groups {
		rels = append(rels, map[string]any{"type": "memberOf", "targetRef": g})
	}
	return map[string]any{
		"apiVersion": "backstage.io/v1alpha1",
		"kind":       "User",
		"metadata":   map[string]any{"name": name, "namespace": "default"},
		"spec":       map[string]any{"profile": map[string]any{"email": email}},
		"relations":  rels,
	}
}
