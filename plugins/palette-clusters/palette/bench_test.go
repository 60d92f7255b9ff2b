package palette_test

import (
	"context"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/plugins/palette-clusters/palette"
	"github.com/spectroauth/spectroauth/plugins/palette-clusters/palettetest"
	"github.com/spectroauth/spectroauth/sdk"
)

// BenchmarkDiscovery500 lists a tenant of 500 OIDC clusters from the fake
// under SpectroCloud's real limits (10 requests/s with a burst of 5 per
// source address on the assets and on the dashboard), with the source's
// default pacing and retries: a cold listing (every kubeconfig read), then
// a warm one (nothing changed). It takes about a minute an iteration, so
// it runs only with -bench:
//
//	go test -run '^$' -bench Discovery500 -benchtime 1x ./plugins/palette-clusters/palette
func BenchmarkDiscovery500(b *testing.B) {
	const n = 500
	for b.Loop() {
		p := palettetest.New(b)
		p.Clusters = palettetest.ManyClusters(n)
		p.AssetsLimit = palettetest.NewLimiter(10, 5)
		p.APILimit = palettetest.NewLimiter(10, 5)
		cfg := config(p)
		cfg["pageSize"] = palette.MaxPageSize
		s, _ := configured(b, cfg)
		s.SetPacing(palette.DefaultLimits, palette.DefaultRetry)

		start := time.Now()
		got, err := s.ListClusters(context.Background(), sdk.ListClustersRequest{})
		if err != nil {
			b.Fatal(err)
		}
		cold := time.Since(start)
		st := s.LastStats()
		b.ReportMetric(cold.Seconds(), "s/cold-list")
		b.ReportMetric(float64(st.Requests), "requests/cold-list")
		b.ReportMetric(float64(n-len(got)), "dropped")
		b.ReportMetric(float64(p.Throttled()), "429s")

		start = time.Now()
		got, err = s.ListClusters(context.Background(), sdk.ListClustersRequest{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/warm-list")
		b.ReportMetric(float64(s.LastStats().Requests), "requests/warm-list")
		if len(got) != n {
			b.Errorf("warm listing: %d clusters, want %d", len(got), n)
		}
	}
}
