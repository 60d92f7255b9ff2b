package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckConfig(t *testing.T) {
	for _, v := range []string{"CLIENT_SECRET", "CATALOG_TOKEN", "PALETTE_API_KEY"} {
		t.Setenv(v, "literal-staging-secret")
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("server:\n  listen: nope\nauth:\n  providers:\n    spectrocloud:\n      production:\n        clientSecret: hunter2-very-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		out, err []string
	}{
		{"no file", []string{"check-config"}, 2, nil, []string{"-config FILE is required"}},
		{"every bad key named", []string{"check-config", "-config", bad}, 1, nil, []string{
			"server.listen:", "auth.providers.spectrocloud.production.clientId: required", "auth.providers.spectrocloud.production.issuer: required",
		}},
		{"example validates", []string{"check-config", "-config", "../config/testdata/valid.yaml"}, 0, []string{"is valid"}, nil},
		{"print redacts", []string{"check-config", "-print", "-config", "../config/testdata/valid.yaml"}, 0, []string{"[redacted]"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			for _, s := range tc.out {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			for _, s := range tc.err {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
				}
			}
			if strings.Contains(stdout.String()+stderr.String(), "hunter2") || strings.Contains(stdout.String()+stderr.String(), "literal-staging-secret") {
				t.Errorf("a secret was printed")
			}
		})
	}
}

// -h prints the command's flags and succeeds; an unknown flag fails with 2.
func TestHelpFlagExitsZero(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"check-config", "-h"}, {"plugins", "-h"}, {"plugin-digest", "-h"}, {"storage-copy", "-h"},
		{"kube-credential", "-h"}, {"kubeconfig", "-h"}, {"login", "-h"}, {"logout", "-h"}, {"reload", "-h"}, {"plugin", "reload", "-h"},
	} {
		var stdout, stderr strings.Builder
		if code := run(args, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String()+stdout.String(), "-") {
			t.Errorf("%v: exit %d, output %q", args, code, stderr.String()+stdout.String())
		}
		var sink strings.Builder
		if code := run(append(args[:len(args)-1:len(args)-1], "-no-such-flag"), &sink, &sink); code != 2 {
			t.Errorf("%v with an unknown flag: exit %d, want 2", args[:len(args)-1], code)
		}
	}
}

func TestVersion(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	for _, tc := range []struct {
		name, version, commit, want string
	}{
		{"unstamped", "dev", "", "spectroauthd dev (commit unknown, go"},
		{"stamped", "v1.4.0-3-g1a2b3c4", "1a2b3c4d", "spectroauthd v1.4.0-3-g1a2b3c4 (commit 1a2b3c4d, go"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			version, commit = tc.version, tc.commit
			var stdout, stderr strings.Builder
			if code := run([]string{"version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), tc.want) {
				t.Errorf("exit %d, stdout %q, want it to start with %q; stderr %q", code, stdout.String(), tc.want, stderr.String())
			}
		})
	}
	var sink strings.Builder
	if code := run([]string{"version", "extra"}, &sink, &sink); code != 2 {
		t.Errorf("version with an argument: exit %d, want 2", code)
	}
}
