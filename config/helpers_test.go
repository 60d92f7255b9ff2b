package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Secret values used by the fixtures: none of them may ever appear in an error
// or in Dump.
const (
	clientSecretValue  = "client-secret-VALUE-1"
	catalogTokenValue  = "catalog-token-VALUE-2"
	paletteAPIKeyValue = "palette-key-VALUE-3"
	stagingSecretValue = "literal-staging-secret"
)

// validEnv is the environment testdata/valid.yaml needs.
func validEnv() map[string]string {
	return map[string]string{
		"CLIENT_SECRET":   clientSecretValue,
		"CATALOG_TOKEN":   catalogTokenValue,
		"PALETTE_API_KEY": paletteAPIKeyValue,
	}
}

// with returns env plus the given NAME=value pairs.
func with(env map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// loadValid loads testdata/valid.yaml, failing the test on any error.
func loadValid(t *testing.T) *Config {
	t.Helper()
	c, err := Load(filepath.Join("testdata", "valid.yaml"), WithEnv(validEnv()))
	if err != nil {
		t.Fatalf("testdata/valid.yaml: %v", err)
	}
	return c
}

// errorLines returns the "path: message" lines of err, which must be a
// ValidationErrors.
func errorLines(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ve ValidationErrors
	if !errors.As(err, &ve) {
		t.Fatalf("error is %T, not ValidationErrors: %v", err, err)
	}
	lines := make([]string, len(ve))
	for i, fe := range ve {
		lines[i] = fe.Error()
	}
	return lines
}

// wantLines reads the "# want: " lines of a fixture.
func wantLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(string(b), "\n") {
		if w, ok := strings.CutPrefix(line, "# want: "); ok {
			want = append(want, w)
		}
	}
	return want
}

// sameLines compares two lists of error lines regardless of order.
func sameLines(t *testing.T, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Errorf("errors:\n got:\n  %s\n want:\n  %s", strings.Join(g, "\n  "), strings.Join(w, "\n  "))
	}
}

// assertNoSecrets fails if any of the secret values occurs in s.
func assertNoSecrets(t *testing.T, what, s string, secrets ...string) {
	t.Helper()
	for _, secret := range secrets {
		if strings.Contains(s, secret) {
			t.Errorf("%s contains the secret %q:\n%s", what, secret, s)
		}
	}
}
