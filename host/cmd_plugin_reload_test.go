package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSetPluginDigest(t *testing.T) {
	const digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for name, tc := range map[string]struct {
		in, want, err string
		changed       bool
	}{
		"plain": {
			in:      "# dev\nplugins:\n  tp:\n    command: bin/tp # built by make\n    sha256: aa   # old\n  other:\n    sha256: bb\n",
			want:    "# dev\nplugins:\n  tp:\n    command: bin/tp # built by make\n    sha256: " + digest + "   # old\n  other:\n    sha256: bb\n",
			changed: true,
		},
		"double-quoted": {
			in:      "plugins:\n  tp: {command: bin/tp, sha256: \"aa\"}\n",
			want:    "plugins:\n  tp: {command: bin/tp, sha256: \"" + digest + "\"}\n",
			changed: true,
		},
		"single-quoted": {
			in:      "plugins:\n  tp:\n    sha256: 'aa'\n",
			want:    "plugins:\n  tp:\n    sha256: '" + digest + "'\n",
			changed: true,
		},
		"unchanged": {
			in:   "plugins:\n  tp:\n    sha256: " + digest + "\n",
			want: "plugins:\n  tp:\n    sha256: " + digest + "\n",
		},
		"from the environment": {
			in:  "plugins:\n  tp:\n    sha256: ${TP_SHA256}\n",
			err: "variable of the daemon's environment",
		},
		"missing": {
			in:  "plugins:\n  other:\n    sha256: aa\n",
			err: "no plugins.tp.sha256 in the file",
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.in), 0o640); err != nil {
				t.Fatal(err)
			}
			changed, err := setPluginDigest(path, "tp", digest)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				if got, _ := os.ReadFile(path); string(got) != tc.in || changed {
					t.Fatalf("a refused rewrite changed the file (changed %v):\n%s", changed, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(path)
			if string(got) != tc.want || changed != tc.changed {
				t.Fatalf("changed %v, file:\n%s\nwant changed %v, file:\n%s", changed, got, tc.changed, tc.want)
			}
			if info, _ := os.Stat(path); info.Mode().Perm() != 0o640 {
				t.Fatalf("mode %v, want 0640 kept", info.Mode().Perm())
			}
		})
	}
}

// TestSetPluginDigestThroughSymlink: a configuration reached through a
// symlink is rewritten in its target file; the link stays a link.
func TestSetPluginDigestThroughSymlink(t *testing.T) {
	const digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	dir := t.TempDir()
	target := filepath.Join(dir, "target.yaml")
	if err := os.WriteFile(target, []byte("plugins:\n  tp:\n    sha256: aa\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if changed, err := setPluginDigest(link, "tp", digest); err != nil || !changed {
		t.Fatalf("setPluginDigest = %v, %v", changed, err)
	}
	if info, err := os.Lstat(link); err != nil || info.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v, %v", info, err)
	}
	if got, _ := os.ReadFile(target); string(got) != "plugins:\n  tp:\n    sha256: "+digest+"\n" {
		t.Fatalf("the target file holds:\n%s", got)
	}
}
