//go:build linux

package pluginhost

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
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

// TestPluginCannotChangeFileAttributes has the test plugin try to make a
// file of its own and a signing key of the daemon's data directory readable
// by everyone, through each call that changes a mode, owner or ACL, with and
// without Landlock (which does not govern attributes): every call fails with
// EPERM, and the key keeps its mode 0600. Creating a file with a mode and a
// directory still works, and the daemon's own threads are not restricted.
func TestPluginCannotChangeFileAttributes(t *testing.T) {
	if err := seccompAvailable(); err != nil {
		t.Skipf("no seccomp filters here: %v", err)
	}
	for _, landlock := range []bool{true, false} {
		t.Run("landlock="+strconv.FormatBool(landlock), func(t *testing.T) {
			if _, err := landlockABI(); landlock && err != nil {
				t.Skipf("no Landlock here: %v", err)
			}
			if !landlock {
				testHookNoLandlock = true
				defer func() { testHookNoLandlock = false }()
			}
			keyFile := filepath.Join(t.TempDir(), "signing-keys.json")
			if err := os.WriteFile(keyFile, []byte(`{"secret":"daemon-only"}`), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := pluginConfig(t)
			cfg.Env = map[string]config.Secret{"TESTPLUGIN_ATTRS": config.Secret(keyFile)}
			opts, logs := testOptions(t)
			h := start(t, map[string]config.Plugin{"tp": cfg}, opts)
			if m := logs.find("plugin file attribute isolation unavailable: "); m != nil {
				t.Errorf("seccomp is available, but the log says it is not: %v", m)
			}
			id, err := resolve(t, h, "attrs")
			if err != nil {
				t.Fatalf("resolve attrs: %v", err)
			}
			got := id.Extra
			t.Logf("the plugin got: %s", fmtJSON(got))

			for _, what := range []string{"create", "mkdir"} {
				if got[what] != "ok" {
					t.Errorf("plugin %s: %v, want ok", what, got[what])
				}
			}
			own := ""
			for k := range got {
				if p, ok := strings.CutPrefix(k, "mode "); ok && p != keyFile {
					own = p
				}
			}
			calls := []string{"chmod", "fchmodat2", "chown", "lchown", "setxattr", "lsetxattr", "removexattr"}
			fileCalls := []string{"fchmod", "fchown", "fsetxattr"}
			for _, path := range []string{own, keyFile} {
				want := calls
				if msg, denied := got["open "+path].(string); !denied {
					want = append(want, fileCalls...)
				} else if path == own || !landlock {
					t.Errorf("plugin opening %s: %s", path, msg)
				}
				for _, call := range want {
					if msg, _ := got[call+" "+path].(string); !strings.HasSuffix(msg, "operation not permitted") {
						t.Errorf("plugin's %s on %s: %q, want operation not permitted", call, path, msg)
					}
				}
				if got["mode "+path] != "0600" {
					t.Errorf("the plugin sees %s with mode %v, want 0600", path, got["mode "+path])
				}
			}
			if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("the daemon's key after the plugin's attempts: %v, %v; want mode 0600", fi, err)
			}
			if acl, err := unix.Getxattr(keyFile, "system.posix_acl_access", nil); err == nil {
				t.Errorf("the daemon's key has an ACL of %d bytes", acl)
			}

			// The filter stays on the plugin's thread: the test's others,
			// new ones among them, still change modes.
			if n := filteredThreads(t); n < 1 {
				t.Errorf("%d threads of the test run under a seccomp filter while the plugin runs, want its starting thread", n)
			}
			chmodOnNewThreads(t, keyFile)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := h.Close(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "no thread of the test to run under a seccomp filter once the plugin is gone", func() bool {
				return filteredThreads(t) == 0
			})
			chmodOnNewThreads(t, keyFile)
		})
	}
}

// filteredThreads counts the threads of the test process that run under a
// seccomp filter, but for its main thread: the runtime never destroys that
// one, but parks it for good when a goroutine that locked it returns, as a
// plugin's starting goroutine may have in an earlier test.
func filteredThreads(t *testing.T) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, task := range tasks {
		if task.Name() == strconv.Itoa(os.Getpid()) {
			continue
		}
		status, err := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
		if err != nil {
			continue // gone meanwhile
		}
		if strings.Contains(string(status), "\nSeccomp:\t2\n") {
			n++
		}
	}
	return n
}

// chmodOnNewThreads changes path's mode to 0600 from goroutines locked to
// threads of their own (which makes the runtime start more), and fails the
// test if one of them is refused.
func chmodOnNewThreads(t *testing.T, path string) {
	t.Helper()
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			errs <- os.Chmod(path, 0o600)
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("chmod from a thread of the test: %v; the plugin's filter leaked", err)
		}
	}
}
