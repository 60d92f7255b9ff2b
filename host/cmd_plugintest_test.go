package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPluginTestCommand runs `spectroauthd plugin test` against the built
// Go example with its cases file, then with cases that miss what the plugin
// offers, which must fail rather than skip.
func TestPluginTestCommand(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "resolver-go")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = "../examples/resolver-go"
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the example: %v\n%s", err, out)
	}
	cases, err := os.ReadFile("../examples/resolver-go/conformance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Without the not-found cases.
	partial := filepath.Join(dir, "partial.yaml")
	var kept []string
	for _, block := range strings.SplitAfter(string(cases), "\n  - name: ") {
		if !strings.Contains(block, "expect: notFound") {
			kept = append(kept, block)
		}
	}
	if err := os.WriteFile(partial, []byte(strings.Join(kept, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	unknown := filepath.Join(dir, "unknown.yaml")
	if err := os.WriteFile(unknown, []byte("resolv: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	summary := regexp.MustCompile(`(?m)^(\d+) passed, (\d+) failed$`)
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		failed   bool   // some checks fail
		out, err string // what stdout and stderr must contain
	}{
		{name: "conforms", args: []string{"-plugin", bin, "-cases", "../examples/resolver-go/conformance.yaml"}, code: 0, out: " passed, 0 failed"},
		{name: "missing cases", args: []string{"-plugin", bin, "-cases", partial}, code: 1, failed: true,
			out: `has no case of resolver "emailDomainToUser" with Expect not found`},
		{name: "no cases", args: []string{"-plugin", bin}, code: 1, failed: true, out: "Suite.BadOptions is empty"},
		{name: "unknown key", args: []string{"-plugin", bin, "-cases", unknown}, code: 1, err: `unknown field "resolv"`},
		{name: "no plugin", args: nil, code: 2, err: "usage: spectroauthd plugin test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"plugin", "test"}, tc.args...), &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.err) {
				t.Errorf("stdout = %q, stderr = %q; want %q and %q in them", stdout.String(), stderr.String(), tc.out, tc.err)
			}
			if tc.code == 2 || tc.err != "" {
				return
			}
			m := summary.FindStringSubmatch(stdout.String())
			if m == nil || m[1] == "0" || (m[2] != "0") != tc.failed {
				t.Errorf("summary %q in %q, want some passed and failed=%v", m, stdout.String(), tc.failed)
			}
		})
	}
}
