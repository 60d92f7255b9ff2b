package sdk_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/plugintest"
)

func TestSessionOnly(t *testing.T) {
	exp := time.Unix(1700000000, 0)
	full := sdk.Session{UserEntityRef: "user:default/u", Subject: "sub", IDToken: "id", IDTokenExpiresAt: exp,
		AccessToken: "access", PaletteSessionToken: "palette", Claims: sdk.Claims{"sub": "sub"}}
	base := sdk.Session{UserEntityRef: "user:default/u", Subject: "sub", Claims: sdk.Claims{"sub": "sub"}}
	withID := base
	withID.IDToken, withID.IDTokenExpiresAt = "id", exp
	withPalette := base
	withPalette.PaletteSessionToken = "palette"
	withIDAccess := withID
	withIDAccess.AccessToken = "access"
	tests := []struct {
		name   string
		tokens []sdk.Token
		want   sdk.Session
	}{
		{name: "none", tokens: nil, want: base},
		{name: "ID", tokens: []sdk.Token{sdk.TokenID}, want: withID},
		{name: "Palette session", tokens: []sdk.Token{sdk.TokenPaletteSession}, want: withPalette},
		{name: "ID and access", tokens: []sdk.Token{sdk.TokenAccess, sdk.TokenID}, want: withIDAccess},
		{name: "all", tokens: []sdk.Token{sdk.TokenID, sdk.TokenAccess, sdk.TokenPaletteSession}, want: full},
		{name: "unknown token passes nothing", tokens: []sdk.Token{"REFRESH"}, want: base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := full.Only(tt.tokens); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Only(%v) = %#v, want %#v", tt.tokens, got, tt.want)
			}
		})
	}
}

// TestStrategyTokensCrossTheWire checks that the declaration reaches the
// host's Info: declared tokens as declared, an undeclared strategy with none
// (not nil map: that means a plugin predating the declaration).
func TestStrategyTokensCrossTheWire(t *testing.T) {
	tests := []struct {
		name     string
		declared map[string][]sdk.Token
		want     map[string][]sdk.Token
	}{
		{name: "ID and Palette session", declared: map[string][]sdk.Token{"s": {sdk.TokenID, sdk.TokenPaletteSession}},
			want: map[string][]sdk.Token{"s": {sdk.TokenID, sdk.TokenPaletteSession}}},
		{name: "nothing declared", declared: nil, want: map[string][]sdk.Token{"s": nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := plugintest.Start(t, sdk.Plugin{Name: "scripted", ClusterStrategy: &scripted{}, StrategyTokens: tt.declared})
			info, err := c.Describe(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(info.StrategyTokens, tt.want) {
				t.Errorf("StrategyTokens = %#v, want %#v", info.StrategyTokens, tt.want)
			}
		})
	}
}
