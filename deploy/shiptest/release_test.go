package shiptest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// dist is the release directory make test-release built; the tests skip
// without it.
func dist(t *testing.T) string {
	t.Helper()
	d := os.Getenv("SPECTROAUTH_DIST")
	if d == "" {
		t.Skip("SPECTROAUTH_DIST not set: run make test-release")
	}
	return d
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// SHA256SUMS lists every file of the release in sha256sum's format, the
// digest being what operators paste into plugins.<name>.sha256.
func TestReleaseChecksums(t *testing.T) {
	d := dist(t)
	f, err := os.Open(filepath.Join(d, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 {
			t.Fatalf("SHA256SUMS line %q is not sha256sum's \"HEX  NAME\"", sc.Text())
		}
		if got := fileSHA256(t, filepath.Join(d, name)); got != sum {
			t.Errorf("%s: sha256 %s, SHA256SUMS says %s", name, got, sum)
		}
		listed[name] = true
	}
	err = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		name, _ := filepath.Rel(d, p)
		if name != "SHA256SUMS" && !listed[name] {
			t.Errorf("%s is not in SHA256SUMS", name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"linux_amd64/spectroauthd", "linux_arm64/spectroauthd", "linux_amd64/plugins/claims", "linux_arm64/plugins/oidc-cluster"} {
		if !listed[want] {
			t.Errorf("SHA256SUMS does not list %s", want)
		}
	}
}

// Every binary is a static ELF executable of its platform: it runs FROM
// scratch, without a libc or a loader. The one of this machine's platform
// says the version it was stamped with.
func TestReleaseBinariesAreStaticAndStamped(t *testing.T) {
	d := dist(t)
	machines := map[string]elf.Machine{"linux_amd64": elf.EM_X86_64, "linux_arm64": elf.EM_AARCH64}
	for platform, machine := range machines {
		bins, _ := filepath.Glob(filepath.Join(d, platform, "plugins", "*"))
		bins = append(bins, filepath.Join(d, platform, "spectroauthd"))
		if len(bins) < 2 {
			t.Fatalf("%s: no plugins", platform)
		}
		for _, bin := range bins {
			name, _ := filepath.Rel(d, bin)
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if f.Machine != machine {
				t.Errorf("%s: built for %v, want %v", name, f.Machine, machine)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s: dynamically linked (it asks for a program interpreter)", name)
				}
			}
			if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
				t.Errorf("%s: needs shared libraries %v", name, libs)
			}
			f.Close()
		}
	}
	native := filepath.Join(d, runtime.GOOS+"_"+runtime.GOARCH, "spectroauthd")
	out, err := exec.Command(native, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", native, err, out)
	}
	want := "spectroauthd " + os.Getenv("SPECTROAUTH_VERSION") + " (commit " + os.Getenv("SPECTROAUTH_COMMIT") + ","
	if !strings.HasPrefix(string(out), want) {
		t.Errorf("version says %q, want it to start with %q", out, want)
	}
}

// The SBOM is CycloneDX and lists the modules linked into the daemon.
func TestReleaseSBOM(t *testing.T) {
	d := dist(t)
	files, _ := filepath.Glob(filepath.Join(d, "*.cdx.json"))
	if len(files) != 1 {
		t.Fatalf("%d CycloneDX files in %s, want 1", len(files), d)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var bom struct {
		BOMFormat   string `json:"bomFormat"`
		SpecVersion string `json:"specVersion"`
		Metadata    struct {
			Component struct {
				Name string `json:"name"`
			} `json:"component"`
		} `json:"metadata"`
		Components []struct {
			Name    string `json:"name"`
			Version string `json:"version"`
			PURL    string `json:"purl"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &bom); err != nil {
		t.Fatalf("%s: %v", files[0], err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.SpecVersion == "" {
		t.Errorf("bomFormat %q specVersion %q", bom.BOMFormat, bom.SpecVersion)
	}
	if !strings.Contains(bom.Metadata.Component.Name, "spectroauth") {
		t.Errorf("the SBOM describes %q", bom.Metadata.Component.Name)
	}
	found := false
	for _, c := range bom.Components {
		if strings.HasPrefix(c.PURL, "pkg:golang/github.com/hashicorp/go-plugin@") && c.Version != "" {
			found = true
		}
	}
	if !found {
		t.Errorf("the SBOM's %d components do not list github.com/hashicorp/go-plugin", len(bom.Components))
	}
}

// The same commit gives the same bytes: the daemon and the plugins for
// this machine's platform, built again from a copy of the sources at
// another path, into another directory, equal those of dist/.
func TestReleaseReproducible(t *testing.T) {
	d := dist(t)
	src := os.Getenv("SPECTROAUTH_SRC")
	if src == "" {
		t.Skip("SPECTROAUTH_SRC not set: run make test-release")
	}
	files, err := exec.Command("git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("listing the sources: %v", err)
	}
	copyDir := filepath.Join(t.TempDir(), "elsewhere", "spectroauth")
	for _, name := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			if os.IsNotExist(err) { // deleted, not yet committed
				continue
			}
			t.Fatal(err)
		}
		fi, _ := os.Stat(filepath.Join(src, name))
		dst := filepath.Join(copyDir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(t.TempDir(), "bin")
	cmd := exec.Command("make", "-C", copyDir, "build", "BIN="+bin,
		"VERSION="+os.Getenv("SPECTROAUTH_VERSION"), "COMMIT="+os.Getenv("SPECTROAUTH_COMMIT"))
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+runtime.GOARCH, "MAKEFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build in a copy: %v\n%s", err, out)
	}
	platform := filepath.Join(d, "linux_"+runtime.GOARCH)
	rebuilt, _ := filepath.Glob(filepath.Join(bin, "plugins", "*"))
	rebuilt = append(rebuilt, filepath.Join(bin, "spectroauthd"))
	for _, b := range rebuilt {
		name, _ := filepath.Rel(bin, b)
		x, err1 := os.ReadFile(b)
		y, err2 := os.ReadFile(filepath.Join(platform, name))
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", name, err1, err2)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s built again from %s differs from %s's", name, copyDir, platform)
		}
	}
}
