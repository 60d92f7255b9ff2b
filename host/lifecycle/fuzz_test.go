package lifecycle_test

import (
	"strings"
	"testing"

	"github.com/spectroauth/spectroauth/host/lifecycle"
)

// FuzzDescribeOAuthError: what the provider says about a refusal reaches the
// user bounded and without control characters.
func FuzzDescribeOAuthError(f *testing.F) {
	f.Fuzz(func(t *testing.T, code, desc string) {
		out := lifecycle.DescribeProviderError(code, desc)
		if len(out) > 64+200+3 {
			t.Fatalf("description of %d bytes", len(out))
		}
		if i := strings.IndexFunc(out, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
			t.Fatalf("control character in %q", out)
		}
	})
}
