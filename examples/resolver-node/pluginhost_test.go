package resolvernode_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/pluginhost"
	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/sdk"
)

const (
	pluginName = "email-domain-node"
	useKey     = "auth.providers.spectrocloud.development.signIn.resolvers[0]"
)

func digest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// readPaths are what plugin.js loads: this folder and the .proto files.
func readPaths(t *testing.T) []string {
	t.Helper()
	var paths []string
	for _, p := range []string{".", "../../proto"} {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, abs)
	}
	return paths
}

// startHost starts the daemon's plugin supervisor with the Node.js plugin
// declared as an operator declares it: command = the wrapper, its digest,
// a config block, and one sign-in resolver using it.
func startHost(t *testing.T, bin string, options map[string]any) (*pluginhost.Host, *syncBuffer, error) {
	t.Helper()
	logs := &syncBuffer{}
	h, err := pluginhost.Start(context.Background(), map[string]config.Plugin{
		pluginName: {
			Command:     bin,
			SHA256:      digest(t, bin),
			Config:      map[string]any{"namespace": "staff"},
			CallTimeout: 2 * time.Second,
			ReadPaths:   readPaths(t),
		},
	}, pluginhost.Options{
		Logger:       hclog.New(&hclog.LoggerOptions{Name: "spectroauthd", Output: logs, Level: hclog.Debug}),
		Uses:         []pluginhost.Use{{Key: useKey, Plugin: pluginName, Role: sdk.CapabilityResolver, Name: resolver, Options: options}},
		StartTimeout: 30 * time.Second,
	})
	t.Cleanup(func() {
		if h != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := h.Close(ctx); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	return h, logs, err
}

// TestThroughPluginhost loads the plugin through the daemon's real plugin
// supervisor, which verifies the wrapper's digest and runs a sealed copy of
// it, and signs people in through it.
func TestThroughPluginhost(t *testing.T) {
	bin := wrapper(t)
	options := map[string]any{"domain": "example.com"}
	began := time.Now()
	h, logs, err := startHost(t, bin, options)
	if err != nil {
		if strings.Contains(logs.String(), "cannot open /proc/self/fd/") {
			t.Fatalf("pluginhost.Start: %v\n\npluginhost cannot run a script plugin: it executes the verified memfd as "+
				"/proc/self/fd/N with N close-on-exec, so the script's interpreter (here /bin/sh) finds N closed when it "+
				"opens the script. Hand the memfd to the child as fd 3 (exec.Cmd.ExtraFiles) and execute /proc/self/fd/3.", err)
		}
		t.Fatalf("pluginhost.Start: %v", err)
	}
	t.Logf("pluginhost.Start (verify, handshake with AutoMTLS, Describe, Configure, ValidateOptions): %s", time.Since(began).Round(time.Millisecond))

	st := h.Plugins()
	if len(st) != 1 || st[0].PluginName != pluginName || st[0].Version != "1.0.0" || st[0].SHA256 != digest(t, bin) || st[0].PID == 0 {
		t.Errorf("Plugins() = %+v", st)
	}

	r, err := h.Resolver(pluginName, resolver, options)
	if err != nil {
		t.Fatalf("Resolver: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in := func(email string, verified bool) signin.Input {
		return signin.Input{Env: "development", Profile: signin.Profile{Email: email, EmailVerified: verified, Subject: "8c1f"}}
	}
	id, err := r.Resolve(ctx, in("jdoe@example.com", true))
	if err != nil || id.UserEntityRef != "user:staff/jdoe" || len(id.OwnershipEntityRefs) != 1 || id.OwnershipEntityRefs[0] != "user:staff/jdoe" {
		t.Errorf("Resolve(jdoe@example.com) = %+v, %v; want user:staff/jdoe", id, err)
	}
	for _, tc := range []signin.Input{in("jdoe@example.org", true), in("jdoe@example.com", false), in("", false)} {
		if id, err := r.Resolve(ctx, tc); !errors.Is(err, signin.ErrNotFound) {
			t.Errorf("Resolve(%+v) = %+v, %v; want not found", tc.Profile, id, err)
		}
	}

	// As the first step of a sign-in chain: not found falls through.
	chain := signin.Chain{
		{Name: pluginName + "/" + resolver, Resolver: r},
		{Name: "fallback", Resolver: fixed("user:default/guest")},
	}
	if got, err := chain.Resolve(ctx, in("jdoe@example.org", true)); err != nil || got.UserEntityRef != "user:default/guest" {
		t.Errorf("chain for another domain = %+v, %v; want the fallback", got, err)
	}

	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "configured") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if out := logs.String(); !regexpMatch(`\[INFO\] .*`+pluginName+`.*configured`, out) {
		t.Errorf("the daemon's log lacks the plugin's info line 'configured':\n%s", out)
	}
}

// TestPluginhostRefusesBadOptions: the plugin validates its options when the
// daemon starts, and the daemon names the key.
func TestPluginhostRefusesBadOptions(t *testing.T) {
	bin := wrapper(t)
	_, _, err := startHost(t, bin, map[string]any{"domian": "example.com"})
	if err == nil || !strings.Contains(err.Error(), useKey+".options.domian") {
		t.Fatalf("pluginhost.Start with a misspelt option = %v, want an error naming %s.options.domian", err, useKey)
	}
}

// TestPluginhostRefusesAnotherWrapper: the digest pins the wrapper.
func TestPluginhostRefusesAnotherWrapper(t *testing.T) {
	bin := wrapper(t)
	_, err := pluginhost.Start(context.Background(), map[string]config.Plugin{
		pluginName: {Command: bin, SHA256: strings.Repeat("0", 64), CallTimeout: 2 * time.Second},
	}, pluginhost.Options{StartTimeout: 30 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("pluginhost.Start with another digest = %v, want a digest mismatch", err)
	}
}

// fixed is a resolver that always finds the same user.
type fixed string

func (f fixed) Resolve(context.Context, signin.Input) (signin.Identity, error) {
	return signin.Identity{UserEntityRef: string(f), OwnershipEntityRefs: []string{string(f)}}, nil
}
