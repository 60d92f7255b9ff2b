//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// pluginUp returns the version and process of the last "plugin is up" line
// the daemon logged for plugin name.
func (r *reloadRig) pluginUp(name string) (version string, pid int) {
	r.t.Helper()
	sc := bufio.NewScanner(strings.NewReader(r.logText()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Message string  `json:"@message"`
			Plugin  string  `json:"plugin"`
			Version string  `json:"version"`
			PID     float64 `json:"pid"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Message == "plugin is up" && line.Plugin == name {
			version, pid = line.Version, int(line.PID)
		}
	}
	if version == "" {
		r.t.Fatalf("the daemon logged no \"plugin is up\" for plugin %q", name)
	}
	return version, pid
}

// subjectOf refreshes s and returns the Backstage token's subject, the
// user the resolver resolved.
func (r *reloadRig) subjectOf(s signedIn) string {
	r.t.Helper()
	status, claims, err := r.refresh(http.DefaultClient, s)
	if err != nil || status != http.StatusOK {
		r.t.Fatalf("/refresh: %d %v", status, err)
	}
	sub, _ := claims["sub"].(string)
	return sub
}

// rollOut checks that the running daemon of r runs version from of
// r.plugin and signs in as wantSub through it; that release then (a new
// version installed and the daemon asked to reload, returning what the
// command printed) has the same daemon process run version to instead, the
// old plugin process stopped; and that the session signed in before still
// refreshes and a new sign-in works.
func (r *reloadRig) rollOut(from, to, wantSub string, release func() string) {
	r.t.Helper()
	name := r.plugin.name
	v, oldPID := r.pluginUp(name)
	if v != from {
		r.t.Fatalf("the daemon started version %q of %s, want %s", v, name, from)
	}
	before, err := r.signIn()
	if err != nil {
		r.t.Fatalf("sign-in through %s %s: %v", name, from, err)
	}
	if sub := r.subjectOf(before); sub != wantSub {
		r.t.Fatalf("signed in as %q through %s %s, want %s", sub, name, from, wantSub)
	}
	daemonPID := r.daemon.Process.Pid

	began := time.Now()
	out := release()
	if !strings.Contains(out, "reloaded: 1 plugins started, 1 stopped") || !strings.Contains(out, "started: "+name) {
		r.t.Fatalf("the reload to %s %s printed %q, want %s started anew and the old one stopped", name, to, out, name)
	}
	r.t.Logf("%s %s -> %s in %s: %s", name, from, to, time.Since(began).Round(time.Millisecond), strings.TrimSpace(out))
	if v, pid := r.pluginUp(name); v != to || pid == oldPID {
		r.t.Fatalf("after the reload the daemon runs %s %q (process %d), want %s in a new process (the old one was %d)", name, v, pid, to, oldPID)
	}
	for deadline := time.Now().Add(10 * time.Second); !processGone(oldPID); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Fatalf("the process %d of %s %s still runs after the reload", oldPID, name, from)
		}
	}
	if processGone(daemonPID) {
		r.t.Fatal("the daemon process did not survive the reload")
	}
	if sub := r.subjectOf(before); sub != wantSub {
		r.t.Fatalf("the session signed in through %s %s refreshes as %q, want %s", name, from, sub, wantSub)
	}
	after, err := r.signIn()
	if err != nil {
		r.t.Fatalf("sign-in through %s %s: %v", name, to, err)
	}
	if sub := r.subjectOf(after); sub != wantSub {
		r.t.Fatalf("signed in as %q through %s %s, want %s", sub, name, to, wantSub)
	}
}

// TestThirdPartyResolverReload is the end of a third-party Go resolver's
// way (TestThirdPartyResolver is its start): its copy outside the checkout,
// built against the SDK module alone, is the daemon's sign-in resolver; a
// user signs in; its authors release a new version, rebuilt in place, and
// `spectroauthd plugin reload` rolls it out without a restart.
func TestThirdPartyResolverReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	p := copyResolverGo(t)
	bin := filepath.Join(t.TempDir(), "email-domain")
	p.releaseGo("1.0.0", bin)

	r := newReloadRig(t, daemonBinary(t))
	r.plugin = rigPlugin{name: "email-domain", resolver: "emailDomainToUser", options: "{domain: example.com}"}
	r.writeConfig(bin, digestOf(t, bin), "")
	r.start()
	r.rollOut("1.0.0", "1.1.0", "user:default/pid", func() string {
		p.releaseGo("1.1.0", bin)
		out, err := exec.Command(r.bin, "plugin", "reload", "-config", r.cfgPath, r.plugin.name).CombinedOutput()
		if err != nil {
			t.Fatalf("spectroauthd plugin reload: %v\n%s", err, out)
		}
		return string(out)
	})
}

// TestNodeResolverReload does for examples/resolver-node what
// TestThirdPartyResolver and TestThirdPartyResolverReload do for the Go
// resolver. Each release of it is a copy outside the checkout, in a folder
// of its own, that depends on the SDK package as a team would on a local
// copy of it (package.json's "file:" dependency at this checkout's sdk/node,
// which npm links as node_modules/@spectroauth/plugin-sdk). The first
// passes its own Go plugintest run and `spectroauthd plugin test`, and is
// the daemon's sign-in resolver; the second, whose package.json says
// 1.1.0, is rolled out without a restart: make-wrapper.sh rewrites the
// configured wrapper to pin the new folder and prints its new digest and
// readPaths, which go into the configuration, and `spectroauthd reload`.
// (The digest covers the wrapper alone, so an edit of plugin.js in place
// is not a new version to the daemon: a release goes into a new folder.)
func TestNodeResolverReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	if _, err := exec.LookPath("node"); err != nil {
		skipUnlessCI(t, "node is not on PATH: install Node.js 20 or later to test the Node.js plugin example")
	}
	if _, err := os.Stat("../sdk/node/node_modules/@grpc/grpc-js/package.json"); err != nil {
		skipUnlessCI(t, "sdk/node's node_modules are missing: run `npm ci --ignore-scripts` in sdk/node")
	}
	sdkNode, err := filepath.Abs("../sdk/node")
	if err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(t.TempDir(), "resolver-node")
	// release copies the example at version, writes the wrapper for it and
	// returns make-wrapper.sh's readPaths line.
	release := func(version string) (*thirdParty, string) {
		t.Helper()
		p := copyExample(t, "resolver-node", "plugin.js", "package.json", "make-wrapper.sh", "conformance.yaml",
			"go.mod", "go.sum", "plugintest_test.go")
		p.edit("package.json", regexp.MustCompile(`"version": "[^"]*"`), `"version": "`+version+`"`)
		p.edit("package.json", regexp.MustCompile(`"file:../../sdk/node"`), `"file:`+sdkNode+`"`)
		if err := os.MkdirAll(filepath.Join(p.dir, "node_modules", "@spectroauth"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(sdkNode, filepath.Join(p.dir, "node_modules", "@spectroauth", "plugin-sdk")); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", filepath.Join(p.dir, "make-wrapper.sh"), wrapper)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("make-wrapper.sh: %v\n%s", err, stderr.String())
		}
		_, readPaths, ok := strings.Cut(string(out), "\nreadPaths: ")
		if !strings.HasPrefix(string(out), "sha256: ") || !ok {
			t.Fatalf("make-wrapper.sh printed %q, want its sha256 and readPaths lines", out)
		}
		return p, strings.TrimSpace(readPaths)
	}
	p, readPaths := release("1.0.0")

	// Its own plugintest run and `spectroauthd plugin test`, outside the checkout.
	if out := p.gocmd("test", "-count=1", "."); !strings.Contains(out, "ok") {
		t.Errorf("its own plugintest run: %s", out)
	}
	args := []string{"plugin", "test", "-plugin", wrapper, "-cases", filepath.Join(p.dir, "conformance.yaml")}
	for _, path := range strings.Split(strings.Trim(readPaths, "[]"), ", ") {
		args = append(args, "-read-path", strings.Trim(path, "'"))
	}
	var stdout, stderr bytes.Buffer
	if code := run(args, &stdout, &stderr); code != 0 || !regexp.MustCompile(`(?m)^[1-9]\d* passed, 0 failed$`).Match(stdout.Bytes()) {
		t.Fatalf("spectroauthd plugin test: exit %d, stdout %q, stderr %q; want N passed, 0 failed", code, stdout.String(), stderr.String())
	}

	r := newReloadRig(t, daemonBinary(t))
	entry := func(readPaths string) string {
		return "    readPaths: " + readPaths + "\n    config: {namespace: people}\n"
	}
	r.plugin = rigPlugin{name: "email-domain-node", resolver: "emailDomainToUser", options: "{domain: example.com}", entry: entry(readPaths)}
	r.writeConfig(wrapper, digestOf(t, wrapper), "")
	r.start()
	r.rollOut("1.0.0", "1.1.0", "user:people/pid", func() string {
		_, readPaths := release("1.1.0")
		r.plugin.entry = entry(readPaths)
		r.writeConfig(wrapper, digestOf(t, wrapper), "")
		code, out := r.reload()
		if code != 0 {
			t.Fatalf("spectroauthd reload: exit %d\n%s", code, out)
		}
		return out
	})
}

// skipUnlessCI skips t for a missing prerequisite, or fails it under CI,
// where .ci/run installs every prerequisite and a missing one is a bug.
func skipUnlessCI(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(why + " (CI is set: this fails rather than skips)")
	}
	t.Skip(why)
}
