package catalog

import (
	"context"
	"testing"

	"github.com/spectroauth/spectroauth/sdk"
)

func benchmarkResolve(b *testing.B, cfg sdk.Options, parallel bool) {
	h := newHarness(b, cfg)
	req := emailReq(ResolverProfileEmail, "jdoe@example.com", sdk.Options{"allowedDomains": []any{"example.com"}})
	ctx := context.Background()
	if _, err := h.cat.Resolve(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := h.cat.Resolve(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	} else {
		for b.Loop() {
			if _, err := h.cat.Resolve(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(h.fake.requests.Load()-1)/float64(b.N), "catalog-calls/op")
}

// BenchmarkResolveCached is a sign-in or refresh of a user found recently:
// no catalog call.
func BenchmarkResolveCached(b *testing.B) { benchmarkResolve(b, nil, false) }

// BenchmarkResolveCachedParallel is the same under concurrency.
func BenchmarkResolveCachedParallel(b *testing.B) { benchmarkResolve(b, nil, true) }

// BenchmarkResolveUncached asks the (local, in-process) catalog every time.
func BenchmarkResolveUncached(b *testing.B) {
	benchmarkResolve(b, sdk.Options{"cacheTTL": "0s"}, false)
}
