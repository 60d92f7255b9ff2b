//go:build linux

package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/pluginclient"
)

// hostVersions returns plugin sets for a daemon that speaks versions: each
// the protocol of today, standing for the versions a later daemon adds.
func hostVersions(versions ...int) map[int]plugin.PluginSet {
	set := pluginclient.VersionedPlugins()[sdk.ProtocolVersion]
	out := map[int]plugin.PluginSet{}
	for _, v := range versions {
		out[v] = set
	}
	return out
}

// TestProtocolVersionNegotiation starts the test plugin, serving the
// versions of plugin (empty: what the SDK serves), under a supervisor that
// speaks the versions of host: they agree on the newest version both speak,
// which the status and the log show, and calls work.
func TestProtocolVersionNegotiation(t *testing.T) {
	tests := []struct {
		name   string
		host   []int
		plugin string // TESTPLUGIN_PROTOCOL
		want   int
	}{
		{name: "today's plugin, today's daemon", host: []int{1}, want: 1},
		{name: "today's plugin, a daemon that added version 2", host: []int{1, 2}, want: 1},
		{name: "a plugin that added version 2, today's daemon", host: []int{1}, plugin: "1,2", want: 1},
		{name: "both added version 2", host: []int{1, 2}, plugin: "1,2", want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := pluginConfig(t)
			if tt.plugin != "" {
				cfg.Env = map[string]config.Secret{"TESTPLUGIN_PROTOCOL": config.Secret(tt.plugin)}
			}
			opts, logs := testOptions(t)
			opts.protocols = hostVersions(tt.host...)
			h := start(t, map[string]config.Plugin{"tp": cfg}, opts)
			if got := h.Plugins()[0].ProtocolVersion; got != tt.want {
				t.Errorf("status: protocol version %d, want %d", got, tt.want)
			}
			if up := logs.find("plugin is up"); up == nil || up["protocol_version"] != float64(tt.want) {
				t.Errorf("log line %q: %v, want protocol_version %d", "plugin is up", up, tt.want)
			}
			id, err := resolve(t, h, "ok")
			if err != nil || id.UserEntityRef != "user:default/ok" {
				t.Errorf("resolve = %+v, %v", id, err)
			}
		})
	}
}

// TestProtocolVersionMismatch: a plugin that serves none of the daemon's
// versions is refused at start, with a message that names it, the version
// it offers and those the daemon speaks.
func TestProtocolVersionMismatch(t *testing.T) {
	tests := []struct {
		name    string
		host    []int
		plugin  string
		offered int // the oldest the plugin serves
		msg     string
	}{
		{name: "version 99 only", host: []int{1}, plugin: "99", offered: 99,
			msg: "offers plugin protocol version 99, and this daemon speaks only version 1: rebuild the plugin with a spectroauth SDK that serves version 1"},
		{name: "versions 98 and 99, daemon speaks 1 and 2", host: []int{1, 2}, plugin: "99,98", offered: 98,
			msg: "offers plugin protocol version 98, and this daemon speaks only versions 1, 2: rebuild the plugin with a spectroauth SDK that serves one of versions 1, 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := pluginConfig(t)
			cfg.Env = map[string]config.Secret{"TESTPLUGIN_PROTOCOL": config.Secret(tt.plugin)}
			opts, _ := testOptions(t)
			opts.protocols = hostVersions(tt.host...)
			h, err := Start(context.Background(), map[string]config.Plugin{"tp": cfg}, opts)
			if err == nil {
				h.Close(context.Background())
				t.Fatal("Start succeeded")
			}
			want := fmt.Sprintf("plugins.tp: plugin %q (%s) %s", "tp", cfg.Command, tt.msg)
			if err.Error() != want {
				t.Errorf("Start = %v\nwant     %s", err, want)
			}
			var pe *ProtocolVersionError
			if !errors.As(err, &pe) || pe.Offered != tt.offered || !slices.Equal(pe.Speaks, tt.host) {
				t.Errorf("Start = %#v, want a *ProtocolVersionError offering %d, speaking %v", pe, tt.offered, tt.host)
			}
			if !errors.Is(err, pluginclient.ErrProtocolVersion) {
				t.Errorf("Start = %v, does not match pluginclient.ErrProtocolVersion", err)
			}
		})
	}
}
