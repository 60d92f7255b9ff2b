package oidccluster_test

import (
	"slices"
	"testing"

	"github.com/spectroauth/spectroauth/plugins/oidc-cluster/oidccluster"
	"github.com/spectroauth/spectroauth/sdk"
)

// TestDeclaresTokens checks the tokens the strategy declares in Describe:
// the daemon passes it only these (the README's strategy table says so).
func TestDeclaresTokens(t *testing.T) {
	info, err := oidccluster.Plugin().Info()
	if err != nil {
		t.Fatal(err)
	}
	want := []sdk.Token{sdk.TokenID}
	if got := info.StrategyTokens[oidccluster.StrategyName]; !slices.Equal(got, want) {
		t.Errorf("strategy %s declares %v, want %v", oidccluster.StrategyName, got, want)
	}
}
