//go:build linux

package pluginhost

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spectroauth/spectroauth/config"
)

// countHashes counts the binaries hashed from now until the test ends.
func countHashes(t *testing.T) *atomic.Int32 {
	t.Helper()
	var n atomic.Int32
	testHookHashed = func(string) { n.Add(1) }
	t.Cleanup(func() { testHookHashed = nil })
	return &n
}

// storeOptions are testOptions with a content store in a data directory
// of the test's own, not yet created.
func storeOptions(t *testing.T) (Options, *logBuffer, string) {
	t.Helper()
	if _, err := landlockABI(); err != nil {
		t.Skipf("the store is used only where Landlock restricts plugins: %v", err)
	}
	opts, logs := testOptions(t)
	opts.StoreDir = filepath.Join(t.TempDir(), "data", StoreDirName)
	return opts, logs, opts.StoreDir
}

// startSettled starts a host and waits until what it verified is stored.
func startSettled(t *testing.T, plugins map[string]config.Plugin, opts Options) *Host {
	t.Helper()
	h := start(t, plugins, opts)
	if h.settled != nil {
		<-h.settled
	}
	return h
}

// exeOf is where the executable of process pid is, as the kernel says.
func exeOf(t *testing.T, pid int) string {
	t.Helper()
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// TestStoreRunsTheStoredCopy: the first start verifies the binary (or
// script) from its source and stores it; the second hashes nothing and runs
// the stored copy, which the kernel names as the plugin's executable.
func TestStoreRunsTheStoredCopy(t *testing.T) {
	bin, digest := built(t, "v1")
	script, scriptDigest := scriptPlugin(t, bin)
	for _, tt := range []struct {
		name string
		cfg  config.Plugin
	}{
		{"binary", config.Plugin{Command: bin, SHA256: digest, CallTimeout: 5 * time.Second}},
		{"script", config.Plugin{Command: script, SHA256: scriptDigest, CallTimeout: 5 * time.Second, ReadPaths: []string{bin}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts, logs, dir := storeOptions(t)
			hashed := countHashes(t)
			plugins := map[string]config.Plugin{"tp": tt.cfg}
			entry := filepath.Join(dir, tt.cfg.SHA256)

			h := startSettled(t, plugins, opts)
			if n := hashed.Load(); n != 1 {
				t.Fatalf("first start hashed %d binaries, want 1", n)
			}
			if tt.name == "binary" {
				if exe := exeOf(t, h.Plugins()[0].PID); !strings.HasPrefix(exe, "/memfd:") {
					t.Errorf("first start runs %s, want the memfd", exe)
				}
			}
			fi, err := os.Lstat(entry)
			if err != nil {
				t.Fatalf("nothing stored: %v\n%s", err, logs)
			}
			if fi.Mode() != 0o500 || !fi.Mode().IsRegular() {
				t.Errorf("stored copy has mode %v, want -r-x------", fi.Mode())
			}
			if dfi, err := os.Stat(dir); err != nil || dfi.Mode().Perm() != 0o700 {
				t.Errorf("store directory: %v, %v; want mode 0700", dfi.Mode(), err)
			}
			if d, _ := fileDigest(entry); d != tt.cfg.SHA256 {
				t.Errorf("stored copy has digest %s, want %s", d, tt.cfg.SHA256)
			}
			closeHost(t, h)

			h = startSettled(t, plugins, opts)
			if n := hashed.Load(); n != 1 {
				t.Errorf("second start hashed again (%d in all)", n)
			}
			st := h.Plugins()[0]
			if st.SHA256 != tt.cfg.SHA256 || st.Version != "1.0.0" {
				t.Errorf("status = %+v", st)
			}
			if tt.name == "binary" {
				if exe := exeOf(t, st.PID); exe != entry {
					t.Errorf("second start runs %s, want the stored copy %s", exe, entry)
				}
			} else if !h.plugins["tp"].bin.script || h.plugins["tp"].bin.stored == nil {
				t.Error("the script does not run from the store")
			}
			if _, err := resolve(t, h, "ok"); err != nil {
				t.Errorf("resolve: %v\n%s", err, logs)
			}
		})
	}
}

// TestStoreFollowsTheSource: a source replaced by other bytes under the
// same pinned digest fails the start with the digest mismatch, as without
// the store; a source merely touched is verified again and runs, and is
// stored under its new identity.
func TestStoreFollowsTheSource(t *testing.T) {
	other, otherDigest := built(t, "swapped")
	opts, _, dir := storeOptions(t)
	hashed := countHashes(t)
	path, digest := install(t, "v1")
	plugins := map[string]config.Plugin{"tp": {Command: path, SHA256: digest, CallTimeout: 5 * time.Second}}
	closeHost(t, startSettled(t, plugins, opts))

	// Touched: same bytes, new mtime (and ctime).
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	h := startSettled(t, plugins, opts)
	if n := hashed.Load(); n != 2 {
		t.Errorf("a touched source was hashed %d times in two starts, want 2", n)
	}
	if exe := exeOf(t, h.Plugins()[0].PID); !strings.HasPrefix(exe, "/memfd:") {
		t.Errorf("a touched source runs from %s, want its verified memfd", exe)
	}
	closeHost(t, h)
	h = startSettled(t, plugins, opts)
	if n := hashed.Load(); n != 2 {
		t.Errorf("after the touched source was stored, a start hashed it again")
	}
	closeHost(t, h)

	// Replaced, in place (same inode) and by a rename.
	for _, how := range []string{"rewrite", "rename"} {
		if how == "rename" {
			copyFile(t, other, path+".new", 0o755)
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		} else {
			copyFile(t, other, path, 0o755)
		}
		opts, logs := testOptions(t)
		opts.StoreDir = dir
		h, err := Start(context.Background(), plugins, opts)
		if err == nil {
			closeHost(t, h)
			t.Fatalf("%s: a replaced source started", how)
		}
		if want := "has SHA-256 " + otherDigest + ", not the configured " + digest; !strings.HasPrefix(err.Error(), "plugins.tp.sha256: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Start error = %q, want plugins.tp.sha256: …%s", how, err, want)
		}
		if strings.Contains(logs.String(), "plugin is up") {
			t.Errorf("%s: the plugin ran", how)
		}
	}
}

// TestStoreFallsBack: a stored copy or store that fails a check is not run
// from; the start verifies the binary from its source into a memfd as
// without a store, and a bad copy is replaced by a good one.
func TestStoreFallsBack(t *testing.T) {
	for _, tt := range []struct {
		name  string
		spoil func(t *testing.T, dir, entry string)
		// store: the store stays usable, and the copy is written again.
		store bool
		warn  string
	}{
		{"entry mode", func(t *testing.T, _, entry string) { chmod(t, entry, 0o700) }, true, "the stored copy changed since it was written"},
		{"entry group-writable", func(t *testing.T, _, entry string) { chmod(t, entry, 0o520) }, true, "is writable by group or others"},
		{"entry mode restored", func(t *testing.T, _, entry string) {
			chmod(t, entry, 0o700)
			chmod(t, entry, 0o500)
		}, true, "the stored copy changed since it was written"},
		{"entry owner", func(t *testing.T, _, entry string) {
			if err := os.Lchown(entry, 65534, 65534); err != nil {
				t.Skipf("chown: %v", err)
			}
		}, true, "is owned by uid 65534"},
		{"entry symlink", func(t *testing.T, dir, entry string) {
			symlinkInstead(t, entry, filepath.Join(filepath.Dir(dir), "elsewhere"))
		}, true, "too many levels of symbolic links"},
		{"entry truncated", func(t *testing.T, _, entry string) {
			chmod(t, entry, 0o700)
			if err := os.Truncate(entry, 4096); err != nil {
				t.Fatal(err)
			}
			chmod(t, entry, 0o500)
		}, true, "the stored copy changed since it was written"},
		{"record corrupt", func(t *testing.T, _, entry string) {
			if err := os.WriteFile(entry+".source", []byte("{"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true, "its record"},
		{"directory mode", func(t *testing.T, dir, _ string) { chmod(t, dir, 0o755) }, false, "has mode 0755: group or others may reach it"},
		{"directory owner", func(t *testing.T, dir, _ string) {
			if err := os.Lchown(dir, 65534, 65534); err != nil {
				t.Skipf("chown: %v", err)
			}
		}, false, "is owned by uid 65534"},
		{"directory symlink", func(t *testing.T, dir, _ string) { symlinkInstead(t, dir, dir+".moved") }, false, "a symbolic link or not a directory?"},
		{"noexec", func(t *testing.T, _, _ string) {
			testHookStatfs = func(s *unix.Statfs_t) { s.Flags |= unix.ST_NOEXEC }
			t.Cleanup(func() { testHookStatfs = nil })
		}, false, "is on a file system mounted noexec"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts, logs, dir := storeOptions(t)
			hashed := countHashes(t)
			plugins := map[string]config.Plugin{"tp": pluginConfig(t)}
			entry := filepath.Join(dir, plugins["tp"].SHA256)
			closeHost(t, startSettled(t, plugins, opts))
			tt.spoil(t, dir, entry)

			h := startSettled(t, plugins, opts)
			if n := hashed.Load(); n != 2 {
				t.Errorf("hashed %d times in two starts, want 2 (no run from a bad store)", n)
			}
			if exe := exeOf(t, h.Plugins()[0].PID); !strings.HasPrefix(exe, "/memfd:") {
				t.Errorf("runs %s, want the verified memfd", exe)
			}
			if _, err := resolve(t, h, "ok"); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, m := range logs.lines() {
				if m["@level"] == "warn" && strings.Contains(fmtJSON(m), tt.warn) {
					found = true
				}
			}
			if !found {
				t.Errorf("no warning with %q; log:\n%s", tt.warn, logs)
			}
			closeHost(t, h)
			if !tt.store {
				return
			}
			// Written again, and run from at the next start.
			h = startSettled(t, plugins, opts)
			if n := hashed.Load(); n != 2 {
				t.Errorf("the copy was not written again: a third start hashed (%d in all)", n)
			}
			if exe := exeOf(t, h.Plugins()[0].PID); exe != entry {
				t.Errorf("third start runs %s, want %s", exe, entry)
			}
		})
	}
}

// symlinkInstead moves path to moved and puts a symbolic link to it in
// its place.
func symlinkInstead(t *testing.T, path, moved string) {
	t.Helper()
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(moved, path); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestStoreChangedBeforeRestart: a stored copy that changes while its
// plugin runs is not executed by the restart after a crash; the binary is
// verified from its source again.
func TestStoreChangedBeforeRestart(t *testing.T) {
	opts, logs, dir := storeOptions(t)
	opts.BackoffMin = 10 * time.Millisecond
	hashed := countHashes(t)
	plugins := map[string]config.Plugin{"tp": pluginConfig(t)}
	entry := filepath.Join(dir, plugins["tp"].SHA256)
	closeHost(t, startSettled(t, plugins, opts))
	h := startSettled(t, plugins, opts)
	if exe := exeOf(t, h.Plugins()[0].PID); exe != entry {
		t.Fatalf("runs %s, want %s", exe, entry)
	}
	chmod(t, entry, 0o755)
	if _, err := resolve(t, h, "crash"); err == nil {
		t.Fatal("the crash call succeeded")
	}
	waitFor(t, 20*time.Second, "the restart", func() bool { return h.Plugins()[0].Restarts == 1 && h.Ready() == nil })
	if exe := exeOf(t, h.Plugins()[0].PID); !strings.HasPrefix(exe, "/memfd:") {
		t.Errorf("the restart runs %s, want a memfd verified again", exe)
	}
	if n := hashed.Load(); n != 2 {
		t.Errorf("hashed %d times, want 2", n)
	}
	if logs.find("verifying the plugin binary again before the restart") == nil {
		t.Errorf("no warning; log:\n%s", logs)
	}
}

// TestStorePrunes: what no running configuration pins leaves the store,
// once no running plugin uses it (a reloaded host keeps the old one's
// plugins until it closes), and so does what an interrupted write left.
func TestStorePrunes(t *testing.T) {
	opts, _, dir := storeOptions(t)
	v1 := pluginConfig(t)
	swappedPath, swappedDigest := built(t, "swapped")
	v2 := config.Plugin{Command: swappedPath, SHA256: swappedDigest, CallTimeout: 5 * time.Second}
	closeHost(t, startSettled(t, map[string]config.Plugin{"tp": v1}, opts))
	tmp := filepath.Join(dir, "."+swappedDigest+".tmp-123")
	foreign := filepath.Join(dir, "README")
	for _, p := range []string{tmp, foreign} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(digest string) bool {
		_, err := os.Lstat(filepath.Join(dir, digest))
		_, rerr := os.Lstat(filepath.Join(dir, digest+".source"))
		if (err == nil) != (rerr == nil) {
			t.Errorf("entry %s: %v, but its record: %v", digest, err, rerr)
		}
		return err == nil
	}

	old := startSettled(t, map[string]config.Plugin{"tp": v1}, opts) // runs from the store
	if _, err := os.Lstat(tmp); err == nil {
		t.Error("an interrupted write's temporary file is still there")
	}
	if _, err := os.Lstat(foreign); err != nil {
		t.Errorf("a file the store did not write was removed: %v", err)
	}
	next, _, err := old.Next(context.Background(), map[string]config.Plugin{"tp": v2}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = next.Close(context.Background()) })
	<-next.settled
	if !exists(swappedDigest) {
		t.Error("the new binary was not stored")
	}
	if !exists(v1.SHA256) {
		t.Fatal("the old binary's copy was removed while the old host's plugin runs from it")
	}
	closeHost(t, old)
	if exists(v1.SHA256) {
		t.Error("the old binary's copy is still there after its last plugin stopped")
	}
	if !exists(swappedDigest) {
		t.Error("the running binary's copy was removed")
	}
}

// TestStoreIsOutOfPluginsReach: a plugin run from the store may read its
// own stored copy, but neither list the store, nor read another plugin's
// copy, nor write there (Landlock).
func TestStoreIsOutOfPluginsReach(t *testing.T) {
	opts, _, dir := storeOptions(t)
	cfg := pluginConfig(t)
	swappedPath, swappedDigest := built(t, "swapped")
	other := config.Plugin{Command: swappedPath, SHA256: swappedDigest, CallTimeout: 5 * time.Second}
	own, otherEntry := filepath.Join(dir, cfg.SHA256), filepath.Join(dir, swappedDigest)
	cfg.Env = map[string]config.Secret{"TESTPLUGIN_SNOOP": config.Secret(strings.Join([]string{dir, otherEntry, own}, ","))}
	plugins := map[string]config.Plugin{"tp": cfg, "other": other}
	closeHost(t, startSettled(t, plugins, opts))
	h := startSettled(t, plugins, opts)
	if exe := exeOf(t, h.Plugins()[1].PID); exe != own {
		t.Fatalf("runs %s, want %s", exe, own)
	}
	id, err := resolve(t, h, "snoop")
	if err != nil {
		t.Fatal(err)
	}
	got := id.Extra
	t.Logf("the plugin got: %s", fmtJSON(got))
	for path, want := range map[string]string{
		dir:                           "permission denied",
		otherEntry:                    "permission denied",
		filepath.Join(dir, "planted"): "permission denied",
		filepath.Join(filepath.Dir(dir), "planted"): "permission denied",
		own: "read ",
	} {
		if msg, _ := got[path].(string); !strings.Contains(msg, want) {
			t.Errorf("plugin on %s: %q, want %q", path, msg, want)
		}
	}
}

// TestStoreNeedsLandlock: without Landlock a plugin could rewrite the
// stored copies, so the store is not used (nor created), and says so.
func TestStoreNeedsLandlock(t *testing.T) {
	testHookNoLandlock = true
	defer func() { testHookNoLandlock = false }()
	opts, logs := testOptions(t)
	opts.StoreDir = filepath.Join(t.TempDir(), "data", StoreDirName)
	hashed := countHashes(t)
	plugins := map[string]config.Plugin{"tp": pluginConfig(t)}
	closeHost(t, startSettled(t, plugins, opts))
	closeHost(t, startSettled(t, plugins, opts))
	if n := hashed.Load(); n != 2 {
		t.Errorf("hashed %d times in two starts, want 2", n)
	}
	if _, err := os.Stat(opts.StoreDir); err == nil {
		t.Error("the store was created")
	}
	if m := logs.find("plugin content store unused: every start copies and hashes the plugin binaries"); m == nil || !strings.Contains(fmtJSON(m), "without Landlock") {
		t.Errorf("no warning that names Landlock; log:\n%s", logs)
	}
}
