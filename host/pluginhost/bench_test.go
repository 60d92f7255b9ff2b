//go:build linux

package pluginhost

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/signin"
)

// BenchmarkResolve measures a sign-in resolver call through a real plugin
// process (gRPC over a Unix socket with AutoMTLS), with 1 and 16 callers.
func BenchmarkResolve(b *testing.B) {
	h := start(b, map[string]config.Plugin{"tp": pluginConfig(b)}, Options{Logger: hclog.NewNullLogger(), StartTimeout: 30 * time.Second})
	r, err := h.Resolver("tp", "byEmail", map[string]any{"tag": "bench"})
	if err != nil {
		b.Fatal(err)
	}
	in := signin.Input{
		Claims:  map[string]any{"sub": "s1", "email": "ok@example.com", "groups": []any{"dev", "ops"}},
		Profile: signin.Profile{Email: "ok@example.com", EmailVerified: true, Subject: "s1", Groups: []string{"dev", "ops"}},
	}
	ctx := context.Background()
	if _, err := r.Resolve(ctx, in); err != nil {
		b.Fatal(err)
	}
	b.Run("callers=1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Resolve(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
	})
	b.Run("callers=16", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := r.Resolve(ctx, in); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
	})
}

// BenchmarkStart measures the cold start of one plugin: "verify" is the
// binary check, copy into a sealed memfd and SHA-256; "start" is all of
// Start: verify, fork/exec, go-plugin handshake with AutoMTLS (a key pair on
// each side), Describe and Configure; "restart" is Start without verify, what
// a restart after a crash costs. Stopping the plugin is not timed.
func BenchmarkStart(b *testing.B) {
	cfg := pluginConfig(b)
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			bin, err := verifyBinary("tp", cfg.Command, cfg.SHA256)
			if err != nil {
				b.Fatal(err)
			}
			bin.close()
		}
	})
	b.Run("restart", func(b *testing.B) {
		// What a restart costs: the verified memfd is reused.
		h := start(b, map[string]config.Plugin{"tp": cfg}, Options{Logger: hclog.NewNullLogger(), StartTimeout: 30 * time.Second})
		in := h.plugins["tp"]
		for b.Loop() {
			g, err := in.launch(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			in.kill(g, false)
			b.StartTimer()
		}
	})
	b.Run("start", func(b *testing.B) {
		opts := Options{Logger: hclog.NewNullLogger(), StartTimeout: 30 * time.Second}
		plugins := map[string]config.Plugin{"tp": cfg}
		for b.Loop() {
			h, err := Start(context.Background(), plugins, opts)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := h.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}
