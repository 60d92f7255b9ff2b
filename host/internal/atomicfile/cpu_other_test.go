//go:build !unix

package atomicfile

import "testing"

// cpuMeter reports nothing where getrusage is missing.
type cpuMeter struct{}

func startCPU(*testing.B) cpuMeter { return cpuMeter{} }

func (cpuMeter) report() {}
