//go:build linux

package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/pluginclient"
)

func TestHappyPath(t *testing.T) {
	opts, _ := testOptions(t)
	cfg := pluginConfig(t)
	cfg.Config = map[string]any{"greeting": "hi"}
	opts.Uses = []Use{
		{Key: "auth.providers.spectrocloud.development.signIn.resolvers[0]", Plugin: "tp", Role: sdk.CapabilityResolver, Name: "byEmail", Options: map[string]any{"tag": "t1"}},
		{Key: "kubernetes.clusters[0].strategy", Plugin: "tp", Role: sdk.CapabilityClusterStrategy, Name: "token"},
		{Key: "kubernetes.sources[0]", Plugin: "tp", Role: sdk.CapabilityClusterSource},
	}
	// Two plugins from one binary, started in parallel.
	h := start(t, map[string]config.Plugin{"tp": cfg, "tp2": pluginConfig(t)}, opts)
	if err := h.Ready(); err != nil {
		t.Fatalf("Ready = %v", err)
	}

	st := h.Plugins()
	if len(st) != 2 || st[0].Name != "tp" || st[1].Name != "tp2" {
		t.Fatalf("Plugins = %+v", st)
	}
	s := st[0]
	if s.State != StateUp || s.Version != "1.0.0" || s.PluginName != "testplugin" || s.SHA256 != cfg.SHA256 ||
		s.Path != cfg.Command || s.PID == 0 || s.PID == os.Getpid() || s.Restarts != 0 || s.Reason != "" {
		t.Errorf("status = %+v", s)
	}
	wantCaps := []sdk.Capability{sdk.CapabilityResolver, sdk.CapabilityClusterStrategy, sdk.CapabilityClusterSource, sdk.CapabilityConfigure, sdk.CapabilityValidateOptions}
	if !slices.Equal(s.Capabilities, wantCaps) || !slices.Equal(s.Resolvers, []string{"byEmail", "other"}) || !slices.Equal(s.Strategies, []string{"token"}) {
		t.Errorf("description = %v %v %v", s.Capabilities, s.Resolvers, s.Strategies)
	}

	// A binary plugin does not keep the memfd it runs from.
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(s.PID) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, _ := os.Readlink("/proc/" + strconv.Itoa(s.PID) + "/fd/" + fd.Name())
		if strings.Contains(target, "memfd:") {
			t.Errorf("the plugin holds descriptor %s -> %s", fd.Name(), target)
		}
	}

	// signin.Input crosses the wire field by field.
	r, err := h.Resolver("tp", "byEmail", map[string]any{"tag": "t1"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := r.Resolve(context.Background(), signin.Input{
		Env:    "development",
		Claims: map[string]any{"custom": "c1", "sub": "s1"},
		Profile: signin.Profile{
			Email: "echo@example.com", EmailVerified: true, DisplayName: "Echo", Subject: "s1",
			Issuer: "https://issuer.example", PreferredUsername: "echo", Groups: []string{"a", "b"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if id.UserEntityRef != "user:default/echo" || !slices.Equal(id.OwnershipEntityRefs, []string{"user:default/echo"}) {
		t.Errorf("identity = %+v", id)
	}
	want := map[string]any{
		"subject": "s1", "issuer": "https://issuer.example", "preferredUsername": "echo", "groups": []any{"a", "b"},
		"custom": "c1", "displayName": "Echo", "emailVerified": true, "resolver": "byEmail", "option": "t1", "greeting": "hi",
	}
	for k, v := range want {
		if got := id.Extra[k]; !equalJSON(got, v) {
			t.Errorf("Extra[%s] = %#v, want %#v", k, got, v)
		}
	}

	// "Not found" is signin.ErrNotFound, which is sdk.ErrNotFound: the chain
	// falls through to its next step.
	_, err = resolve(t, h, "notfound")
	if !errors.Is(err, signin.ErrNotFound) || !errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), `plugin "tp"`) {
		t.Errorf("not found = %v", err)
	}
	chain := signin.Chain{{Name: "tp/byEmail", Resolver: r}, {Name: "builtin", Resolver: signin.EmailLocalPart{}}}
	id, err = chain.Resolve(context.Background(), signin.Input{Profile: signin.Profile{Email: "notfound@example.com", EmailVerified: true}})
	if err != nil || id.UserEntityRef != "user:default/notfound" {
		t.Errorf("chain after not found = %+v, %v", id, err)
	}

	strategy, err := h.ClusterStrategy("tp", "token", nil)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := strategy.Credential(context.Background(), sdk.CredentialRequest{Cluster: sdk.Cluster{Name: "alpha", Server: "https://alpha.example.com"}, Session: sdk.Session{Subject: "s1"}})
	if err != nil || cred.Token != "tok-alpha-s1" || cred.ExpiresAt.IsZero() {
		t.Errorf("Credential = %v, %v", cred, err)
	}
	if _, err := strategy.Credential(context.Background(), sdk.CredentialRequest{Cluster: sdk.Cluster{Name: "alpha", Server: "https://alpha.example.com"}, Session: sdk.Session{Subject: "nobody"}}); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Credential for nobody = %v, want sdk.ErrNotFound", err)
	}
	source, err := h.ClusterSource("tp", nil)
	if err != nil {
		t.Fatal(err)
	}
	clusters, err := source.ListClusters(context.Background(), sdk.ListClustersRequest{})
	if err != nil || len(clusters) != 1 || clusters[0].Name != "alpha" {
		t.Errorf("ListClusters = %+v, %v", clusters, err)
	}

	// What the plugin does not offer is refused when the adapter is made.
	for _, err := range []error{
		second(h.Resolver("tp", "nope", nil)),
		second(h.Resolver("missing", "byEmail", nil)),
		second(h.ClusterStrategy("tp", "nope", nil)),
	} {
		if err == nil {
			t.Error("an adapter for something not offered was made")
		}
	}
	if _, err := h.Resolver("tp", "nope", nil); err == nil || err.Error() != `plugin "tp" offers no resolver "nope" (it offers: byEmail, other)` {
		t.Errorf("unknown resolver: %v", err)
	}
	// Options are converted for the wire once, when the step is made: what
	// cannot cross it fails the configuration, not the first sign-in.
	if _, err := h.Resolver("tp", "byEmail", map[string]any{"hook": func() {}}); !errors.As(err, new(*sdk.ConfigError)) ||
		!strings.Contains(err.Error(), `options of resolver "byEmail" of plugin "tp"`) {
		t.Errorf("resolver with options that cannot be sent: %v, want a *sdk.ConfigError naming it", err)
	}
	if st := h.Plugins()[0]; st.Calls < 5 || st.Failures < 2 {
		t.Errorf("counters = %d calls, %d failures", st.Calls, st.Failures)
	}
}

func second[T any](_ T, err error) error { return err }

func equalJSON(a, b any) bool {
	as, bs := []any{a}, []any{b}
	return strings.EqualFold(strings.TrimSpace(fmtJSON(as)), strings.TrimSpace(fmtJSON(bs)))
}

func TestBinaryChecks(t *testing.T) {
	good, digest := install(t, "v1")
	dir := t.TempDir()
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	groupWritable := filepath.Join(dir, "group-writable")
	copyFile(t, good, groupWritable, 0o775)
	worldWritable := filepath.Join(dir, "world-writable")
	copyFile(t, good, worldWritable, 0o757)
	notExec := filepath.Join(dir, "not-executable")
	copyFile(t, good, notExec, 0o644)
	for _, p := range []string{groupWritable, worldWritable} {
		// the umask may have kept the bits from being set
		if err := os.Chmod(p, map[string]os.FileMode{groupWritable: 0o775, worldWritable: 0o757}[p]); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name, path, digest, key, want string
	}{
		{"checksum mismatch", good, strings.Repeat("ab", 32), "plugins.tp.sha256", "has SHA-256 " + digest + ", not the configured " + strings.Repeat("ab", 32)},
		{"symbolic link", link, digest, "plugins.tp.command", "is a symbolic link (to " + good + ")"},
		{"group-writable", groupWritable, digest, "plugins.tp.command", "is writable by group or others (mode 0775)"},
		{"world-writable", worldWritable, digest, "plugins.tp.command", "is writable by group or others (mode 0757)"},
		{"not executable", notExec, digest, "plugins.tp.command", "is not executable by its owner (mode 0644)"},
		{"directory", dir, digest, "plugins.tp.command", "is not a regular file"},
		{"missing", filepath.Join(dir, "missing"), digest, "plugins.tp.command", "no such file or directory"},
		{"not on PATH", "no-such-plugin-binary", digest, "plugins.tp.command", "is not an absolute path and is not found on PATH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, logs := testOptions(t)
			h, err := Start(context.Background(), map[string]config.Plugin{"tp": {Command: tt.path, SHA256: tt.digest, CallTimeout: time.Second}}, opts)
			if err == nil {
				h.Close(context.Background())
				t.Fatal("Start succeeded")
			}
			if !strings.HasPrefix(err.Error(), tt.key+": ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start error = %q, want %s: …%s…", err, tt.key, tt.want)
			}
			if strings.Contains(logs.String(), "plugin is up") {
				t.Error("the plugin ran")
			}
			// plugin-digest refuses what Start refuses (but a digest it
			// computes).
			if tt.name != "checksum mismatch" {
				if _, _, err := Digest(tt.path); err == nil {
					t.Error("Digest accepted the file")
				}
			}
		})
	}

	abs, got, err := Digest(good)
	if err != nil || abs != good || got != digest {
		t.Errorf("Digest = %s %s %v, want %s %s", abs, got, err, good, digest)
	}
	// A relative path is made absolute.
	t.Chdir(filepath.Dir(good))
	if abs, _, err := Digest("./testplugin"); err != nil || abs != good {
		t.Errorf("Digest of a relative path = %s, %v", abs, err)
	}
}

// TestExecutesVerifiedBytes replaces the binary after it has been verified,
// by renaming another over it and by rewriting it in place: the plugin that
// runs, then and after a restart, is still the verified one.
func TestExecutesVerifiedBytes(t *testing.T) {
	other, _ := built(t, "swapped")
	for _, how := range []string{"rename", "rewrite"} {
		t.Run(how, func(t *testing.T) {
			path, digest := install(t, "v1")
			swapped := false
			testHookVerified = func(p string) {
				if p != path || swapped {
					return
				}
				swapped = true
				if how == "rename" {
					tmp := path + ".new"
					copyFile(t, other, tmp, 0o755)
					if err := os.Rename(tmp, path); err != nil {
						t.Error(err)
					}
					return
				}
				copyFile(t, other, path, 0o755) // O_TRUNC: same inode, new bytes
			}
			t.Cleanup(func() { testHookVerified = nil })
			opts, _ := testOptions(t)
			opts.BackoffMin = 10 * time.Millisecond
			h := start(t, map[string]config.Plugin{"tp": {Command: path, SHA256: digest, CallTimeout: 5 * time.Second}}, opts)
			if !swapped {
				t.Fatal("the test hook did not run")
			}
			if d, _ := fileDigest(path); d == digest {
				t.Fatal("the file was not replaced")
			}
			id, err := resolve(t, h, "pid")
			if err != nil || id.Extra["version"] != "1.0.0" {
				t.Fatalf("after the swap the plugin is %v (%v), want version 1.0.0", id.Extra["version"], err)
			}
			// A restart runs the verified bytes again.
			if _, err := resolve(t, h, "crash"); err == nil {
				t.Fatal("crash call succeeded")
			}
			waitFor(t, 20*time.Second, "the restart", func() bool { return h.Plugins()[0].Restarts == 1 && h.Ready() == nil })
			id, err = resolve(t, h, "pid")
			if err != nil || id.Extra["version"] != "1.0.0" {
				t.Fatalf("after a restart the plugin is %v (%v), want version 1.0.0", id.Extra["version"], err)
			}
		})
	}
}

// TestUnverifiedBinaryNeverRuns: go-plugin prepares the first launch while
// the binary is verified, but a binary that fails verification is not
// executed, and the launch leaves nothing behind.
func TestUnverifiedBinaryNeverRuns(t *testing.T) {
	tmp := t.TempDir() // go-plugin makes its socket directory here
	t.Setenv("TMPDIR", tmp)
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	script := filepath.Join(dir, "plugin.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ntouch '"+marker+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	opts, _ := testOptions(t)
	h, err := Start(context.Background(), map[string]config.Plugin{"tp": {Command: script, SHA256: strings.Repeat("ab", 32), CallTimeout: time.Second}}, opts)
	if err == nil {
		h.Close(context.Background())
		t.Fatal("Start succeeded")
	}
	if !strings.HasPrefix(err.Error(), "plugins.tp.sha256: ") {
		t.Errorf("Start error = %q, want plugins.tp.sha256: …", err)
	}
	time.Sleep(100 * time.Millisecond) // a script started by mistake would have run by now
	if _, err := os.Stat(marker); err == nil {
		t.Error("the unverified binary ran")
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("the failed start left %s behind in TMPDIR", left[0].Name())
	}
}

func TestConfigurationErrors(t *testing.T) {
	const res = "auth.providers.spectrocloud.development.signIn.resolvers[0]"
	tests := []struct {
		name   string
		config map[string]any
		env    map[string]config.Secret
		uses   []Use
		want   string
	}{
		{name: "bad config value", config: map[string]any{"greeting": 42},
			want: `plugins.tp.config.greeting: must be a string, not a number`},
		{name: "unknown config key", config: map[string]any{"grreting": "x"},
			want: `plugins.tp.config.grreting: unknown key`},
		{name: "bad options", uses: []Use{{Key: res, Plugin: "tp", Role: sdk.CapabilityResolver, Name: "byEmail", Options: map[string]any{"bogus": 1}}},
			want: res + `.options.bogus: unknown key`},
		{name: "resolver not offered", uses: []Use{{Key: res, Plugin: "tp", Role: sdk.CapabilityResolver, Name: "nope"}},
			want: res + `.resolver: plugin "tp" offers no resolver "nope" (it offers: byEmail, other)`},
		{name: "strategy not offered", uses: []Use{{Key: "kubernetes.clusters[0].strategy", Plugin: "tp", Role: sdk.CapabilityClusterStrategy, Name: "nope"}},
			want: `kubernetes.clusters[0].strategy.strategy: plugin "tp" offers no cluster strategy "nope" (it offers: token)`},
		{name: "unknown plugin", uses: []Use{{Key: res, Plugin: "nope", Role: sdk.CapabilityResolver, Name: "x"}},
			want: res + `.plugin: unknown plugin "nope": not a key of plugins`},
		{name: "reserved environment variable", env: map[string]config.Secret{"PLUGIN_CLIENT_CERT": "x"},
			want: `plugins.tp.env.PLUGIN_CLIENT_CERT: the daemon sets this variable for the plugin handshake; choose another name`},
		{name: "certificate-line request", env: map[string]config.Secret{pluginclient.CertLineEnv: "0"},
			want: `plugins.tp.env.` + pluginclient.CertLineEnv + `: the daemon sets this variable for the plugin handshake; choose another name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := pluginConfig(t)
			cfg.Config, cfg.Env = tt.config, tt.env
			opts, logs := testOptions(t)
			opts.Uses = tt.uses
			h, err := Start(context.Background(), map[string]config.Plugin{"tp": cfg}, opts)
			if err == nil {
				h.Close(context.Background())
				t.Fatal("Start succeeded")
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Start error =\n%s\nwant it to start with\n%s", err, tt.want)
			}
			var ce *sdk.ConfigError
			if strings.Contains(tt.want, "config.") && !errors.As(err, &ce) {
				t.Errorf("%v is no *sdk.ConfigError", err)
			}
			// A failed start leaves no plugin running.
			for _, m := range logs.lines() {
				if m["@message"] == "plugin is up" {
					t.Error("plugin is up after a failed start")
				}
			}
		})
	}
}

func TestEnvironmentIsolation(t *testing.T) {
	t.Setenv("SPECTROCLOUD_CLIENT_SECRET", "daemon-secret-value")
	cfg := pluginConfig(t)
	cfg.Env = map[string]config.Secret{"TESTPLUGIN_CONFIGURED": "plugin-secret-value"}
	opts, logs := testOptions(t)
	h := start(t, map[string]config.Plugin{"tp": cfg}, opts)
	id, err := resolve(t, h, "env")
	if err != nil {
		t.Fatal(err)
	}
	if id.Extra["secretVisible"] != false || id.Extra["pathVisible"] != false {
		t.Errorf("the plugin sees the daemon's environment: %v", id.Extra)
	}
	if id.Extra["configured"] != "plugin-secret-value" {
		t.Errorf("the plugin does not see its configured env: %v", id.Extra)
	}
	if id.Extra["logLevel"] != "debug" {
		t.Errorf("the plugin's log level = %v, want the daemon's (debug)", id.Extra["logLevel"])
	}
	if id.Extra["gomaxprocs"] != 1.0 {
		t.Errorf("the plugin's GOMAXPROCS = %v, want 1 by default", id.Extra["gomaxprocs"])
	}
	if strings.Contains(logs.String(), "plugin-secret-value") {
		t.Error("a plugin's env value is in the log")
	}
}

// TestEnvironmentOverridesGOMAXPROCS: `env:` sets a plugin's GOMAXPROCS.
func TestEnvironmentOverridesGOMAXPROCS(t *testing.T) {
	cfg := pluginConfig(t)
	cfg.Env = map[string]config.Secret{"GOMAXPROCS": "2"}
	h := start(t, map[string]config.Plugin{"tp": cfg}, Options{StartTimeout: 30 * time.Second})
	id, err := resolve(t, h, "env")
	if err != nil {
		t.Fatal(err)
	}
	if id.Extra["gomaxprocs"] != 2.0 {
		t.Errorf("the plugin's GOMAXPROCS = %v, want the configured 2", id.Extra["gomaxprocs"])
	}
}

func TestLogForwarding(t *testing.T) {
	opts, logs := testOptions(t)
	h := start(t, map[string]config.Plugin{"tp": pluginConfig(t)}, opts)
	for _, what := range []string{"log", "stderr", "badlog"} {
		if _, err := resolve(t, h, what); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	waitFor(t, 10*time.Second, "the plugin's log lines", func() bool {
		return logs.find("plugin sub error") != nil && logs.find("plain line on stderr") != nil && logs.find("forged\ufffdline") != nil
	})
	check := func(msg, level string, fields map[string]any) {
		t.Helper()
		m := logs.find(msg)
		if m == nil {
			t.Errorf("no log line %q in\n%s", msg, logs)
			return
		}
		if m["@level"] != level || m["@module"] != "test.plugins.tp" || m["plugin"] != "tp" {
			t.Errorf("log line %q: %v", msg, m)
		}
		for k, v := range fields {
			if !equalJSON(m[k], v) {
				t.Errorf("log line %q: %s = %v, want %v", msg, k, m[k], v)
			}
		}
	}
	check("plugin warning", "warn", map[string]any{"detail": "w1"})
	check("plugin debug detail", "debug", nil)
	check("plugin sub error", "error", map[string]any{"n": 7, "module": "testplugin.sub"})
	check("plain line on stderr", "info", nil)
	check("forged\ufffdline", "error", nil)
	// A line go-plugin's own parser would panic on is logged as text.
	check(`{"@message": 5, "@level": ["x"]}`, "info", nil)
	if _, err := resolve(t, h, "ok"); err != nil || h.Ready() != nil {
		t.Errorf("after odd log lines: %v, %v", err, h.Ready())
	}
}

func TestStdoutIsReported(t *testing.T) {
	opts, logs := testOptions(t)
	h := start(t, map[string]config.Plugin{"tp": pluginConfig(t)}, opts)
	if _, err := resolve(t, h, "stdout"); err != nil {
		t.Fatal(err)
	}
	const msg = "plugin wrote to stdout, which belongs to the plugin protocol; plugins must log to stderr"
	waitFor(t, 10*time.Second, "the stdout report", func() bool { return logs.find(msg) != nil })
	if m := logs.find(msg); m["@level"] != "warn" || m["line"] != "stray line from the plugin" || m["plugin"] != "tp" {
		t.Errorf("report = %v", m)
	}
	if _, err := resolve(t, h, "ok"); err != nil || h.Ready() != nil || h.Plugins()[0].Restarts != 0 {
		t.Errorf("after stdout: %v, %v, %d restarts", err, h.Ready(), h.Plugins()[0].Restarts)
	}
}

// TestCrashMidCall: the sign-in fails (it does not fall through to the next
// resolver), calls fail fast while the plugin is down, and it comes back.
func TestCrashMidCall(t *testing.T) {
	opts, logs := testOptions(t)
	opts.BackoffMin = 500 * time.Millisecond
	h := start(t, map[string]config.Plugin{"tp": pluginConfig(t)}, opts)
	pid := pidOf(t, h)
	r, _ := h.Resolver("tp", "byEmail", nil)
	chain := signin.Chain{{Name: "tp/byEmail", Resolver: r}, {Name: "builtin", Resolver: signin.EmailLocalPart{}}}
	id, err := chain.Resolve(context.Background(), signin.Input{Profile: signin.Profile{Email: "crash@example.com", EmailVerified: true}})
	if err == nil || errors.Is(err, signin.ErrNotFound) || errors.Is(err, signin.ErrNoIdentity) || id.UserEntityRef != "" {
		t.Fatalf("sign-in through a crashing plugin = %+v, %v; want a failure", id, err)
	}
	if !strings.Contains(err.Error(), `plugin "tp": resolver byEmail: the connection to the plugin broke (did it crash?)`) {
		t.Errorf("error does not say the plugin crashed: %v", err)
	}

	// While it is down, calls fail at once and say when to retry.
	re := regexp.MustCompile(`^plugin "tp" is restarting after a crash \(exit status 3\); retry in [0-9.]+m?s$`)
	var down error
	waitFor(t, 10*time.Second, "a fail-fast error", func() bool {
		_, down = resolve(t, h, "ok")
		return errors.Is(down, ErrUnavailable)
	})
	if !re.MatchString(down.Error()) {
		t.Errorf("error while down = %q", down)
	}
	if err := h.Ready(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ready while down = %v", err)
	}
	st := h.Plugins()[0]
	if st.State != StateRestarting || !strings.Contains(st.Reason, "after a crash") {
		t.Errorf("status while down = %+v", st)
	}

	waitFor(t, 20*time.Second, "the restart", func() bool { return h.Ready() == nil })
	if newPID := pidOf(t, h); newPID == pid {
		t.Error("same pid after a restart")
	}
	if st := h.Plugins()[0]; st.Restarts != 1 || st.State != StateUp {
		t.Errorf("status after the restart = %+v", st)
	}
	if logs.find("plugin is up again") == nil {
		t.Error("the restart is not logged")
	}
}

// TestHang: calls that run into their deadline fail with it; after
// MaxMisses of them the plugin is killed and restarted.
func TestHang(t *testing.T) {
	cfg := pluginConfig(t)
	cfg.CallTimeout = 300 * time.Millisecond
	opts, _ := testOptions(t)
	opts.MaxMisses = 2
	opts.HealthInterval = time.Hour // only the calls tell
	h := start(t, map[string]config.Plugin{"tp": cfg}, opts)
	pid := pidOf(t, h)

	began := time.Now()
	_, err := resolve(t, h, "hang")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `plugin "tp": resolver byEmail: no answer within the 300ms call timeout`) {
		t.Fatalf("hanging call = %v", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("hanging call took %s", took)
	}
	if h.Ready() != nil {
		t.Fatal("down after one miss")
	}
	if _, err := resolve(t, h, "hang"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second hanging call = %v", err)
	}
	waitFor(t, 10*time.Second, "the hung process to be killed", func() bool { return processGone(pid) })
	waitFor(t, 20*time.Second, "the restart", func() bool { return h.Ready() == nil })
	if st := h.Plugins()[0]; st.Restarts != 1 {
		t.Errorf("restarts = %d", st.Restarts)
	}
	if _, err := resolve(t, h, "ok"); err != nil {
		t.Errorf("after the restart: %v", err)
	}
}

// TestSlowUpstream: a plugin whose method waits for its context, as for an
// upstream that is slow, gives up at the SDK's deadline, a margin before the
// host's, and answers that it ran out of time. That is an answer, not a
// miss: however many such calls come in a row, the plugin is not restarted,
// and the error says what happened, not that the plugin did not answer.
func TestSlowUpstream(t *testing.T) {
	cfg := pluginConfig(t)
	cfg.CallTimeout = 2500 * time.Millisecond // the SDK's margin: 250ms, room for a busy machine
	opts, logs := testOptions(t)
	opts.MaxMisses = 2
	opts.HealthInterval = time.Hour // only the calls tell
	h := start(t, map[string]config.Plugin{"tp": cfg}, opts)
	pid := pidOf(t, h)

	const (
		want     = `plugin "tp": resolver byEmail: the plugin answered, within the 2.5s call timeout, that it ran out of time: `
		fromPlug = "the plugin's own work ran out of time: the test upstream did not answer: context deadline exceeded"
	)
	for i := range opts.MaxMisses + 2 {
		began := time.Now()
		_, err := resolve(t, h, "upstream")
		took := time.Since(began)
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, signin.ErrNotFound) ||
			!strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), fromPlug) {
			t.Fatalf("call %d = %v; want %q ... %q", i+1, err, want, fromPlug)
		}
		if took >= cfg.CallTimeout {
			t.Errorf("call %d took %s, not less than the call timeout", i+1, took)
		}
		if err := h.Ready(); err != nil {
			t.Fatalf("after call %d: %v", i+1, err)
		}
	}
	if st := h.Plugins()[0]; st.Restarts != 0 || st.PID != pid || st.State != StateUp || st.Failures != uint64(opts.MaxMisses+2) {
		t.Errorf("status = %+v; want the same process, up, never restarted", st)
	}
	if got := pidOf(t, h); got != pid {
		t.Errorf("pid %d, was %d", got, pid)
	}
	if processGone(pid) {
		t.Error("the plugin's process is gone")
	}
	if m := logs.find("plugin call ran into its deadline"); m != nil {
		t.Errorf("a call counted as a miss: %v", m)
	}
	if m := logs.find("plugin answered that it ran out of time; not a miss"); m == nil || m["@level"] != "warn" || m["call"] != "resolver byEmail" {
		t.Errorf("log line = %v", m)
	}
}

// TestHealthCheck: a plugin that stops answering altogether (SIGSTOP) fails
// its health checks and is replaced.
func TestHealthCheck(t *testing.T) {
	cfg := pluginConfig(t)
	cfg.CallTimeout = 200 * time.Millisecond
	opts, logs := testOptions(t)
	opts.MaxMisses = 2
	opts.HealthInterval = 100 * time.Millisecond
	h := start(t, map[string]config.Plugin{"tp": cfg}, opts)
	pid := pidOf(t, h)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a restart", func() bool { return h.Plugins()[0].Restarts == 1 && h.Ready() == nil })
	if !processGone(pid) {
		t.Error("the stopped process is still there")
	}
	m := logs.find("plugin is down; killing what is left of it and starting it again")
	if m == nil || !strings.Contains(m["reason"].(string), "after it stopped answering: 2 health checks in a row failed") {
		t.Errorf("down log line = %v", m)
	}
}

func TestInvalidAnswers(t *testing.T) {
	opts, _ := testOptions(t)
	h := start(t, map[string]config.Plugin{"tp": pluginConfig(t)}, opts)
	tests := []struct{ local, want string }{
		{"garbage", "UserEntityRef"},
		{"oversized", "OwnershipEntityRefs has 100 refs, more than 64"},
		{"huge", "ResourceExhausted"},
	}
	for _, tt := range tests {
		_, err := resolve(t, h, tt.local)
		if err == nil || errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", tt.local, err, tt.want)
		}
		if tt.local != "huge" && !errors.Is(err, pluginclient.ErrInvalidResponse) {
			t.Errorf("%s: %v is no ErrInvalidResponse", tt.local, err)
		}
	}
	if _, err := resolve(t, h, "ok"); err != nil || h.Plugins()[0].Restarts != 0 {
		t.Errorf("after invalid answers: %v", err)
	}
}

func TestGracefulShutdown(t *testing.T) {
	opts, logs := testOptions(t)
	h := start(t, map[string]config.Plugin{"tp": pluginConfig(t)}, opts)
	pid := pidOf(t, h)
	type result struct {
		id  signin.Identity
		err error
	}
	slow := make(chan result, 1)
	go func() {
		id, err := resolve(t, h, "slow")
		slow <- result{id, err}
	}()
	waitFor(t, 10*time.Second, "the slow call to start", func() bool { return logs.find("slow call started") != nil })
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		closed <- h.Close(ctx)
	}()
	// New calls are refused at once...
	waitFor(t, 10*time.Second, "new calls to be refused", func() bool {
		_, err := resolve(t, h, "ok")
		return errors.Is(err, ErrClosed)
	})
	// ...the one in flight finishes...
	if r := <-slow; r.err != nil || r.id.UserEntityRef != "user:default/slow" {
		t.Errorf("in-flight call = %+v, %v", r.id, r.err)
	}
	// ...and then the plugin stops.
	if err := <-closed; err != nil {
		t.Errorf("Close = %v", err)
	}
	waitFor(t, 10*time.Second, "the plugin to exit", func() bool { return processGone(pid) })
	if _, err := resolve(t, h, "ok"); !errors.Is(err, ErrClosed) || err.Error() != `plugin "tp" is stopped because the daemon is shutting down` {
		t.Errorf("call after Close = %v", err)
	}
	if st := h.Plugins()[0]; st.State != StateStopped {
		t.Errorf("state after Close = %s", st.State)
	}
}

// TestShutdownDeadline: a call that does not finish in time is cut short.
func TestShutdownDeadline(t *testing.T) {
	cfg := pluginConfig(t)
	cfg.CallTimeout = time.Minute
	opts, _ := testOptions(t)
	h := start(t, map[string]config.Plugin{"tp": cfg}, opts)
	pid := pidOf(t, h)
	hung := make(chan error, 1)
	go func() {
		_, err := resolve(t, h, "hang")
		hung <- err
	}()
	waitFor(t, 10*time.Second, "the call to be in flight", func() bool { return h.calls.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := h.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "1 calls still in flight") {
		t.Errorf("Close = %v", err)
	}
	if err := <-hung; err == nil {
		t.Error("the hung call succeeded")
	}
	if !processGone(pid) {
		t.Error("the plugin is still running")
	}
}

// TestNoOrphans kills a daemon (a child process running Start) with SIGKILL:
// its plugin dies with it.
func TestNoOrphans(t *testing.T) {
	path, digest := built(t, "v1")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), daemonEnv+"="+path+"|"+digest)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr logBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		b := make([]byte, 64)
		n, _ := out.Read(b)
		line <- string(b[:n])
	}()
	var pid int
	select {
	case l := <-line:
		if _, err := fmt.Sscanf(l, "pid %d", &pid); err != nil || pid <= 0 {
			t.Fatalf("daemon said %q; stderr:\n%s", l, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the daemon did not start its plugin; stderr:\n%s", stderr.String())
	}
	if processGone(pid) {
		t.Fatal("the plugin is not running")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitFor(t, 10*time.Second, "the orphaned plugin to die", func() bool { return processGone(pid) })
}

// TestStarterThreadExit: a plugin started by a goroutine whose OS thread
// then dies is not killed by its parent-death signal, because plugins are
// forked from a thread of their own that lives as long as the plugin.
func TestStarterThreadExit(t *testing.T) {
	opts, _ := testOptions(t)
	opts.BackoffMin = 10 * time.Millisecond
	type started struct {
		h   *Host
		tid int
		err error
	}
	ch := make(chan started, 1)
	release := make(chan struct{})
	defer close(release)
	var run func()
	run = func() {
		runtime.LockOSThread()
		if unix.Gettid() == os.Getpid() {
			// The main thread never exits: hold it, and start from
			// another thread.
			go run()
			<-release
			runtime.UnlockOSThread()
			return
		}
		// Never unlocked: the thread exits with this goroutine.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		h, err := Start(ctx, map[string]config.Plugin{"tp": pluginConfig(t)}, opts)
		ch <- started{h, unix.Gettid(), err}
	}
	go run()
	s := <-ch
	if s.err != nil {
		t.Fatal(s.err)
	}
	t.Cleanup(func() { s.h.Close(context.Background()) })
	waitFor(t, 10*time.Second, "the starting thread to exit", func() bool {
		_, err := os.Stat("/proc/self/task/" + strconv.Itoa(s.tid))
		return errors.Is(err, os.ErrNotExist)
	})
	pid := s.h.Plugins()[0].PID
	if got := pidOf(t, s.h); got != pid {
		t.Errorf("pid %d, want %d", got, pid)
	}
	if st := s.h.Plugins()[0]; st.Restarts != 0 || processGone(pid) {
		t.Errorf("the plugin died with the thread that started it: %+v", st)
	}
}

// TestScriptPlugin runs a verified script: its interpreter reads the
// verified bytes from the memfd, handed over as descriptor 3.
func TestScriptPlugin(t *testing.T) {
	bin, _ := built(t, "v1")
	script, digest := scriptPlugin(t, bin)
	opts, logs := testOptions(t)
	// The binary the script runs lies outside the system's directories:
	// Landlock lets the plugin read it only as one of its readPaths.
	h := start(t, map[string]config.Plugin{"tp": {Command: script, SHA256: digest, CallTimeout: 5 * time.Second, ReadPaths: []string{bin}}}, opts)
	if st := h.Plugins()[0]; st.Version != "1.0.0" || st.SHA256 != digest {
		t.Errorf("status = %+v", st)
	}
	if _, err := resolve(t, h, "ok"); err != nil {
		t.Errorf("resolve through a script plugin: %v\n%s", err, logs)
	}
}

// TestBackoff: the wait before a restart doubles while restarts do not
// last, and starts again from the minimum after one that does.
func TestBackoff(t *testing.T) {
	waits := func(t *testing.T, stableAfter time.Duration) []time.Duration {
		opts, _ := testOptions(t)
		opts.BackoffMin = 300 * time.Millisecond
		opts.StableAfter = stableAfter
		h := start(t, map[string]config.Plugin{"tp": pluginConfig(t)}, opts)
		var waits []time.Duration
		for range 2 {
			if _, err := resolve(t, h, "crash"); err == nil {
				t.Fatal("crash call succeeded")
			}
			var ue *UnavailableError
			waitFor(t, 10*time.Second, "the plugin to be down", func() bool {
				err := h.Ready()
				return errors.As(err, &ue) && ue.RetryAfter > 0
			})
			restarts := h.Plugins()[0].Restarts
			waitFor(t, 20*time.Second, "the restart", func() bool { return h.Plugins()[0].Restarts == restarts+1 && h.Ready() == nil })
			waits = append(waits, ue.RetryAfter)
		}
		return waits
	}
	t.Run("doubles", func(t *testing.T) {
		w := waits(t, time.Hour)
		if w[0] > 300*time.Millisecond || w[1] <= 300*time.Millisecond || w[1] > 600*time.Millisecond {
			t.Errorf("waits %v, want at most 300ms, then (300ms, 600ms]", w)
		}
	})
	t.Run("resets", func(t *testing.T) {
		w := waits(t, time.Millisecond) // every run counts as stable
		if w[0] > 300*time.Millisecond || w[1] > 300*time.Millisecond {
			t.Errorf("waits %v, want at most 300ms each", w)
		}
	})
}

// TestCloseFrozenPlugin: Close does not wait forever for a plugin that
// cannot answer (SIGSTOP) even without a deadline.
func TestCloseFrozenPlugin(t *testing.T) {
	opts, _ := testOptions(t)
	opts.StopGrace = 300 * time.Millisecond
	h := start(t, map[string]config.Plugin{"tp": pluginConfig(t)}, opts)
	pid := pidOf(t, h)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	closeWithin(t, h, 10*time.Second, "Close hangs on a frozen plugin")
	if !processGone(pid) {
		t.Error("the frozen plugin is still there")
	}
}

// TestLongHandshakeLineLeaksNothing: a plugin whose first stdout line is
// longer than go-plugin reads as a handshake fails to start, and leaves no
// goroutine and no descriptor behind in the daemon.
func TestLongHandshakeLineLeaksNothing(t *testing.T) {
	script := filepath.Join(t.TempDir(), "plugin.sh")
	body := "#!/bin/sh\ns=x\nfor i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17; do s=$s$s; done\nprintf '%s\\n' \"$s\"\nexec /bin/sleep 60\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	digest, err := fileDigest(script)
	if err != nil {
		t.Fatal(err)
	}
	stuck := func() int {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		return strings.Count(string(buf), "pluginhost.(*procRunner).Start.func")
	}
	fdsBefore := countFDs(t)
	for range 3 {
		opts, _ := testOptions(t)
		opts.StartTimeout = 5 * time.Second
		h, err := Start(context.Background(), map[string]config.Plugin{"tp": {Command: script, SHA256: digest, CallTimeout: time.Second}}, opts)
		if err == nil {
			h.Close(context.Background())
			t.Fatal("a plugin without a handshake line started")
		}
	}
	waitFor(t, 10*time.Second, "the runner's goroutines to end", func() bool { return stuck() == 0 })
	waitFor(t, 10*time.Second, "the descriptors to be closed", func() bool { return countFDs(t) <= fdsBefore })
}

func countFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// TestStartAborted: a start cut short by its context at any point (the
// daemon stopped while starting) fails cleanly, without a data race between
// the abort and the process being started, and leaves no process behind.
func TestStartAborted(t *testing.T) {
	cfg := pluginConfig(t)
	for i := range 40 {
		opts, _ := testOptions(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i)*time.Millisecond/2)
		h, err := Start(ctx, map[string]config.Plugin{"tp": cfg}, opts)
		cancel()
		if err == nil {
			h.Close(context.Background())
		}
	}
	waitFor(t, 10*time.Second, "no plugin process left", func() bool { return len(children(t)) == 0 })
}

// children returns the pids of this process's children that still run.
func children(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state ppid ...
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) && f[0] != "Z" && f[0] != "X" {
			out = append(out, pid)
		}
	}
	return out
}

// TestHelperProcessHoldsThePipes: a plugin that started helper processes,
// which inherited its stdout and stderr and outlive it, still is restarted
// after a crash, and the daemon still shuts down; a helper in the plugin's
// process group is killed with the plugin, and one that left the group (a
// new session) cannot hold the supervision up.
func TestHelperProcessHoldsThePipes(t *testing.T) {
	bin, _ := built(t, "v1")
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "helper.pid")
	escaped := filepath.Join(dir, "escaped.pid")
	script := filepath.Join(dir, "plugin.sh")
	body := "#!/bin/sh\n/bin/sleep 600 &\necho $! >> '" + pidFile + "'\n" +
		"/usr/bin/setsid /bin/sleep 600 &\necho $! >> '" + escaped + "'\n" +
		"exec '" + bin + "' \"$@\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	digest, err := fileDigest(script)
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := testOptions(t)
	opts.BackoffMin = 50 * time.Millisecond
	opts.StopGrace = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The script writes its helpers' pids where the test reads them, which
	// Landlock would refuse.
	testHookNoLandlock = true
	defer func() { testHookNoLandlock = false }()
	h, err := Start(ctx, map[string]config.Plugin{"tp": {Command: script, SHA256: digest, CallTimeout: 5 * time.Second}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	pids := func(file string) []int {
		b, _ := os.ReadFile(file)
		var pids []int
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	helpers := func() []int { return pids(pidFile) }
	t.Cleanup(func() {
		for _, pid := range append(helpers(), pids(escaped)...) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if _, err := resolve(t, h, "crash"); err == nil {
		t.Fatal("crash call succeeded")
	}
	waitFor(t, 10*time.Second, "the restart", func() bool { return h.Plugins()[0].Restarts == 1 && h.Ready() == nil })
	if _, err := resolve(t, h, "ok"); err != nil {
		t.Errorf("after the restart: %v", err)
	}
	if first := helpers()[0]; !processGone(first) {
		t.Errorf("the crashed plugin's helper %d still runs", first)
	}
	closeWithin(t, h, 10*time.Second, "Close hangs on a plugin whose helper holds its pipes")
	for _, pid := range helpers() {
		waitFor(t, 5*time.Second, "the helpers to die with their plugin", func() bool { return processGone(pid) })
	}
}

// closeWithin closes h, failing t with hangs when Close has not returned
// within limit.
func closeWithin(t *testing.T, h *Host, limit time.Duration, hangs string) {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- h.Close(context.Background()) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close = %v", err)
		}
	case <-time.After(limit):
		t.Fatal(hangs)
	}
}

// TestSharedBinary: two plugins of one binary (as the two steps of a
// resolver chain) are verified once and run from one memfd; one of them
// crashes and restarts from it while the other keeps answering, and the
// memfd is released once both are stopped.
func TestSharedBinary(t *testing.T) {
	verified := 0
	testHookVerified = func(string) { verified++ }
	t.Cleanup(func() { testHookVerified = nil })
	opts, _ := testOptions(t)
	opts.BackoffMin = 10 * time.Millisecond
	cfg := pluginConfig(t)
	h := start(t, map[string]config.Plugin{"tp": cfg, "tp2": cfg}, opts)
	if verified != 1 {
		t.Errorf("the binary was verified %d times for two plugins, want once", verified)
	}
	bin := h.plugins["tp"].bin
	if h.plugins["tp2"].bin != bin {
		t.Fatal("the plugins run from two copies")
	}
	other, err := h.Resolver("tp2", "byEmail", map[string]any{"tag": "t1"})
	if err != nil {
		t.Fatal(err)
	}
	pid := pidOf(t, h)
	if _, err := resolve(t, h, "crash"); err == nil {
		t.Fatal("the crash call did not fail")
	}
	if _, err := other.Resolve(context.Background(), signin.Input{Profile: signin.Profile{Email: "ok@example.com", EmailVerified: true}}); err != nil {
		t.Errorf("the other plugin, while the first restarts: %v", err)
	}
	waitFor(t, 20*time.Second, "the restart", func() bool {
		st := h.plugins["tp"].status()
		return st.Restarts == 1 && st.State == StateUp
	})
	if newPID := pidOf(t, h); newPID == pid {
		t.Error("same pid after a restart")
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := bin.mem.Stat(); err == nil {
		t.Error("the memfd is still open after both plugins stopped")
	}
}
