package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMiddlewareLabelsByRoutePattern(t *testing.T) {
	m := New()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/auth/{provider}/refresh", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("POST /api/auth/{provider}/logout", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /silent", func(http.ResponseWriter, *http.Request) {})
	h := m.Middleware(mux)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/auth/spectrocloud/refresh"},
		{"GET", "/api/auth/other/refresh"},
		{"POST", "/api/auth/spectrocloud/logout"},
		{"GET", "/silent"},
		{"GET", "/random/" + strings.Repeat("x", 50)},
		{"GET", "/random/y"},
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(tc.method, tc.path, nil))
	}
	for _, tc := range []struct {
		route, code string
		want        float64
	}{
		{"GET /api/auth/{provider}/refresh", "200", 2},
		{"POST /api/auth/{provider}/logout", "204", 1},
		{"GET /silent", "200", 1}, // a handler that writes nothing answers 200
		{"unmatched", "404", 2},   // raw paths never become labels
	} {
		if got := testutil.ToFloat64(m.httpRequests.WithLabelValues(tc.route, tc.code)); got != tc.want {
			t.Errorf("requests{route=%q,code=%s} = %v, want %v", tc.route, tc.code, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(m.httpRequests); n != 4 {
		t.Errorf("%d request series, want 4", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestTransportCountsOutcomes(t *testing.T) {
	m := New()
	status := 0
	tr := m.Transport("production", roundTripFunc(func(*http.Request) (*http.Response, error) {
		if status == 0 {
			return nil, errors.New("connection refused")
		}
		return &http.Response{StatusCode: status, Body: http.NoBody}, nil
	}))
	for _, s := range []int{200, 200, 401, 503, 0} {
		status = s
		req := httptest.NewRequest("POST", "https://palette.example.com/token", nil)
		if res, err := tr.RoundTrip(req); err == nil {
			res.Body.Close()
		}
	}
	for outcome, want := range map[string]float64{"2xx": 2, "4xx": 1, "5xx": 1, "error": 1} {
		if got := testutil.ToFloat64(m.upstreamRequests.WithLabelValues("production", outcome)); got != want {
			t.Errorf("upstream{outcome=%s} = %v, want %v", outcome, got, want)
		}
	}
}

// A base RoundTripper that returns neither a response nor an error breaks
// the contract; the counting transport must not panic on it (it runs in
// background key fetches, where a panic ends the daemon), and must hand
// the wrappers above it an error, as they read the response otherwise.
func TestTransportNilResponse(t *testing.T) {
	m := New()
	tr := m.Transport("production", roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, nil }))
	req := httptest.NewRequest("GET", "https://palette.example.com/keys", nil)
	res, err := func() (res *http.Response, err error) {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("RoundTrip panicked: %v", p)
			}
		}()
		return tr.RoundTrip(req)
	}()
	if err == nil || res != nil {
		t.Fatalf("RoundTrip = %v, %v; want no response and an error", res, err)
	}
	if got := testutil.ToFloat64(m.upstreamRequests.WithLabelValues("production", "error")); got != 1 {
		t.Errorf("upstream{outcome=error} = %v, want 1", got)
	}
}

// The cost the middleware adds to every request (the /refresh hot path).
func BenchmarkMiddleware(b *testing.B) {
	m := New()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/auth/{provider}/refresh", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	h := m.Middleware(mux)
	req := httptest.NewRequest("GET", "/api/auth/spectrocloud/refresh", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

func TestConfigReloads(t *testing.T) {
	m := New()
	m.ConfigServing(1, time.Unix(1700000000, 0))
	m.ConfigReloaded(ReloadRefused)
	m.ConfigReloaded(ReloadOK)
	m.ConfigReloaded(ReloadOK)
	m.ConfigServing(2, time.Unix(1700000100, 500_000_000))
	for result, want := range map[string]float64{ReloadOK: 2, ReloadRefused: 1} {
		if got := testutil.ToFloat64(m.configReloads.WithLabelValues(result)); got != want {
			t.Errorf("reloads_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	if got := testutil.ToFloat64(m.configGeneration); got != 2 {
		t.Errorf("generation = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.configLoaded); got != 1700000100.5 {
		t.Errorf("last reload = %v, want 1700000100.5", got)
	}
}
