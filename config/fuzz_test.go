package config

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzExpand: ${VAR} substitution leaves text without "${" alone, undoes
// the $${ escape exactly, never scans a substituted value again, and never
// puts a value into a problem message.
func FuzzExpand(f *testing.F) {
	f.Fuzz(func(t *testing.T, s, val string) {
		env := map[string]string{"A": val, "B_2": "b"}
		lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

		out, vars, problems := expand(s, lookup)
		if !strings.Contains(s, "${") && (out != s || vars != nil || problems != nil) {
			t.Fatalf("expand(%q) = %q, %v, %v; want it unchanged", s, out, vars, problems)
		}
		if max := len(s) + strings.Count(s, "${")*len(val); len(out) > max {
			t.Fatalf("expand(%q) = %d bytes, more than %d", s, len(out), max)
		}
		for _, v := range vars {
			if !strings.Contains(s, "${"+v+"}") {
				t.Fatalf("expand(%q) reports variable %q it was not given", s, v)
			}
		}
		// Problems depend on the text alone: with another value of A they
		// read the same, so none quotes a value. (Looking for the value in
		// the messages instead mistook "iab" in "variable" for a leak.)
		other := map[string]string{"A": "\x00" + val + "-other", "B_2": "b"}
		_, _, otherProblems := expand(s, func(k string) (string, bool) { v, ok := other[k]; return v, ok })
		if !slices.Equal(problems, otherProblems) {
			t.Fatalf("expand(%q): problems %q change with the value of A (%q with another): a value is quoted", s, problems, otherProblems)
		}

		// The escape: a literal written with "${" doubled comes back.
		lit, vars, problems := expand(strings.ReplaceAll(s, "${", "$${"), lookup)
		if lit != s || len(vars) != 0 || len(problems) != 0 {
			t.Fatalf("escaped %q expands to %q, %v, %v", s, lit, vars, problems)
		}

		// A value is not scanned again, whatever it holds.
		got, vars, problems := expand("${A}", lookup)
		if got != val || !slices.Equal(vars, []string{"A"}) || len(problems) != 0 {
			t.Fatalf("expand(${A}) with A=%q = %q, %v, %v", val, got, vars, problems)
		}
	})
}

// fuzzSecret is the value of ${SECRET} while the loader is fuzzed.
const fuzzSecret = "s3cr3t-Value-91f"

// FuzzLoad: the loader takes any file and any SPECTROAUTH_ override without
// panicking; its errors never quote the value of a ${VAR}; and a
// configuration it accepts dumps to YAML that loads back and dumps the same
// (Dump's documented round trip).
func FuzzLoad(f *testing.F) {
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, file []byte, overrideKey, overrideValue string) {
		path := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		env := WithEnv(map[string]string{"SECRET": fuzzSecret, EnvPrefix + overrideKey: overrideValue})
		c, err := Load(path, env)
		if err != nil {
			if strings.Contains(err.Error(), fuzzSecret) && !bytes.Contains(file, []byte(fuzzSecret)) && !strings.Contains(overrideValue, fuzzSecret) {
				t.Fatalf("error quotes the value of ${SECRET}: %v", err)
			}
			return
		}
		dumped, err := Dump(c)
		if err != nil {
			t.Fatalf("Dump of an accepted configuration: %v", err)
		}
		again := filepath.Join(dir, "dumped.yaml")
		if err := os.WriteFile(again, dumped, 0o600); err != nil {
			t.Fatal(err)
		}
		c2, err := Load(again, WithEnv(map[string]string{"SECRET": fuzzSecret}))
		if err != nil {
			t.Fatalf("the dump does not load back: %v\n%s", err, dumped)
		}
		dumped2, err := Dump(c2)
		if err != nil || !bytes.Equal(dumped, dumped2) {
			t.Fatalf("dump changed on a round trip (%v):\n%s\n---\n%s", err, dumped, dumped2)
		}
	})
}
