package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectroauth/spectroauth/sdk"
)

func TestPluginDigest(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "plugin")
	content := []byte("#!/bin/sh\necho not really a plugin\n")
	if err := os.WriteFile(bin, content, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	writable := filepath.Join(dir, "writable")
	if err := os.WriteFile(writable, content, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(writable, 0o757); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"prints the line", []string{"plugin-digest", bin}, 0, "sha256: " + hex.EncodeToString(sum[:]) + "\n", bin},
		{"symbolic link", []string{"plugin-digest", link}, 1, "", "is a symbolic link"},
		{"world-writable", []string{"plugin-digest", writable}, 1, "", "is writable by group or others (mode 0757)"},
		{"no path", []string{"plugin-digest"}, 2, "", "usage: spectroauthd plugin-digest PATH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			if stdout.String() != tc.out {
				t.Errorf("stdout = %q, want %q", stdout.String(), tc.out)
			}
			if !strings.Contains(stderr.String(), tc.err) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tc.err)
			}
		})
	}
}

func TestPluginsCommand(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "testplugin")
	if out, err := exec.Command("go", "build", "-o", bin, "./pluginhost/testdata/testplugin").CombinedOutput(); err != nil {
		t.Fatalf("building the test plugin: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	digest := hex.EncodeToString(sum[:])
	writeConfig := func(name, digest string, options string) string {
		p := filepath.Join(dir, name)
		yaml := `server:
  baseUrl: https://auth.example.com
  listen: 127.0.0.1:0
app:
  baseUrl: https://backstage.example.com
auth:
  providers:
    spectrocloud:
      production:
        issuer: https://palette.example.com/v1/oidc/tenant/t1
        clientId: client-1
        clientSecret: literal-secret
        signIn:
          resolvers:
            - {plugin: tp, resolver: byEmail, options: ` + options + `}
            - {plugin: builtin, resolver: emailLocalPartMatchingUserEntityName}
plugins:
  tp:
    command: ` + bin + `
    sha256: ` + digest + `
    env: {TESTPLUGIN_CONFIGURED: plugin-env-SECRET}
    config: {greeting: hi}
`
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		config   string
		code     int
		out, err []string
	}{
		{"lists", writeConfig("ok.yaml", digest, "{tag: x}"), 0, []string{
			"tp\n", "  command:      " + bin, "  sha256:       ok " + digest, `  version:      1.0.0 (the plugin calls itself "testplugin")`,
			"  sdk:          " + sdk.Version + ", protocol version 1",
			"  capabilities: RESOLVER, CLUSTER_STRATEGY, CLUSTER_SOURCE, CONFIGURE, VALIDATE_OPTIONS",
			"  resolvers:    byEmail, other", "  strategies:   token", "  receives:     token: no token", "  status:       ok: started, described and configured; options of 1 uses checked",
		}, nil},
		{"digest mismatch", writeConfig("mismatch.yaml", strings.Repeat("ab", 32), "{}"), 1, []string{
			"  sha256:       MISMATCH: the file has " + digest + ", the configuration says " + strings.Repeat("ab", 32), "FAILED", "spectroauthd plugin-digest " + bin,
		}, []string{"1 of 1 plugins cannot be started"}},
		{"bad options", writeConfig("options.yaml", digest, "{bogus: 1}"), 1, []string{
			"FAILED", "auth.providers.spectrocloud.production.signIn.resolvers[0].options.bogus: unknown key",
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run([]string{"plugins", "-config", tc.config}, &stdout, &stderr); code != tc.code {
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
			if strings.Contains(stdout.String()+stderr.String(), "SECRET") {
				t.Error("a plugin's env value was printed")
			}
		})
	}
}
