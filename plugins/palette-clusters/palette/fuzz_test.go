package palette

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/sdk"
)

// FuzzDecodeClusterPage: any body Palette answers the cluster list with is
// a page or an error; what the source reads of each item never panics.
func FuzzDecodeClusterPage(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		items, _, err := decodeClusterPage(body)
		if err != nil {
			if items != nil {
				t.Fatal("items with an error")
			}
			return
		}
		if len(items) > len(body)/2 {
			t.Fatalf("%d items from %d bytes", len(items), len(body))
		}
		for _, it := range items {
			if it.Scope() == "" {
				t.Fatal("empty scope")
			}
			if p := it.Project(); it.Metadata.Annotations["projectUid"] != "" && p.UID != it.Metadata.Annotations["projectUid"] {
				t.Fatalf("project %q, but the annotation says %q", p.UID, it.Metadata.Annotations["projectUid"])
			}
			_ = it.State()
		}
	})
}

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
// answers the list, project and kubeconfig requests with fuzzed bodies:
// the plugin answers an error or only clusters the protocol accepts (so the
// host never has to refuse its list), bounded in number.
func FuzzListClusters(f *testing.F) {
	var list, project, kubeconfig atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/dashboard/spectroclusters/meta"):
			body = list.Load().([]byte)
			if q := r.URL.Query(); q.Has("continue") || q.Has("offset") {
				// One fuzzed page, then the end of the list: a Palette
				// that pages forever only meets the client's page guard.
				body = []byte("[]")
			}
		case strings.HasPrefix(r.URL.Path, "/v1/projects/"):
			body = project.Load().([]byte)
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
		"url":      srv.URL,
		"apiKey":   "key",
		"caData":   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})),
		"pageSize": 50,
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, listBody, projectBody, kubeconfigBody []byte, tenant bool) {
		list.Store(listBody)
		project.Store(projectBody)
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
