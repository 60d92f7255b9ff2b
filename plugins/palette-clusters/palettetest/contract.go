package palettetest

import (
	"bytes"
	"context"
	_ "embed" // the spec
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
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

// spec is SpectroCloud's published Swagger 2.0 spec, cut down to the paths
// the project uses (see testdata/palette-api/NOTICE).
//
//go:embed testdata/palette-api/palette-apis-subset.json
var spec []byte

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

// Contract validates every request to a fake Palette and every answer the
// fake gives against SpectroCloud's spec. A request that is not an
// operation of the spec (method, path, query and header parameters, body,
// Accept) or an answer that does not match the operation's schema for that
// status is a violation, unless it is one of the named extra cases.
type Contract struct {
	doc    *openapi3.T
	router routers.Router
	report func(format string, args ...any)

	mu     sync.Mutex
	ops    map[string]int // operationId -> requests
	extras map[string]int // extra case -> uses
}

// loadSpec converts the Swagger 2.0 spec to OpenAPI 3, once.
var loadSpec = sync.OnceValues(func() (*openapi3.T, error) {
	var doc2 openapi2.T
	if err := json.Unmarshal(spec, &doc2); err != nil {
		return nil, fmt.Errorf("reading the Palette spec: %w", err)
	}
	doc3, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		return nil, fmt.Errorf("converting the Palette spec to OpenAPI 3: %w", err)
	}
	if err := doc3.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the Palette spec is not valid: %w", err)
	}
	return doc3, nil
})

// NewContract loads the spec; report receives violations (t.Errorf in
// tests).
func NewContract(t testing.TB, report func(format string, args ...any)) *Contract {
	t.Helper()
	doc, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &Contract{doc: doc, router: router, report: report, ops: map[string]int{}, extras: map[string]int{}}
}

// Extra records the use of a named extra case.
func (c *Contract) Extra(name string) {
	c.mu.Lock()
	c.extras[name]++
	c.mu.Unlock()
}

// Calls is how many requests reached an operation (by operationId).
func (c *Contract) Calls(opID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops[opID]
}

// Used lists the extra cases used so far.
func (c *Contract) Used() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.extras))
}

// Wrap validates h's requests and answers.
func (c *Contract) Wrap(h http.Handler) http.Handler {
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
func (c *Contract) checkParams(r *http.Request, route *routers.Route) {
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
			c.Extra(ExtraProjectUIDHeader)
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
func (c *Contract) checkAnswer(in *openapi3filter.RequestValidationInput, res *http.Response, body []byte) {
	op := in.Route.Operation
	if op.Responses.Status(res.StatusCode) == nil && op.Responses.Default() == nil {
		c.Extra(ExtraErrorAnswer)
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
