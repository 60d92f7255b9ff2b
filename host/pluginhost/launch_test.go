package pluginhost

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/sdk"
)

// TestLaunch: Launch starts a plugin as Start does, verified and
// sandboxed, described but not configured, and stop ends it.
func TestLaunch(t *testing.T) {
	path, digest := built(t, "v1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, _, err := Launch(ctx, "tp", config.Plugin{Command: path, SHA256: strings.Repeat("ab", 32)}, Options{}); err == nil ||
		!strings.Contains(err.Error(), "plugins.tp.sha256") {
		t.Fatalf("Launch with another digest = %v, want refused at plugins.tp.sha256", err)
	}

	c, stop, err := Launch(ctx, "tp", config.Plugin{Command: path, SHA256: digest,
		Env: map[string]config.Secret{"TESTPLUGIN_CONFIGURED": "from env"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	info, ok := c.Info()
	if !ok || info.Name != "testplugin" || info.SDKVersion != sdk.Version {
		t.Errorf("Info() = %+v, %v; want testplugin built with SDK %s", info, ok, sdk.Version)
	}
	req := sdk.ResolveRequest{Resolver: "byEmail", Profile: sdk.Profile{Email: "env@example.com"}}
	if _, err := c.Resolve(ctx, req); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("Resolve before Configure = %v, want a not-configured error: Launch does not configure", err)
	}
	if err := c.Configure(ctx, sdk.Config{InstanceName: "tp"}); err != nil {
		t.Fatal(err)
	}
	id, err := c.Resolve(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// The daemon's runner: only the configured environment.
	if id.Extra["configured"] != "from env" || id.Extra["pathVisible"] != false {
		t.Errorf("the plugin's environment: %v, want only what Env holds", id.Extra)
	}
	stop()
	if _, err := c.Resolve(ctx, req); err == nil {
		t.Error("Resolve after stop succeeded")
	}
}
