//go:build linux

package pluginhost

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/signin"
)

// daemonEnv makes the test binary act as a tiny daemon that starts the
// test plugin and waits to be killed; its value is "path|digest".
const daemonEnv = "PLUGINHOST_TEST_DAEMON"

// buildDir holds the test plugins, built once per test binary.
var buildDir string

func TestMain(m *testing.M) {
	if spec := os.Getenv(daemonEnv); spec != "" {
		runTestDaemon(spec)
		return
	}
	dir, err := os.MkdirTemp("", "pluginhost-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runTestDaemon starts the plugin of spec, prints its pid and blocks.
func runTestDaemon(spec string) {
	path, digest, _ := strings.Cut(spec, "|")
	h, err := Start(context.Background(), map[string]config.Plugin{
		"tp": {Command: path, SHA256: digest, CallTimeout: 2 * time.Second},
	}, Options{StartTimeout: 30 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("pid %d\n", h.Plugins()[0].PID)
	select {}
}

// testPlugin is a built variant of testdata/testplugin.
type testPlugin struct {
	once   sync.Once
	path   string
	digest string
	err    error
}

var variants = map[string]*testPlugin{
	"v1":      {}, // version 1.0.0
	"swapped": {}, // version 2.0.0-swapped
}

// built builds variant (once per test binary) and returns its path and
// digest.
func built(t testing.TB, variant string) (string, string) {
	t.Helper()
	tp := variants[variant]
	tp.once.Do(func() {
		tp.path = filepath.Join(buildDir, "testplugin-"+variant)
		args := []string{"build", "-o", tp.path}
		if variant == "swapped" {
			args = append(args, "-ldflags", "-X main.version=2.0.0-swapped")
		}
		cmd := exec.Command("go", append(args, "./testdata/testplugin")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			tp.err = fmt.Errorf("building the test plugin: %v\n%s", err, out)
			return
		}
		tp.digest, tp.err = fileDigest(tp.path)
	})
	if tp.err != nil {
		t.Fatal(tp.err)
	}
	return tp.path, tp.digest
}

func fileDigest(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// install copies variant into a directory of the test's own, for tests that
// change the file.
func install(t testing.TB, variant string) (string, string) {
	t.Helper()
	src, digest := built(t, variant)
	dst := filepath.Join(t.TempDir(), "testplugin")
	copyFile(t, src, dst, 0o755)
	return dst, digest
}

func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// scriptPlugin writes a #! script plugin that runs bin, and returns its
// path and digest.
func scriptPlugin(t testing.TB, bin string) (string, string) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "plugin.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec '"+bin+"' \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	digest, err := fileDigest(script)
	if err != nil {
		t.Fatal(err)
	}
	return script, digest
}

// pluginConfig declares variant v1 of the test plugin.
func pluginConfig(t testing.TB) config.Plugin {
	path, digest := built(t, "v1")
	return config.Plugin{Command: path, SHA256: digest, CallTimeout: 5 * time.Second}
}

// logBuffer collects a JSON log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the log lines decoded.
func (l *logBuffer) lines() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// find returns the first line whose message is msg.
func (l *logBuffer) find(msg string) map[string]any {
	for _, m := range l.lines() {
		if m["@message"] == msg {
			return m
		}
	}
	return nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testOptions are quick options for tests, logging as JSON into a buffer.
func testOptions(t testing.TB) (Options, *logBuffer) {
	logs := &logBuffer{}
	return Options{
		Logger:       hclog.New(&hclog.LoggerOptions{Name: "test", Output: logs, Level: hclog.Debug, JSONFormat: true}),
		StartTimeout: 30 * time.Second,
	}, logs
}

// start starts a host and closes it when the test ends.
func start(t testing.TB, plugins map[string]config.Plugin, opts Options) *Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := Start(ctx, plugins, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Close(ctx)
	})
	return h
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// resolve calls resolver byEmail of plugin tp for local@example.com.
func resolve(t testing.TB, h *Host, local string) (signin.Identity, error) {
	t.Helper()
	r, err := h.Resolver("tp", "byEmail", map[string]any{"tag": "t1"})
	if err != nil {
		t.Fatal(err)
	}
	return r.Resolve(context.Background(), signin.Input{Profile: signin.Profile{Email: local + "@example.com", EmailVerified: true}})
}

// pidOf returns the pid a "pid" call reports, failing the test on error.
func pidOf(t testing.TB, h *Host) int {
	t.Helper()
	id, err := resolve(t, h, "pid")
	if err != nil {
		t.Fatalf("resolve pid: %v", err)
	}
	return int(id.Extra["pid"].(float64))
}

// processGone reports whether pid has exited (gone, or a zombie no one has
// reaped yet).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) state ...: comm may contain spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

func fmtJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
