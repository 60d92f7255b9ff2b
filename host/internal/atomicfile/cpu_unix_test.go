//go:build unix

package atomicfile

import (
	"syscall"
	"testing"
	"time"
)

// cpuMeter reports the process's CPU (user and system, all threads) per
// benchmark operation as cpu-ns/op: on a disk, ns/op is mostly the wait
// for fsync, which costs no CPU, so it hides what a write costs the
// daemon.
type cpuMeter struct {
	b  *testing.B
	t0 time.Duration
}

func startCPU(b *testing.B) cpuMeter { return cpuMeter{b, processCPU()} }

func (m cpuMeter) report() {
	m.b.ReportMetric(float64(processCPU()-m.t0)/float64(m.b.N), "cpu-ns/op")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
