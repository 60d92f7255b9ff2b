//go:build linux

package pluginhost

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/sdk"
)

// versionOf returns the version a "pid" call through h reports.
func versionOf(t testing.TB, h *Host) string {
	t.Helper()
	id, err := resolve(t, h, "pid")
	if err != nil {
		t.Fatalf("resolve pid: %v", err)
	}
	return id.Extra["version"].(string)
}

// closeHost closes h within 10s, failing the test on error.
func closeHost(t testing.TB, h *Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// next runs h.Next with a minute's bound.
func next(t testing.TB, h *Host, plugins map[string]config.Plugin, opts Options) (*Host, Reload, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return h.Next(ctx, plugins, opts)
}

// TestNextKeepsAnUnchangedPlugin: the same declaration keeps the same
// process, shared by both hosts, and closing the old host leaves it up.
func TestNextKeepsAnUnchangedPlugin(t *testing.T) {
	path, digest := built(t, "v1")
	opts, _ := testOptions(t)
	plugins := map[string]config.Plugin{"tp": {Command: path, SHA256: digest, CallTimeout: 2 * time.Second}}
	old := start(t, plugins, opts)
	pid := pidOf(t, old)

	h, r, err := next(t, old, plugins, opts)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	t.Cleanup(func() { closeHost(t, h) })
	if !slices.Equal(r.Kept, []string{"tp"}) || len(r.Started) != 0 || len(r.Stopping) != 0 {
		t.Fatalf("Reload = %+v, want tp kept, nothing started or stopping", r)
	}
	closeHost(t, old)
	if got := pidOf(t, h); got != pid {
		t.Fatalf("after the old host closed the plugin runs as pid %d, want the kept pid %d", got, pid)
	}
	if processGone(pid) {
		t.Fatal("closing the old host stopped a plugin the new host kept")
	}
	if err := h.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	// The last host that holds it stops it.
	closeHost(t, h)
	waitFor(t, 5*time.Second, "the kept plugin to exit with the last host", func() bool { return processGone(pid) })
}

// TestNextSwapsAChangedPlugin: a new binary starts next to the old one;
// a call in flight on the old host finishes while the old host closes, and
// then the old process is gone.
func TestNextSwapsAChangedPlugin(t *testing.T) {
	v1, d1 := built(t, "v1")
	v2, d2 := built(t, "swapped")
	opts, _ := testOptions(t)
	old := start(t, map[string]config.Plugin{"tp": {Command: v1, SHA256: d1, CallTimeout: 2 * time.Second}}, opts)
	oldPID := pidOf(t, old)

	h, r, err := next(t, old, map[string]config.Plugin{"tp": {Command: v2, SHA256: d2, CallTimeout: 2 * time.Second}}, opts)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	t.Cleanup(func() { closeHost(t, h) })
	if !slices.Equal(r.Started, []string{"tp"}) || !slices.Equal(r.Stopping, []string{"tp"}) || len(r.Kept) != 0 {
		t.Fatalf("Reload = %+v, want tp started and the old tp stopping", r)
	}
	if v := versionOf(t, h); v != "2.0.0-swapped" {
		t.Fatalf("new host's plugin reports version %q, want 2.0.0-swapped", v)
	}

	// A slow call (400ms) on the old host, then the old host closes.
	slow := make(chan error, 1)
	go func() {
		_, err := resolve(t, old, "slow")
		slow <- err
	}()
	time.Sleep(100 * time.Millisecond)
	closeHost(t, old)
	if err := <-slow; err != nil {
		t.Fatalf("the call in flight on the old host failed: %v", err)
	}
	waitFor(t, 5*time.Second, "the old plugin process to exit", func() bool { return processGone(oldPID) })
	if v := versionOf(t, h); v != "2.0.0-swapped" {
		t.Fatalf("after the old host closed the plugin reports version %q", v)
	}
}

// TestNextRefusesAndKeepsTheOldHost: a new configuration that fails (a
// wrong digest, a use the plugin does not offer) is refused naming the key,
// and the old host serves on.
func TestNextRefusesAndKeepsTheOldHost(t *testing.T) {
	v1, d1 := built(t, "v1")
	v2, _ := built(t, "swapped")
	opts, _ := testOptions(t)
	good := map[string]config.Plugin{"tp": {Command: v1, SHA256: d1, CallTimeout: 2 * time.Second}}
	old := start(t, good, opts)
	pid := pidOf(t, old)

	for name, tc := range map[string]struct {
		plugins map[string]config.Plugin
		uses    []Use
		want    string
	}{
		"wrong digest": {
			plugins: map[string]config.Plugin{"tp": {Command: v2, SHA256: d1, CallTimeout: 2 * time.Second}},
			want:    "plugins.tp.sha256",
		},
		"kept plugin lacks the resolver": {
			plugins: good,
			uses:    []Use{{Key: "auth.x.signIn.resolvers[0]", Plugin: "tp", Role: sdk.CapabilityResolver, Name: "nope"}},
			want:    "auth.x.signIn.resolvers[0].resolver",
		},
	} {
		t.Run(name, func(t *testing.T) {
			o := opts
			o.Uses = tc.uses
			h, _, err := next(t, old, tc.plugins, o)
			if err == nil {
				closeHost(t, h)
				t.Fatal("Next succeeded, want a refusal")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Next: %v, want it to name %s", err, tc.want)
			}
			if got := pidOf(t, old); got != pid {
				t.Fatalf("the old host's plugin is now pid %d, want %d", got, pid)
			}
		})
	}
}
