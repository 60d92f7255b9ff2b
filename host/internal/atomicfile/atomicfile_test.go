package atomicfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// The ways of writing under test: by path (the only one since the session
// store, which held its directory open, moved to a journal).
var writers = []struct {
	name  string
	write func(t *testing.T, dir, name string, data []byte, perm os.FileMode) error
}{
	{"path", func(_ *testing.T, dir, name string, data []byte, perm os.FileMode) error {
		return WriteFile(filepath.Join(dir, name), data, perm)
	}},
}

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name string
		prev []byte // nil: the file does not exist yet
		data []byte
		perm os.FileMode
	}{
		{name: "new file", data: []byte("hello"), perm: 0o600},
		{name: "replace", prev: []byte("old content that is longer"), data: []byte("new"), perm: 0o600},
		{name: "empty", prev: []byte("x"), data: []byte{}, perm: 0o600},
		{name: "wider mode", data: []byte("public"), perm: 0o644},
		// Wider than any usual umask lets open(2) create: the chmod is needed.
		{name: "widest mode", data: []byte("public"), perm: 0o666},
		{name: "narrower mode over a wider file", prev: []byte("x"), data: []byte("secret"), perm: 0o400},
		{name: "large", data: bytes.Repeat([]byte("0123456789abcdef"), 1<<16), perm: 0o600},
	}
	for _, w := range writers {
		for _, tc := range tests {
			t.Run(w.name+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				p := filepath.Join(dir, "f.json")
				if tc.prev != nil {
					if err := os.WriteFile(p, tc.prev, 0o666); err != nil {
						t.Fatal(err)
					}
				}
				if err := w.write(t, dir, "f.json", tc.data, tc.perm); err != nil {
					t.Fatalf("WriteFile: %v", err)
				}
				got, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, tc.data) {
					t.Errorf("content differs: %d bytes, want %d", len(got), len(tc.data))
				}
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != tc.perm {
					t.Errorf("mode = %v, want %v", fi.Mode().Perm(), tc.perm)
				}
				assertNoTemp(t, dir)
			})
		}
	}
}

func TestWriteFileErrorLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	// The target's directory does not exist: nothing may be created.
	p := filepath.Join(dir, "missing", "f")
	if err := WriteFile(p, []byte("x"), 0o600); err == nil {
		t.Fatal("WriteFile into a missing directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("left entries behind: %v", entries)
	}

	// The target is a directory: the rename fails, the temp file is removed
	// and the directory is untouched.
	target := filepath.Join(dir, "adir")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "inner"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(target, []byte("x"), 0o600); err == nil {
		t.Fatal("WriteFile over a non-empty directory succeeded")
	}
	assertNoTemp(t, dir)
	if b, err := os.ReadFile(filepath.Join(target, "inner")); err != nil || string(b) != "keep" {
		t.Fatalf("directory content changed: %q, %v", b, err)
	}

	// An empty directory is not replaced either.
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(empty, []byte("x"), 0o600); err == nil {
		t.Fatal("WriteFile over an empty directory succeeded")
	}
	assertNoTemp(t, dir)
	if fi, err := os.Stat(empty); err != nil || !fi.IsDir() {
		t.Fatalf("empty directory replaced: %v, %v", fi, err)
	}
}

// Concurrent writers of the same path: every reader sees one complete
// version, never a mix.
func TestWriteFileConcurrent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	versions := make([][]byte, 8)
	for i := range versions {
		versions[i] = bytes.Repeat([]byte{byte('a' + i)}, 64<<10)
	}
	if err := WriteFile(p, versions[0], 0o600); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range versions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if err := WriteFile(p, versions[i], 0o600); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Error(err)
				return
			}
			if len(b) != 64<<10 || !bytes.Equal(b, bytes.Repeat(b[:1], len(b))) {
				t.Errorf("reader saw a torn file of %d bytes", len(b))
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	rwg.Wait()
	assertNoTemp(t, dir)
}

func TestIsTemp(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{".key.json.tmp-123456", true},
		{".abc.tmp-", true},
		{"key.json", false},
		{"key.tmp-1", false}, // not a dot file: not ours
		{".hidden", false},
	}
	for _, tc := range tests {
		if got := IsTemp(tc.name); got != tc.want {
			t.Errorf("IsTemp(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A crash between create and rename leaves a temporary file: CleanTemp
// removes it and nothing else.
func TestCleanTemp(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "real.json")
	if err := WriteFile(keep, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		name := filepath.Join(dir, fmt.Sprintf(".real.json%s%d", tempMarker, i))
		if err := os.WriteFile(name, []byte("{half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, ".x.tmp-dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	n, err := CleanTemp(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("removed %d, want 3", n)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("real file gone: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".x.tmp-dir")); err != nil {
		t.Errorf("directory removed: %v", err)
	}
}

func TestRemove(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("file still there: %v", err)
	}
	if err := Remove(p); err != nil {
		t.Fatalf("removing a missing file: %v", err)
	}
}

func TestMkdirPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := MkdirPrivate(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := MkdirPrivate(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("mode = %v, want 0700", fi.Mode().Perm())
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if IsTemp(e.Name()) {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

// writeFileOS is WriteFile as it was before the raw system calls, through
// os.File (CreateTemp, Chmod, Write, Sync, Close, rename, then open, sync
// and close the directory): the benchmarks' reference.
func writeFileOS(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+base+tempMarker+"*")
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := syscall.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// BenchmarkWriteFileNew writes a new file each time: through os.File as
// before ("os"), and by path with raw system calls ("path").
func BenchmarkWriteFileNew(b *testing.B) {
	benchWrites(b, func(i int) string { return strconv.Itoa(i) })
}

// BenchmarkWriteFile replaces one file over and over.
func BenchmarkWriteFile(b *testing.B) {
	benchWrites(b, func(int) string { return "f" })
}

// benchWrites writes 2 kB both ways, the i-th write to name(i).
func benchWrites(b *testing.B, name func(i int) string) {
	data := bytes.Repeat([]byte("x"), 2048)
	for _, bc := range []struct {
		name  string
		write func(path string) error
	}{
		{"os", func(path string) error { return writeFileOS(path, data, 0o600) }},
		{"path", func(path string) error { return WriteFile(path, data, 0o600) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			b.ReportAllocs()
			cpu := startCPU(b)
			i := 0
			for b.Loop() {
				i++
				if err := bc.write(filepath.Join(dir, name(i))); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report()
		})
	}
}
