package sdk

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestVersion: Version is a semantic version with an entry of its own in
// CHANGELOG.md, so that a release tag sdk/vVersion says what it holds.
func TestVersion(t *testing.T) {
	if !regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$`).MatchString(Version) {
		t.Errorf("Version %q is not a semantic version", Version)
	}
	b, err := os.ReadFile("CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\n## "+Version+"\n") {
		t.Errorf("CHANGELOG.md has no entry \"## %s\"", Version)
	}
}
