package mapping

import (
	"context"
	"testing"

	"github.com/spectroauth/spectroauth/sdk"
)

// BenchmarkResolve is one sign-in through the README's mapping: match,
// policy, user ref and ownership refs from five groups.
func BenchmarkResolve(b *testing.B) {
	m, _ := mustConfigure(b, testConfig())
	req := request("staff", sdk.Claims{"email": "alice@example.com", "groups": []any{"backstage-users", "platform", "sre", "dev", "ops"}})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Resolve(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
