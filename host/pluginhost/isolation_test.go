//go:build linux

package pluginhost

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spectroauth/spectroauth/config"
)

// TestPluginCannotReadTheDaemonsSecrets has the test plugin try what a
// hostile plugin would: read the daemon's environment and memory through
// /proc, a signing key and a session file of its data directory, and plant a
// file there. It gets nothing: the daemon is non-dumpable, and Landlock (where
// the kernel has it, as the test asserts from the log) keeps the plugin to
// the system's directories and a working directory of its own, which is
// removed when the plugin stops.
func TestPluginCannotReadTheDaemonsSecrets(t *testing.T) {
	data := t.TempDir()
	keyFile := filepath.Join(data, "signing-keys.json")
	sessionFile := filepath.Join(data, "sessions", "s1.json")
	if err := os.MkdirAll(filepath.Dir(sessionFile), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{keyFile, sessionFile} {
		if err := os.WriteFile(f, []byte(`{"secret":"daemon-only"}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := pluginConfig(t)
	cfg.Env = map[string]config.Secret{"TESTPLUGIN_SNOOP": config.Secret(keyFile + "," + sessionFile)}
	opts, logs := testOptions(t)
	h := start(t, map[string]config.Plugin{"tp": cfg}, opts)

	if dumpable, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err != nil || dumpable != 0 {
		t.Errorf("PR_GET_DUMPABLE = %d, %v; want 0: a plugin could read the daemon's memory", dumpable, err)
	}
	id, err := resolve(t, h, "snoop")
	if err != nil {
		t.Fatalf("resolve snoop: %v", err)
	}
	got := id.Extra
	t.Logf("the plugin got: %s", fmtJSON(got))

	parent := "/proc/" + strconv.Itoa(os.Getpid())
	for _, path := range []string{parent + "/environ", parent + "/mem"} {
		if msg, _ := got[path].(string); !strings.Contains(msg, "permission denied") {
			t.Errorf("plugin reading %s: %q, want permission denied", path, msg)
		}
	}

	_, noLandlock := landlockABI()
	warning := logs.find("plugin file system isolation unavailable: " + errString(noLandlock) +
		"; plugins can read every file the daemon's user can (keys, sessions, configuration)")
	if noLandlock != nil {
		// Best effort: without Landlock the daemon says so at start.
		if warning == nil {
			t.Errorf("no Landlock (%v), and no warning at start; log:\n%s", noLandlock, logs)
		}
		t.Logf("no Landlock here (%v): file checks skipped", noLandlock)
	} else {
		if warning != nil {
			t.Errorf("Landlock is available, but the log says it is not: %v", warning)
		}
		for _, path := range []string{keyFile, sessionFile, filepath.Join(data, "planted"), filepath.Join(data, "sessions", "planted")} {
			if msg, _ := got[path].(string); !strings.Contains(msg, "permission denied") {
				t.Errorf("plugin on %s: %q, want permission denied", path, msg)
			}
		}
		if _, err := os.Stat(filepath.Join(data, "planted")); err == nil {
			t.Error("the plugin planted a file in the data directory")
		}
	}

	wd, _ := got["cwd"].(string)
	self, _ := os.Getwd()
	if wd == "" || wd == self || !strings.Contains(filepath.Base(wd), "spectroauth-plugin-tp-") {
		t.Errorf("plugin working directory = %q, want one of its own (the daemon's is %q)", wd, self)
	}
	if got["tmpdir"] != wd {
		t.Errorf("plugin TMPDIR = %v, want its working directory %q", got["tmpdir"], wd)
	}
	// It holds go-plugin's socket directory, nothing else.
	for _, name := range strings.Split(got["cwdEntries"].(string), ",") {
		if name != "" && !strings.HasPrefix(name, "plugin-dir") {
			t.Errorf("the plugin's working directory holds %q", name)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the plugin's working directory to be removed", func() bool {
		_, err := os.Stat(wd)
		return os.IsNotExist(err)
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestPluginSandboxReadPaths checks that a restricted plugin
// still reads what it is meant to: a configured readPath, and not one that
// was left out of the configuration.
func TestPluginSandboxReadPaths(t *testing.T) {
	if _, err := landlockABI(); err != nil {
		t.Skipf("no Landlock here: %v", err)
	}
	shared := filepath.Join(t.TempDir(), "shared.txt")
	if err := os.WriteFile(shared, []byte("public"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		readPaths []string
		want      string
	}{
		{"listed", []string{filepath.Dir(shared)}, "read 6 bytes"},
		{"not listed", nil, "permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := pluginConfig(t)
			cfg.Env = map[string]config.Secret{"TESTPLUGIN_SNOOP": config.Secret(shared)}
			cfg.ReadPaths = tc.readPaths
			opts, _ := testOptions(t)
			h := start(t, map[string]config.Plugin{"tp": cfg}, opts)
			id, err := resolve(t, h, "snoop")
			if err != nil {
				t.Fatal(err)
			}
			if msg, _ := id.Extra[shared].(string); !strings.Contains(msg, tc.want) {
				t.Errorf("plugin reading %s: %q, want %q", shared, msg, tc.want)
			}
			// Read-only: it may not write there.
			if msg, _ := id.Extra[filepath.Join(filepath.Dir(shared), "planted")].(string); !strings.Contains(msg, "permission denied") {
				t.Errorf("plugin writing next to %s: %q, want permission denied", shared, msg)
			}
		})
	}
}

// TestPluginLogFloodIsBounded has the test plugin log 5000 error lines at
// once: the daemon's log takes about the burst of them, counts the rest as
// dropped, and says so in one warning.
func TestPluginLogFloodIsBounded(t *testing.T) {
	defer func(d time.Duration) { logDropReportEvery = d }(logDropReportEvery)
	logDropReportEvery = 200 * time.Millisecond
	opts, logs := testOptions(t)
	h := start(t, map[string]config.Plugin{"tp": pluginConfig(t)}, opts)
	began := time.Now()
	if _, err := resolve(t, h, "flood"); err != nil {
		t.Fatal(err)
	}
	flooded := func() int {
		n := 0
		for _, m := range logs.lines() {
			if m["@message"] == "flooding the daemon's log" {
				n++
			}
		}
		return n
	}
	// The plugin answers before the daemon has read all it wrote.
	var logged int
	var dropped uint64
	waitFor(t, 10*time.Second, "the plugin's 5000 lines to be logged or dropped", func() bool {
		logged, dropped = flooded(), h.Plugins()[0].LogLinesDropped
		return logged+int(dropped) == 5000
	})
	elapsed := time.Since(began)
	// The burst, and what the rate refilled meanwhile.
	if most := logBurst + int(elapsed.Seconds()*logLinesPerSecond) + 1; logged > most {
		t.Errorf("%d of the plugin's 5000 lines reached the log in %s, want at most %d", logged, elapsed, most)
	}
	if logged < logBurst/2 {
		t.Errorf("only %d of the plugin's lines reached the log, want about the burst (%d)", logged, logBurst)
	}
	waitFor(t, 10*time.Second, "a warning that reports every dropped line", func() bool {
		for _, m := range logs.lines() {
			if m["@message"] == "plugin log lines dropped: the plugin logs more than 50 lines a second (200 at once)" &&
				m["@level"] == "warn" && m["droppedTotal"] == float64(dropped) {
				return true
			}
		}
		return false
	})
}
