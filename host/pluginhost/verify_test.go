//go:build linux

package pluginhost

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestVerifyBinaryHoldsTheFile: the sealed memfd holds exactly the file's
// bytes, its digest is theirs, and a script is recognised, for a file
// larger than one sendfile call may move and for an empty one.
func TestVerifyBinaryHoldsTheFile(t *testing.T) {
	big := make([]byte, 3<<20+17)
	for i := range big {
		big[i] = byte(rand.Uint32())
	}
	for _, tt := range []struct {
		name    string
		content []byte
		script  bool
	}{
		{"binary", big, false},
		{"script", []byte("#!/bin/sh\nexit 0\n"), true},
		{"empty", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "plugin")
			if err := os.WriteFile(path, tt.content, 0o700); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(tt.content)
			b, err := verifyBinary("tp", path, hex.EncodeToString(sum[:]), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer b.close()
			got, err := io.ReadAll(io.NewSectionReader(b.mem, 0, 1<<31))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.content) {
				t.Errorf("the memfd holds %d bytes that differ from the file's %d", len(got), len(tt.content))
			}
			if b.script != tt.script {
				t.Errorf("script = %v, want %v", b.script, tt.script)
			}
			if _, err := b.mem.Write([]byte("x")); err == nil {
				t.Error("the verified copy is writable")
			}
		})
	}
}

// TestCopyToMemfdFallsBack: a source sendfile refuses (a pipe) is copied
// through a buffer.
func TestCopyToMemfdFallsBack(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	content := bytes.Repeat([]byte("plugin"), 1000)
	go func() {
		_, _ = w.Write(content)
		w.Close()
	}()
	mfd, err := memfdCreate("test")
	if err != nil {
		t.Fatal(err)
	}
	dst := os.NewFile(uintptr(mfd), "memfd")
	defer dst.Close()
	n, err := copyToMemfd(dst, r, 1<<20)
	if err != nil || n != int64(len(content)) {
		t.Fatalf("copied %d bytes, %v; want %d", n, err, len(content))
	}
	got, err := io.ReadAll(io.NewSectionReader(dst, 0, 1<<20))
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("the memfd holds %q, %v", got, err)
	}
}

// TestCopyToMemfdStopsAtTheLimit: at most limit bytes are copied.
func TestCopyToMemfdStopsAtTheLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plugin")
	if err := os.WriteFile(path, make([]byte, 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	mfd, err := memfdCreate("test")
	if err != nil {
		t.Fatal(err)
	}
	dst := os.NewFile(uintptr(mfd), "memfd")
	defer dst.Close()
	if n, err := copyToMemfd(dst, src, 4097); n != 4097 || err != nil {
		t.Errorf("copied %d bytes, %v; want 4097", n, err)
	}
}

// TestBinariesVerifyEachOnce: plugins of one start that run the same file
// with the same digest share one verification and one memfd, which stays
// open until the last of them closes it; a different digest of the same
// file is verified on its own and fails on its own.
func TestBinariesVerifyEachOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plugin")
	content := []byte("\x7fELF not really, but bytes to hash")
	if err := os.WriteFile(path, content, 0o700); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	digest := hex.EncodeToString(sum[:])
	verified := 0
	testHookVerified = func(string) { verified++ }
	t.Cleanup(func() { testHookVerified = nil })

	var bs binaries
	const users = 4
	got := make([]*verifiedBinary, users)
	errs := make([]error, users)
	var wg sync.WaitGroup
	for i := range users {
		digest := digest
		if i%2 == 1 {
			digest = strings.ToUpper(digest) // the same digest, spelled otherwise
		}
		wg.Go(func() { got[i], errs[i] = bs.verify("p"+strconv.Itoa(i), path, digest) })
	}
	wg.Wait()
	for i := range users {
		if errs[i] != nil {
			t.Fatalf("plugin %d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("plugin %d got a memfd of its own", i)
		}
	}
	if verified != 1 {
		t.Errorf("the binary was verified %d times, want once", verified)
	}
	wrong := strings.Repeat("0", 64)
	var dm *digestMismatchError
	if _, err := bs.verify("other", path, wrong); !errors.As(err, &dm) {
		t.Errorf("another digest of the same file: %v, want a digest mismatch", err)
	}
	for i := range users - 1 {
		if err := got[i].close(); err != nil {
			t.Fatal(err)
		}
		if _, err := got[0].mem.Stat(); err != nil {
			t.Fatalf("after %d of %d closes the memfd is gone: %v", i+1, users, err)
		}
	}
	if err := got[0].close(); err != nil {
		t.Fatal(err)
	}
	if _, err := got[0].mem.Stat(); err == nil {
		t.Error("the memfd is still open after every plugin closed it")
	}
}
