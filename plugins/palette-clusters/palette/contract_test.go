package palette_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// specFile is SpectroCloud's published Swagger 2.0 spec, cut down to the
// paths the project uses (see testdata/palette-api/NOTICE).
const specFile = "testdata/palette-api/palette-apis-subset.json"

// Extra cases: what the spec leaves open and the fake still does, each
// named, so that nothing undescribed slips through unnoticed.
const (
	// ExtraErrorAnswer: the spec documents only each operation's success;
	// SpectroCloud's API docs give errors as v1Error {code, message,
	// details, ref}, 404 ResourceNotFound, 429 past the rate limits.
	ExtraErrorAnswer = "error answer (status not in the spec; v1Error body)"
	// ExtraProjectUIDHeader: the ProjectUid scope header is in
	// SpectroCloud's API docs, not in the Swagger spec.
	ExtraProjectUIDHeader = "ProjectUid scope header (API docs, not the spec)"
	// ExtraBase64Kubeconfig: the spec says only "binary"; SpectroCloud's
	// SDK also accepts the kubeconfig base64-encoded.
	ExtraBase64Kubeconfig = "base64 kubeconfig (spec: binary)"
	// ExtraNoAnnotations: v1ObjectMeta's annotations are optional, so an
	// item may lack scope and projectUid.
	ExtraNoAnnotations = "cluster item without annotations (spec: optional)"
	// ExtraNoOIDCKubeconfig: the kubeconfig exists only for clusters with
	// OIDC configured; others answer 404 ResourceNotFound.
	ExtraNoOIDCKubeconfig = "cluster without an OIDC kubeconfig (404)"
)

// v1Error is the error body of SpectroCloud's API docs, for ExtraErrorAnswer.
var v1Error = &openapi3.Schema{
	Type:     &openapi3.Types{openapi3.TypeObject},
	Required: []string{"code", "message"},
	Properties: openapi3.Schemas{
		"code":    openapi3.NewStringSchema().NewRef(),
		"message": openapi3.NewStringSchema().NewRef(),
		"ref":     openapi3.NewStringSchema().NewRef(),
		"details": openapi3.NewSchemaRef("", &openapi3.Schema{}),
		"status":  openapi3.NewIntegerSchema().NewRef(),
	},
}

// transportHeaders may be on any request.
var transportHeaders = []string{"Accept", "Accept-Encoding", "User-Agent", "Content-Type", "Content-Length", "Connection"}

// contract validates every request to the fake Palette and every answer
// the fake gives against the spec. A request that is not an operation of
// the spec (method, path, query and header parameters, body, Accept) or an
// answer that does not match the operation's schema for that status is a
// violation, unless it is one of the named extra cases.
type contract struct {
	doc    *openapi3.T
	router routers.Router
	// report receives violations; t.Errorf in tests.
	report func(format string, args ...any)

	mu     sync.Mutex
	ops    map[string]int // operationId -> requests
	extras map[string]int // extra case -> uses
}

var (
	specOnce sync.Once
	specDoc  *openapi3.T
	specErr  error
)

// loadSpec reads the Swagger 2.0 spec and converts it to OpenAPI 3, once.
func loadSpec() (*openapi3.T, error) {
	specOnce.Do(func() {
		raw, err := os.ReadFile(specFile)
		if err != nil {
			specErr = err
			return
		}
		var doc2 openapi2.T
		if err := json.Unmarshal(raw, &doc2); err != nil {
			specErr = fmt.Errorf("reading %s: %w", specFile, err)
			return
		}
		doc3, err := openapi2conv.ToV3(&doc2)
		if err != nil {
			specErr = fmt.Errorf("converting %s to OpenAPI 3: %w", specFile, err)
			return
		}
		if err := doc3.Validate(context.Background()); err != nil {
			specErr = fmt.Errorf("%s is not a valid spec: %w", specFile, err)
			return
		}
		specDoc = doc3
	})
	return specDoc, specErr
}

func newContract(t testing.TB, report func(string, ...any)) *contract {
	t.Helper()
	doc, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{doc: doc, router: router, report: report, ops: map[string]int{}, extras: map[string]int{}}
}

// extra records the use of a named extra case.
func (c *contract) extra(name string) {
	c.mu.Lock()
	c.extras[name]++
	c.mu.Unlock()
}

// calls is how many requests reached an operation.
func (c *contract) calls(opID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops[opID]
}

// used lists the extra cases used so far.
func (c *contract) used() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.extras))
}

// wrap validates h's requests and answers.
func (c *contract) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route, params, err := c.router.FindRoute(r)
		if err != nil {
			c.report("contract: %s %s is not an operation of the spec: %v", r.Method, r.URL.Path, err)
			http.Error(w, "not in the spec", http.StatusNotImplemented)
			return
		}
		op := route.Operation.OperationID
		c.mu.Lock()
		c.ops[op]++
		c.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true, RejectWhenRequestBodyNotSpecified: true}}
		if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
			c.report("contract: %s %s (%s): the request does not match the spec: %v", r.Method, r.URL, op, err)
		}
		c.checkParams(r, route)
		r.Body = io.NopCloser(bytes.NewReader(body))

		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		res := rec.Result()
		c.checkAnswer(in, res, rec.Body.Bytes())
		maps.Copy(w.Header(), res.Header)
		w.WriteHeader(res.StatusCode)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// checkParams rejects query parameters and headers the operation does not
// declare (openapi3filter lets them through), a request without one of the
// spec's security headers, and an Accept the operation cannot answer.
func (c *contract) checkParams(r *http.Request, route *routers.Route) {
	op := route.Operation
	declared := map[string]bool{}
	for _, list := range []openapi3.Parameters{route.PathItem.Parameters, op.Parameters} {
		for _, p := range list {
			if p.Value != nil {
				declared[p.Value.In+":"+strings.ToLower(p.Value.Name)] = true
			}
		}
	}
	for k := range r.URL.Query() {
		if !declared["query:"+strings.ToLower(k)] {
			c.report("contract: %s %s (%s): query parameter %q is not in the spec", r.Method, r.URL.Path, op.OperationID, k)
		}
	}
	security := map[string]bool{}
	for _, s := range c.doc.Components.SecuritySchemes {
		if s.Value != nil && s.Value.In == "header" {
			security[strings.ToLower(s.Value.Name)] = true
		}
	}
	authenticated := false
	for k := range r.Header {
		lk := strings.ToLower(k)
		switch {
		case security[lk]:
			authenticated = true
		case declared["header:"+lk] || slices.ContainsFunc(transportHeaders, func(h string) bool { return strings.EqualFold(h, k) }):
		case lk == "projectuid":
			c.extra(ExtraProjectUIDHeader)
		default:
			c.report("contract: %s %s (%s): header %q is not in the spec", r.Method, r.URL.Path, op.OperationID, k)
		}
	}
	if !authenticated {
		c.report("contract: %s %s (%s): none of the spec's security headers", r.Method, r.URL.Path, op.OperationID)
	}
	if ok := op.Responses.Status(http.StatusOK); ok != nil && ok.Value != nil {
		accept := r.Header.Get("Accept")
		if accept == "" {
			c.report("contract: %s %s (%s): no Accept header", r.Method, r.URL.Path, op.OperationID)
		}
		for _, a := range strings.Split(accept, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(a))
			if err != nil || (mt != "*/*" && ok.Value.Content.Get(mt) == nil) {
				c.report("contract: %s %s (%s): Accept %q, but the operation produces %v", r.Method, r.URL.Path, op.OperationID, a, slices.Sorted(maps.Keys(ok.Value.Content)))
			}
		}
	}
}

// checkAnswer validates an answer: a status the operation documents
// against its schema, any other as ExtraErrorAnswer.
func (c *contract) checkAnswer(in *openapi3filter.RequestValidationInput, res *http.Response, body []byte) {
	op := in.Route.Operation
	if op.Responses.Status(res.StatusCode) == nil && op.Responses.Default() == nil {
		c.extra(ExtraErrorAnswer)
		if res.StatusCode < 400 {
			c.report("contract: %s: the fake answered %d, a success the spec does not describe", op.OperationID, res.StatusCode)
			return
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			c.report("contract: %s: the fake's %d answer is not a v1Error: %v", op.OperationID, res.StatusCode, err)
			return
		}
		if err := v1Error.VisitJSON(v); err != nil {
			c.report("contract: %s: the fake's %d answer is not a v1Error: %v", op.OperationID, res.StatusCode, err)
		}
		return
	}
	err := openapi3filter.ValidateResponse(in.Request.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	})
	if err != nil {
		c.report("contract: %s: the fake's %d answer does not match the spec: %v", op.OperationID, res.StatusCode, err)
	}
}

// TestContractHarness: the contract catches what the spec does not
// describe, in requests and in answers, among them the old client's and
// the old fake's mistakes; what it describes passes.
func TestContractHarness(t *testing.T) {
	const (
		meta   = "/v1/dashboard/spectroclusters/meta"
		search = "/v1/dashboard/spectroclusters/search"
		kc     = "/v1/spectroclusters/c1/assets/kubeconfig"
	)
	jsonAnswer := func(body string) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, body)
		}
	}
	goodMeta := jsonAnswer(`[{"metadata":{"uid":"c1","name":"a","annotations":{"scope":"project"}},"spec":{"cloudType":"aws"},"status":{"state":"Running"}}]`)
	goodKC := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", "attachment; filename=a.kubeconfig")
		_, _ = io.WriteString(w, "apiVersion: v1\nkind: Config\n")
	}
	for _, tc := range []struct {
		name, method, target, body string
		header                     http.Header
		answer                     func(http.ResponseWriter)
		want                       string // "" when the exchange matches the spec
	}{
		{name: "cluster list as the spec has it", method: "GET", target: meta, answer: goodMeta},
		{name: "paging parameters on the cluster list", method: "GET", target: meta + "?limit=50&offset=0", answer: goodMeta, want: `query parameter "limit" is not in the spec`},
		{name: "cluster list answered as a page object", method: "GET", target: meta,
			answer: jsonAnswer(`{"items":[],"listmeta":{"continue":"","count":0}}`), want: "does not match the spec"},
		{name: "a cluster status without its state", method: "GET", target: meta,
			answer: jsonAnswer(`[{"metadata":{"uid":"c1","name":"a"},"status":{}}]`), want: "does not match the spec"},
		{name: "search page larger than 50", method: "POST", target: search + "?limit=100", body: `{}`,
			answer: jsonAnswer(`{"items":[]}`), want: "does not match the spec"},
		{name: "search answer without items", method: "POST", target: search + "?limit=50", body: `{}`,
			answer: jsonAnswer(`{"listmeta":{"continue":""}}`), want: "does not match the spec"},
		{name: "search with an unknown sort field", method: "POST", target: search + "?limit=50", body: `{"sort":[{"field":"projectName"}]}`,
			answer: jsonAnswer(`{"items":[]}`), want: "does not match the spec"},
		{name: "kubeconfig", method: "GET", target: kc + "?frp=true", header: http.Header{"Accept": {"application/octet-stream"}}, answer: goodKC},
		{name: "kubeconfig asked as JSON", method: "GET", target: kc + "?frp=true", answer: goodKC, want: "but the operation produces"},
		{name: "kubeconfig answered as JSON", method: "GET", target: kc, header: http.Header{"Accept": {"application/octet-stream"}},
			answer: jsonAnswer(`{"kubeconfig":"x"}`), want: "does not match the spec"},
		{name: "frp not a boolean", method: "GET", target: kc + "?frp=yes", header: http.Header{"Accept": {"application/octet-stream"}}, answer: goodKC, want: "does not match the spec"},
		{name: "error answer as a v1Error", method: "GET", target: kc, header: http.Header{"Accept": {"application/octet-stream"}},
			answer: func(w http.ResponseWriter) { paletteError(w, 404, "ResourceNotFound", "no kubeconfig") }},
		{name: "error answer not a v1Error", method: "GET", target: kc, header: http.Header{"Accept": {"application/octet-stream"}},
			answer: func(w http.ResponseWriter) { http.Error(w, "nope", 404) }, want: "is not a v1Error"},
		{name: "an undocumented success status", method: "GET", target: meta,
			answer: func(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }, want: "a success the spec does not describe"},
		{name: "a path that is not in the spec", method: "GET", target: "/v1/clusters", answer: goodMeta, want: "is not an operation of the spec"},
		{name: "a method that is not in the spec", method: "DELETE", target: meta, answer: goodMeta, want: "is not an operation of the spec"},
		{name: "a header that is not in the spec", method: "GET", target: meta, header: http.Header{"X-Tenant": {"t1"}}, answer: goodMeta, want: `header "X-Tenant" is not in the spec`},
		{name: "no API key", method: "GET", target: meta, header: http.Header{"ApiKey": nil}, answer: goodMeta, want: "none of the spec's security headers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var violations []string
			c := newContract(t, func(f string, a ...any) {
				mu.Lock()
				defer mu.Unlock()
				violations = append(violations, fmt.Sprintf(f, a...))
			})
			srv := httptest.NewServer(c.wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { tc.answer(w) })))
			defer srv.Close()
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, srv.URL+tc.target, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("ApiKey", "k")
			req.Header.Set("Accept", "application/json")
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			for k, v := range tc.header {
				if v == nil {
					req.Header.Del(k)
				} else {
					req.Header[k] = v
				}
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			got := strings.Join(violations, "\n")
			switch {
			case tc.want == "" && got != "":
				t.Errorf("violations of an exchange the spec describes:\n%s", got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Errorf("violations = %q, want one saying %q", got, tc.want)
			}
		})
	}
}
