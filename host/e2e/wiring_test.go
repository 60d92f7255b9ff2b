package e2e

import (
	"path/filepath"
	"testing"
	"time"
)

// TestExampleWiringTypechecks type-checks the app wiring an admin copies
// (examples/backstage/packages/app/src/apis.ts) and the test page that uses
// it, against the pinned Backstage packages: the browser test bundles them
// with esbuild, which strips types without checking them.
func TestExampleWiringTypechecks(t *testing.T) {
	p := locate(t)
	node := needNode(t, p)
	art := artifactDir(t, p)
	logPath := filepath.Join(art, "tsc.log")
	start := time.Now()
	if err := runNode(t, p, node, 2*time.Minute, logPath, filepath.Join("node_modules", "typescript", "bin", "tsc"), "-p", "."); err != nil {
		t.Fatalf("tsc: %v\n%s", err, readTail(logPath, 6000))
	}
	t.Logf("type-checked in %s", time.Since(start).Round(time.Millisecond))
}
