package pluginhost

import (
	"context"
	"testing"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/sdk"
)

// TestStrategyReceivesOnlyDeclaredTokens runs the real test plugin, whose
// strategy echoes the tokens it received, with each kind of declaration.
func TestStrategyReceivesOnlyDeclaredTokens(t *testing.T) {
	session := sdk.Session{Subject: "s1", IDToken: "the-id", AccessToken: "the-access", PaletteSessionToken: "the-palette"}
	tests := []struct {
		name     string
		declared string // TESTPLUGIN_TOKENS
		want     string
		warns    bool
	}{
		{name: "ID token only", declared: "ID", want: "id=the-id;access=;palette="},
		{name: "Palette session token only", declared: "PALETTE_SESSION", want: "id=;access=;palette=the-palette"},
		{name: "ID and access token", declared: "ID,ACCESS", want: "id=the-id;access=the-access;palette="},
		{name: "declares none", declared: "", want: "id=;access=;palette="},
		{name: "plugin predating the declaration gets all, with a warning", declared: "undeclared",
			want: "id=the-id;access=the-access;palette=the-palette", warns: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := pluginConfig(t)
			cfg.Env = map[string]config.Secret{"TESTPLUGIN_TOKENS": config.Secret(tt.declared)}
			opts, logs := testOptions(t)
			h := start(t, map[string]config.Plugin{"tp": cfg}, opts)
			strategy, err := h.ClusterStrategy("tp", "token", nil)
			if err != nil {
				t.Fatal(err)
			}
			cred, err := strategy.Credential(context.Background(), sdk.CredentialRequest{
				Cluster: sdk.Cluster{Name: "echo", Server: "https://echo.example.com"}, Session: session})
			if err != nil || cred.Token != tt.want {
				t.Errorf("strategy received %q (err %v), want %q", cred.Token, err, tt.want)
			}
			warning := logs.find(msgUndeclaredTokens)
			if (warning != nil) != tt.warns {
				t.Errorf("warning %q logged: %v, want %t", msgUndeclaredTokens, warning, tt.warns)
			}
			if tt.warns && warning["name"] != "testplugin" {
				t.Errorf("warning names %v, want the plugin testplugin", warning["name"])
			}
		})
	}
}
