//go:build linux

package pluginhost

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/signin"
)

// BenchmarkResolve measures a sign-in resolver call through a real plugin
// process (gRPC over a Unix socket with AutoMTLS), with 1 and 16 callers.
//
// Where the time goes (2-vCPU VM, Go 1.26; issue 3's target is 150 µs at
// 1 caller): 252 µs per call after tuning (fixed gRPC flow-control windows,
// GOMAXPROCS=1 in plugins), from 328 µs. A call still costs about 12 context
// switches across the two processes at 7-11 µs each on this VM, and the
// host alone spends about 180 µs of CPU per call, mostly syscalls, futex
// wake-ups and the scheduler's idle loop; a bare gRPC+TLS health check
// between two minimal Go processes measured 152-183 µs. Our conversions
// (options and claims to Struct, checking the identity) are under 7%.
//
// BenchmarkStart (target 60 ms): 68.6 ms, of which verifying the binary
// (sendfile into a sealed memfd, then SHA-256) is about 30 ms and overlaps
// the host's AutoMTLS key generation, the plugin's P-521 certificate about
// 15 ms, the connection and TLS handshake about 15 ms, exec 6 ms.
// go-plugin hard-codes P-521 for AutoMTLS on both sides.
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
	pid := h.Plugins()[0].PID
	b.Run("callers=1", func(b *testing.B) {
		b.ReportAllocs()
		cpu := startCPU(b, pid)
		for b.Loop() {
			if _, err := r.Resolve(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
		cpu.report()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
	})
	b.Run("callers=16", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		cpu := startCPU(b, pid)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := r.Resolve(ctx, in); err != nil {
					b.Error(err)
					return
				}
			}
		})
		cpu.report()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
	})
}

// cpuMeter measures the CPU time (user and system) the daemon's process and
// a plugin's process spend during a benchmark. On a machine with few CPUs a
// call's latency follows the CPU both ends burn, wake-ups included.
type cpuMeter struct {
	b            *testing.B
	pid          int
	self, plugin time.Duration
}

func startCPU(b *testing.B, pid int) *cpuMeter {
	m := &cpuMeter{b: b, pid: pid}
	m.self, m.plugin = selfCPU(b), processCPU(b, pid)
	return m
}

// report adds the CPU time per call of each process to the results:
// "host-µs/op" and "plugin-µs/op".
func (m *cpuMeter) report() {
	self, plugin := selfCPU(m.b)-m.self, processCPU(m.b, m.pid)-m.plugin
	m.b.ReportMetric(float64(self.Microseconds())/float64(m.b.N), "host-µs/op")
	m.b.ReportMetric(float64(plugin.Microseconds())/float64(m.b.N), "plugin-µs/op")
}

func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processCPU reads utime and stime of process pid from /proc/pid/stat, in
// clock ticks of 10ms (USER_HZ is 100 on Linux).
func processCPU(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // state is fields[0]
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("parsing /proc/%d/stat: %q", pid, s)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
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
			bin, err := verifyBinary("tp", cfg.Command, cfg.SHA256, nil)
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
		defer reportCPU(b)()
		for b.Loop() {
			g, err := in.launch(context.Background(), in.verified)
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
		defer reportCPU(b)()
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

// reportCPU starts counting the CPU a start costs, which a busy machine
// inflates less than the wall time, and returns the function that reports
// it per operation: the daemon's (this process, every thread) and the
// plugin's (children, counted once reaped when stopped). Both include
// stopping the plugin.
func reportCPU(b *testing.B) func() {
	self0, children0 := rusageCPU(syscall.RUSAGE_SELF), rusageCPU(syscall.RUSAGE_CHILDREN)
	return func() {
		n := float64(b.N)
		b.ReportMetric(float64(rusageCPU(syscall.RUSAGE_SELF)-self0)/1e6/n, "host-cpu-ms/op")
		b.ReportMetric(float64(rusageCPU(syscall.RUSAGE_CHILDREN)-children0)/1e6/n, "plugin-cpu-ms/op")
	}
}

// rusageCPU is the user and system CPU time of who (RUSAGE_SELF,
// RUSAGE_CHILDREN).
func rusageCPU(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
