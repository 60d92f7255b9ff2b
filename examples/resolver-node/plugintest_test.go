// Package resolvernode tests the Node.js plugin of this folder as the daemon
// runs it: the conformance suite of sdk/plugintest against its built
// executable (the wrapper make-wrapper.sh writes), over go-plugin's handshake
// with mutual TLS, with the cases of conformance.yaml that
// `spectroauthd plugin test` reads too.
package resolvernode

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/spectroauth/spectroauth/sdk/plugintest"
)

// TestConformance runs the suite every spectroauth plugin must pass against
// the plugin's executable.
func TestConformance(t *testing.T) {
	plugintest.RunBinary(t, wrapper(t), cases(t))
}

// TestRunByHand: without the daemon's handshake the plugin says what it is
// and exits with status 1, printing nothing on stdout.
func TestRunByHand(t *testing.T) {
	cmd := exec.Command(wrapper(t))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("run by hand = %v, want exit status 1", err)
	}
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "is a spectroauth plugin") {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}

// cases reads conformance.yaml as `spectroauthd plugin test -cases` does:
// through JSON, so that keys match plugintest.Suite's fields in any case.
func cases(t *testing.T) plugintest.Suite {
	t.Helper()
	b, err := os.ReadFile("conformance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("conformance.yaml: %v", err)
	}
	j, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("conformance.yaml: %v", err)
	}
	var s plugintest.Suite
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("conformance.yaml: %v", err)
	}
	return s
}

// wrapper returns the plugin's executable, made by make-wrapper.sh as an
// operator makes it, or skips the test when Node.js is not set up here.
func wrapper(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		skipUnlessCI(t, "node is not on PATH: install Node.js 20 or later to test the Node.js plugin example")
	}
	if _, err := os.Stat("node_modules/@spectroauth/plugin-sdk/node_modules/@grpc/grpc-js/package.json"); err != nil {
		skipUnlessCI(t, "node_modules are missing: run `npm ci --ignore-scripts` in sdk/node, then in examples/resolver-node")
	}
	out := filepath.Join(t.TempDir(), "resolver-node")
	cmd := exec.Command("sh", "make-wrapper.sh", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	line, err := cmd.Output()
	if err != nil {
		t.Fatalf("make-wrapper.sh: %v\n%s", err, stderr.String())
	}
	if !strings.HasPrefix(string(line), "sha256: ") {
		t.Fatalf("make-wrapper.sh printed %q, want the sha256 line", line)
	}
	return out
}

// skipUnlessCI skips t for a missing prerequisite, or fails it under CI,
// where .ci/run installs every prerequisite and a missing one is a bug.
func skipUnlessCI(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(why + " (CI is set: this fails rather than skips)")
	}
	t.Skip(why)
}
