package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spectroauth/spectroauth/sdk"
)

// TestPluginTestCommand runs `spectroauthd plugin test` against the built
// Go example with its cases file, then with cases that miss what the plugin
// offers, which must fail rather than skip.
func TestPluginTestCommand(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "resolver-go")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = "../examples/resolver-go"
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the example: %v\n%s", err, out)
	}
	cases, err := os.ReadFile("../examples/resolver-go/conformance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Without the not-found cases.
	partial := filepath.Join(dir, "partial.yaml")
	var kept []string
	for _, block := range strings.SplitAfter(string(cases), "\n  - name: ") {
		if !strings.Contains(block, "expect: notFound") {
			kept = append(kept, block)
		}
	}
	if err := os.WriteFile(partial, []byte(strings.Join(kept, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	unknown := filepath.Join(dir, "unknown.yaml")
	if err := os.WriteFile(unknown, []byte("resolv: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The daemon's runner verifies a binary before it runs it, as at start.
	writable := filepath.Join(dir, "writable")
	if b, err := os.ReadFile(bin); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(writable, b, 0o777); err != nil {
		t.Fatal(err)
	} else if err := os.Chmod(writable, 0o777); err != nil {
		t.Fatal(err)
	}
	summary := regexp.MustCompile(`(?m)^(\d+) passed, (\d+) failed$`)
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		failed   bool   // some checks fail
		out, err string // what stdout and stderr must contain
	}{
		{name: "conforms", args: []string{"-plugin", bin, "-cases", "../examples/resolver-go/conformance.yaml"}, code: 0, out: " passed, 0 failed"},
		{name: "missing cases", args: []string{"-plugin", bin, "-cases", partial}, code: 1, failed: true,
			out: `has no case of resolver "emailDomainToUser" with Expect not found`},
		{name: "no cases", args: []string{"-plugin", bin}, code: 1, failed: true, out: "Suite.BadOptions is empty"},
		{name: "unknown key", args: []string{"-plugin", bin, "-cases", unknown}, code: 1, err: `unknown field "resolv"`},
		{name: "no plugin", args: nil, code: 2, err: "usage: spectroauthd plugin test"},
		{name: "started by the daemon's runner", args: []string{"-plugin", writable}, code: 1, err: "is writable by group or others"},
		{name: "bad env", args: []string{"-plugin", bin, "-env", "NOVALUE"}, code: 2, err: `-env "NOVALUE": want NAME=VALUE`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"plugin", "test"}, tc.args...), &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.err) {
				t.Errorf("stdout = %q, stderr = %q; want %q and %q in them", stdout.String(), stderr.String(), tc.out, tc.err)
			}
			if tc.code == 2 || tc.err != "" {
				return
			}
			m := summary.FindStringSubmatch(stdout.String())
			if m == nil || m[1] == "0" || (m[2] != "0") != tc.failed {
				t.Errorf("summary %q in %q, want some passed and failed=%v", m, stdout.String(), tc.failed)
			}
		})
	}
}

// TestDaemonLinksNoTestSupport: the daemon runs the conformance suite
// through sdk/conformance, not sdk/plugintest, so that none of its own or the
// SDK's packages pulls package testing into the binary. (go-plugin's main
// package imports testing itself, for its own test helpers; that is outside
// this repository's hands, so the check is on who imports it.)
func TestDaemonLinksNoTestSupport(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	var linked []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(pkg, "github.com/spectroauth/") {
			continue
		}
		linked = append(linked, pkg)
		if pkg == "github.com/spectroauth/spectroauth/sdk/plugintest" {
			t.Errorf("the daemon links %s, which imports package testing: use sdk/conformance", pkg)
		}
		if slices.Contains(strings.Fields(imports), "testing") {
			t.Errorf("the daemon links %s, which imports package testing", pkg)
		}
	}
	// The check ran over the daemon's own packages, the conformance suite
	// among them (not over an empty or foreign list).
	for _, want := range []string{"github.com/spectroauth/spectroauth/host", "github.com/spectroauth/spectroauth/sdk/conformance"} {
		if !slices.Contains(linked, want) {
			t.Errorf("go list -deps of the daemon lacks %s: %v", want, linked)
		}
	}
}

// thirdParty is an example plugin copied out of the checkout, as a team
// outside this repository holds its plugin: its own Go module, whose replace
// points at this checkout's sdk/, standing in for the released SDK module
// (the module cache is shared, so no network is needed).
type thirdParty struct {
	t           *testing.T
	dir, sdkDir string
}

// copyExample copies the files of examples/<example> into a folder of t's.
func copyExample(t *testing.T, example string, files ...string) *thirdParty {
	t.Helper()
	sdkDir, err := filepath.Abs("../sdk")
	if err != nil {
		t.Fatal(err)
	}
	p := &thirdParty{t: t, dir: t.TempDir(), sdkDir: sdkDir}
	for _, name := range files {
		b, err := os.ReadFile(filepath.Join("../examples", example, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "go.mod" {
			const replace = "replace github.com/spectroauth/spectroauth/sdk => ../../sdk"
			if !strings.Contains(string(b), replace) {
				t.Fatalf("examples/%s/go.mod lacks %q", example, replace)
			}
			b = []byte(strings.Replace(string(b), replace, "replace github.com/spectroauth/spectroauth/sdk => "+sdkDir, 1))
		}
		p.write(name, b)
	}
	return p
}

// write writes a file of the copy, readable by all, writable by its owner
// only (as make-wrapper.sh wants what it pins).
func (p *thirdParty) write(name string, b []byte) {
	p.t.Helper()
	if err := os.WriteFile(filepath.Join(p.dir, name), b, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// edit replaces what re matches in the copy's file name by repl, which must
// match.
func (p *thirdParty) edit(name string, re *regexp.Regexp, repl string) {
	p.t.Helper()
	src, err := os.ReadFile(filepath.Join(p.dir, name))
	if err != nil {
		p.t.Fatal(err)
	}
	if !re.Match(src) {
		p.t.Fatalf("the example's %s no longer matches %s", name, re)
	}
	p.write(name, re.ReplaceAll(src, []byte(repl)))
}

// gocmd runs the go command in the copy and returns its output.
func (p *thirdParty) gocmd(args ...string) string {
	p.t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = p.dir
	// The environment's GOFLAGS and GOPROXY hold; -mod=mod comes last to
	// win, so that go.sum may gain what the copy's build needs.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		p.t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// copyResolverGo copies examples/resolver-go (copyExample).
func copyResolverGo(t *testing.T) *thirdParty {
	return copyExample(t, "resolver-go", "go.mod", "go.sum", "main.go", "main_test.go", "conformance.yaml")
}

// releaseGo sets the version the Go resolver copy reports (sdk.Plugin's
// Version in main.go: the example has no build flag for it) and builds it
// into place at out, as its authors would release a new version.
func (p *thirdParty) releaseGo(version, out string) {
	p.t.Helper()
	p.edit("main.go", regexp.MustCompile(`(sdk\.Plugin\{Name: "email-domain", Version: )"[^"]*"`), `${1}"`+version+`"`)
	p.gocmd("build", "-o", out+".new", ".")
	if err := os.Rename(out+".new", out); err != nil {
		p.t.Fatal(err)
	}
}

// TestThirdPartyResolver builds a resolver as a team outside this repository
// would (copyResolverGo). It must not need the daemon's module, must pass
// its own plugintest run, and its binary `spectroauthd plugin test`.
// TestThirdPartyResolverReload has the daemon load it and roll out a new
// version of it without a restart.
func TestThirdPartyResolver(t *testing.T) {
	p := copyResolverGo(t)
	mods := p.gocmd("list", "-m", "all")
	for _, line := range strings.Split(mods, "\n") {
		if mod, _, _ := strings.Cut(line, " "); mod == "github.com/spectroauth/spectroauth" {
			t.Fatalf("the resolver needs the daemon's module, not only the SDK's:\n%s", mods)
		}
	}
	if !strings.Contains(mods, "github.com/spectroauth/spectroauth/sdk v"+sdk.Version+" => "+p.sdkDir) {
		t.Errorf("go list -m all = %s, want the SDK module replaced by %s", mods, p.sdkDir)
	}
	bin := filepath.Join(p.dir, "resolver")
	p.gocmd("build", "-o", bin, ".")
	if out := p.gocmd("test", "-count=1", "-run", "TestConformance", "."); !strings.Contains(out, "ok") {
		t.Errorf("its own plugintest run: %s", out)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"plugin", "test", "-plugin", bin, "-cases", filepath.Join(p.dir, "conformance.yaml")}, &stdout, &stderr)
	m := regexp.MustCompile(`(?m)^(\d+) passed, 0 failed$`).FindStringSubmatch(stdout.String())
	if code != 0 || m == nil || m[1] == "0" {
		t.Errorf("spectroauthd plugin test: exit %d, stdout %q, stderr %q; want N passed, 0 failed", code, stdout.String(), stderr.String())
	}
}

// TestSDKRequiredAtItsVersion: the daemon and the examples require the SDK
// module at its own version (sdk.Version), replaced by this checkout's sdk/,
// so that build information and SBOMs name the SDK release they hold.
func TestSDKRequiredAtItsVersion(t *testing.T) {
	for file, replace := range map[string]string{
		"../go.mod":                        "./sdk",
		"../examples/resolver-go/go.mod":   "../../sdk",
		"../examples/resolver-node/go.mod": "../../sdk",
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"\tgithub.com/spectroauth/spectroauth/sdk v" + sdk.Version + "\n",
			"\nreplace github.com/spectroauth/spectroauth/sdk => " + replace + "\n",
		} {
			if !strings.Contains(string(b), want) && !strings.Contains(string(b), "require "+strings.TrimPrefix(want, "\t")) {
				t.Errorf("%s lacks %q", file, strings.TrimSpace(want))
			}
		}
	}
}
