package palettetest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

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
			answer: func(w http.ResponseWriter) { Error(w, 404, "ResourceNotFound", "no kubeconfig") }},
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
			c := NewContract(t, func(f string, a ...any) {
				mu.Lock()
				defer mu.Unlock()
				violations = append(violations, fmt.Sprintf(f, a...))
			})
			srv := httptest.NewServer(c.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { tc.answer(w) })))
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
