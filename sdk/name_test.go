package sdk

import (
	"regexp"
	"strings"
	"testing"
)

// isName accepts exactly what the pattern it replaces accepts.
func TestIsNameMatchesItsPattern(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,62}$`)
	for _, s := range []string{"", "a", "Z", "0", "-a", ".a", "_a", "a-", "a.b_c-D9", "byEmail", "mapping", "oidc-cluster",
		"a b", "a/b", "é", "a\x00", "a\n", "9lives",
		"a" + strings.Repeat("b", 62), "a" + strings.Repeat("b", 63), "a" + strings.Repeat("-", 62), "a" + strings.Repeat(".", 63),
	} {
		if got, want := isName(s), re.MatchString(s); got != want {
			t.Errorf("isName(%q) = %v, want %v", s, got, want)
		}
	}
}
