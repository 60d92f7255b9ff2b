package config

import (
	"slices"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	env := map[string]string{"A": "alpha", "B": "beta", "EMPTY": "", "REF": "${A}"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	malformed := "malformed ${...}: a variable name is letters, digits and _, not starting with a digit (write $${ for a literal ${)"
	unterminated := "unterminated ${ (write $${ for a literal ${)"
	tests := []struct {
		in, out  string
		vars     []string
		problems []string
	}{
		{"plain", "plain", nil, nil},
		{"", "", nil, nil},
		{"${A}", "alpha", []string{"A"}, nil},
		{"x${A}y${B}z${A}", "xalphaybetazalpha", []string{"A", "B"}, nil},
		{"$${A}", "${A}", nil, nil},
		{"$${A}${A}", "${A}alpha", []string{"A"}, nil},
		{"pa$$word $ $x {A}", "pa$$word $ $x {A}", nil, nil},
		{"${EMPTY}", "", []string{"EMPTY"}, nil},
		{"${REF}", "${A}", []string{"REF"}, nil}, // not scanned again
		{"${MISSING}", "", []string{"MISSING"}, []string{"environment variable MISSING is not set"}},
		{"a${MISSING}b${OTHER}", "ab", []string{"MISSING", "OTHER"},
			[]string{"environment variable MISSING is not set", "environment variable OTHER is not set"}},
		{"${A", "", nil, []string{unterminated}},
		{"ok ${A} then ${", "ok alpha then ", []string{"A"}, []string{unterminated}},
		{"${}", "", nil, []string{malformed}},
		{"${1A}", "", nil, []string{malformed}},
		{"${A:-default}", "", nil, []string{malformed}},
		{"${lower_case_9}", "", []string{"lower_case_9"}, []string{"environment variable lower_case_9 is not set"}},
	}
	for _, tt := range tests {
		out, vars, problems := expand(tt.in, lookup)
		if out != tt.out || !slices.Equal(vars, tt.vars) || !slices.Equal(problems, tt.problems) {
			t.Errorf("expand(%q) = %q, %q, %q; want %q, %q, %q", tt.in, out, vars, problems, tt.out, tt.vars, tt.problems)
		}
	}
}

func TestSubstituteWalksEverything(t *testing.T) {
	raw := map[string]any{
		"a": "${X}",
		"b": []any{"${X}", map[string]any{"c": "${MISSING}", "n": 3}, []any{"${X}"}},
		"d": map[string]any{"e": map[string]any{"f": "$${X}"}},
		"g": true,
	}
	origins := map[string][]string{}
	errs := substitute(raw, func(k string) (string, bool) { return "x-value", k == "X" }, origins)
	if got := errs.Error(); got != "b[1].c: environment variable MISSING is not set" {
		t.Errorf("errors = %q", got)
	}
	if strings.Contains(errs.Error(), "x-value") {
		t.Error("a value leaked into an error")
	}
	b := raw["b"].([]any)
	if raw["a"] != "x-value" || b[0] != "x-value" || b[2].([]any)[0] != "x-value" || b[1].(map[string]any)["n"] != 3 {
		t.Errorf("raw = %v", raw)
	}
	if f := raw["d"].(map[string]any)["e"].(map[string]any)["f"]; f != "${X}" {
		t.Errorf("escaped = %v", f)
	}
	for _, p := range []string{"a", "b[0]", "b[2][0]", "b[1].c"} {
		if len(origins[p]) == 0 {
			t.Errorf("origins[%q] not recorded: %v", p, origins)
		}
	}
	if _, ok := origins["d.e.f"]; ok {
		t.Error("an escaped reference is not a substitution")
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]string{
		"90s": "1m30s", "5m": "5m0s", "1h": "1h0m0s", "1h30m": "1h30m0s", "500ms": "500ms",
		"7d": "168h0m0s", "1d12h": "36h0m0s", " 2d ": "48h0m0s", "0": "0s", "-5m": "-5m0s", "0d": "0s",
	} {
		d, ok := parseDuration(in)
		if !ok || d.String() != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %s", in, d, ok, want)
		}
	}
	for _, in := range []string{"", "soon", "5", "d", "1.5d", "-1d-1h", "1d+1h", "99999999d", "1h1d"} {
		if d, ok := parseDuration(in); ok {
			t.Errorf("parseDuration(%q) = %v, want an error", in, d)
		}
	}
}
