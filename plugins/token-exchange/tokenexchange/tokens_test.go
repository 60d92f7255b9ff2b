package tokenexchange_test

import (
	"slices"
	"testing"

	"github.com/spectroauth/spectroauth/plugins/token-exchange/tokenexchange"
	"github.com/spectroauth/spectroauth/sdk"
)

// TestDeclaresTokens checks the tokens the strategy declares in Describe:
// the daemon passes it only these (the README's strategy table says so).
func TestDeclaresTokens(t *testing.T) {
	info, err := tokenexchange.Plugin().Info()
	if err != nil {
		t.Fatal(err)
	}
	want := []sdk.Token{sdk.TokenID, sdk.TokenAccess}
	if got := info.StrategyTokens[tokenexchange.StrategyName]; !slices.Equal(got, want) {
		t.Errorf("strategy %s declares %v, want %v", tokenexchange.StrategyName, got, want)
	}
}
