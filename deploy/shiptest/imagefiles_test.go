package shiptest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"testing"
)

// The image holds the daemon, the plugins, the CA bundle, the passwd and
// group files, /tmp and the data directory: nothing else.
func TestImageHoldsNothingElse(t *testing.T) {
	archive := os.Getenv("SPECTROAUTH_IMAGE")
	if archive == "" {
		t.Skip("SPECTROAUTH_IMAGE not set: run make test-image")
	}
	blobs := readArchive(t, archive)
	var index struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	mustJSON(t, blobs["index.json"], &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("%d manifests in the archive, want 1", len(index.Manifests))
	}
	var manifest struct {
		Config struct{ Digest string } `json:"config"`
		Layers []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		} `json:"layers"`
	}
	mustJSON(t, blob(t, blobs, index.Manifests[0].Digest), &manifest)
	var config struct {
		Config struct {
			User       string   `json:"User"`
			Entrypoint []string `json:"Entrypoint"`
		} `json:"config"`
	}
	mustJSON(t, blob(t, blobs, manifest.Config.Digest), &config)
	if config.Config.User != "65532:65532" || strings.Join(config.Config.Entrypoint, " ") != "/usr/bin/spectroauthd" {
		t.Errorf("user %q, entrypoint %q; want 65532:65532 and /usr/bin/spectroauthd", config.Config.User, config.Config.Entrypoint)
	}

	files := map[string]*tar.Header{}
	for _, l := range manifest.Layers {
		var r io.Reader = bytes.NewReader(blob(t, blobs, l.Digest))
		if strings.HasSuffix(l.MediaType, "+gzip") {
			zr, err := gzip.NewReader(r)
			if err != nil {
				t.Fatalf("layer %s: %v", l.Digest, err)
			}
			r = zr
		}
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("layer %s: %v", l.Digest, err)
			}
			name := path.Clean("/" + h.Name)
			if h.Typeflag != tar.TypeDir {
				files[name] = h
			}
		}
	}
	allowed := map[string]bool{
		"/usr/bin/spectroauthd": true, "/etc/ssl/certs/ca-certificates.crt": true,
		"/etc/passwd": true, "/etc/group": true,
	}
	var names []string
	for name, h := range files {
		names = append(names, name)
		switch {
		case allowed[name], strings.HasPrefix(name, "/opt/spectroauth/plugins/") && path.Dir(name) == "/opt/spectroauth/plugins":
		default:
			t.Errorf("the image holds %s, which it should not", name)
		}
		if h.Typeflag != tar.TypeReg {
			t.Errorf("%s is not a regular file", name)
		}
	}
	sort.Strings(names)
	if files["/usr/bin/spectroauthd"] == nil || len(names) < 5 {
		t.Errorf("the image holds %v; want the daemon, the plugins, the CA bundle, passwd and group", names)
	}
}

// readArchive reads an OCI archive (a tar of index.json and blobs/).
func readArchive(t *testing.T, file string) map[string][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[path.Clean(h.Name)] = b
		}
	}
}

// blob is the archive's blob of digest (sha256:HEX).
func blob(t *testing.T, blobs map[string][]byte, digest string) []byte {
	t.Helper()
	algo, hex, _ := strings.Cut(digest, ":")
	b, ok := blobs[path.Join("blobs", algo, hex)]
	if !ok {
		t.Fatalf("the archive has no blob %s", digest)
	}
	return b
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}
