package palette

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/time/rate"

	"github.com/spectroauth/spectroauth/sdk"
)

// FuzzParseKubeconfig: a kubeconfig from Palette yields a server without a
// trailing slash and CA data that was valid base64, or an error.
func FuzzParseKubeconfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		ep, err := parseKubeconfig(b)
		if err != nil {
			return
		}
		if ep.Server == "" || strings.HasSuffix(ep.Server, "/") {
			t.Fatalf("server %q", ep.Server)
		}
		if len(ep.CAData) > len(b) {
			t.Fatalf("%d bytes of CA data from a %d-byte kubeconfig", len(ep.CAData), len(b))
		}
	})
}

// FuzzListClusters runs the whole source against a fake Palette that
// answers the cluster list, the cluster search, the project names and every
// kubeconfig with fuzzed bodies (later search pages are empty): the plugin
// answers an error or only clusters the protocol accepts, so the host never
// has to refuse its list.
func FuzzListClusters(f *testing.F) {
	var list, search, projects, kubeconfig atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		switch {
		case r.URL.Path == "/v1/dashboard/spectroclusters/meta":
			body = list.Load().([]byte)
		case r.URL.Path == "/v1/dashboard/spectroclusters/search":
			body = search.Load().([]byte)
			if r.URL.Query().Has("continue") {
				body = []byte(`{"items":[]}`)
			}
		case r.URL.Path == "/v1/dashboard/projects/metadata":
			body = projects.Load().([]byte)
		case strings.HasSuffix(r.URL.Path, "/assets/kubeconfig"):
			body = kubeconfig.Load().([]byte)
		default:
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(body)
	}))
	f.Cleanup(srv.Close)
	s := &Source{Logger: hclog.NewNullLogger(), Getenv: func(string) string { return "" }}
	err := s.Configure(context.Background(), sdk.Config{Values: sdk.Options{
		"url":    srv.URL,
		"apiKey": "key",
		"caData": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})),
	}})
	if err != nil {
		f.Fatal(err)
	}
	// No pacing and no retries: each input costs a few local requests.
	s.SetPacing(Limits{Assets: rate.Inf, AssetsBurst: 1, API: rate.Inf, APIBurst: 1}, Retry{Attempts: 1, Base: time.Millisecond, Max: time.Millisecond})
	f.Fuzz(func(t *testing.T, listBody, searchBody, projectBody, kubeconfigBody []byte, tenant bool) {
		list.Store(listBody)
		search.Store(searchBody)
		projects.Store(projectBody)
		kubeconfig.Store(kubeconfigBody)
		opts := sdk.Options{"excludeProjects": []any{"nope"}}
		if tenant {
			opts["tenantClusters"] = true
		}
		clusters, err := s.ListClusters(context.Background(), sdk.ListClustersRequest{Options: opts})
		if err != nil {
			return
		}
		if err := sdk.ValidateClusters(clusters); err != nil {
			t.Fatalf("the source listed clusters the protocol refuses: %v", err)
		}
		for _, c := range clusters {
			if !strings.HasPrefix(c.Server, "https://") {
				t.Fatalf("cluster %q with server %q", c.Name, c.Server)
			}
		}
	})
}
