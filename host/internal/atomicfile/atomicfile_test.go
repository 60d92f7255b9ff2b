package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// Both ways of writing: by path, and into a Dir held open.
var writers = []struct {
	name  string
	write func(t *testing.T, dir, name string, data []byte, perm os.FileMode) error
}{
	{"path", func(_ *testing.T, dir, name string, data []byte, perm os.FileMode) error {
		return WriteFile(filepath.Join(dir, name), data, perm)
	}},
	{"dir", func(t *testing.T, dir, name string, data []byte, perm os.FileMode) error {
		d, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		return d.WriteFile(name, data, perm)
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

// A name with a separator would write outside the directory: refused.
func TestDirRefusesPaths(t *testing.T) {
	dir := t.TempDir()
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, name := range []string{"", ".", "..", "../f", "a/b", "/etc/f"} {
		if err := d.WriteFile(name, []byte("x"), 0o600); err == nil {
			t.Errorf("WriteFile(%q) succeeded", name)
		}
		if err := d.Remove(name); err == nil {
			t.Errorf("Remove(%q) succeeded", name)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 1 {
		t.Errorf("something was written beside the directory: %v", entries)
	}
}

// The store's directory removed and created again under the running
// store receives the next write, as a write by path would.
func TestDirRemovedAndCreatedAgain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sessions")
	if err := MkdirPrivate(dir); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.WriteFile("a", []byte("1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	// Removed and not there: the write fails, and leaves nothing.
	if err := d.WriteFile("b", []byte("2"), 0o600); err == nil {
		t.Fatal("WriteFile into a removed directory succeeded")
	}
	if err := MkdirPrivate(dir); err != nil {
		t.Fatal(err)
	}
	// A file the new directory has (restored from a backup, say) is
	// removed there, not looked for in the removed one.
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Fatalf("file in the directory created again not removed: %v", err)
	}
	if err := d.WriteFile("c", []byte("3"), 0o600); err != nil {
		t.Fatalf("WriteFile into the directory created again: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "c")); err != nil || string(got) != "3" {
		t.Fatalf("file in the new directory = %q, %v", got, err)
	}
	if err := d.Remove("c"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "c")); !os.IsNotExist(err) {
		t.Fatalf("removed file still there: %v", err)
	}
	assertNoTemp(t, dir)
}

// Close waits for writes in flight and makes later calls fail; the
// descriptor is never closed under a write (run with -race).
func TestDirClose(t *testing.T) {
	dir := t.TempDir()
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 50 {
				err := d.WriteFile(fmt.Sprintf("f%d-%d", i, j), []byte("x"), 0o600)
				if err != nil && !errors.Is(err, os.ErrClosed) {
					t.Errorf("WriteFile: %v", err)
				}
			}
		})
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"WriteFile": d.WriteFile("late", []byte("x"), 0o600),
		"Remove":    d.Remove("late"),
		"Sync":      d.Sync(),
	} {
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("%s after Close: %v, want os.ErrClosed", name, err)
		}
	}
	assertNoTemp(t, dir)
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

// BenchmarkWriteFileNew writes a new file each time, as a sign-in's
// session does: through os.File as before ("os"), by path with raw system
// calls ("path"), and into a Dir held open as the session store does
// ("dir").
func BenchmarkWriteFileNew(b *testing.B) {
	benchWrites(b, func(i int) string { return strconv.Itoa(i) })
}

// BenchmarkWriteFile replaces one file over and over.
func BenchmarkWriteFile(b *testing.B) {
	benchWrites(b, func(int) string { return "f" })
}

// benchWrites writes 2 kB the three ways, the i-th write to name(i).
func benchWrites(b *testing.B, name func(i int) string) {
	data := bytes.Repeat([]byte("x"), 2048)
	for _, bc := range []struct {
		name  string
		write func(d *Dir, name string) error
	}{
		{"os", func(d *Dir, name string) error { return writeFileOS(filepath.Join(d.Path(), name), data, 0o600) }},
		{"path", func(d *Dir, name string) error { return WriteFile(filepath.Join(d.Path(), name), data, 0o600) }},
		{"dir", func(d *Dir, name string) error { return d.WriteFile(name, data, 0o600) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d, err := OpenDir(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			b.ReportAllocs()
			cpu := startCPU(b)
			i := 0
			for b.Loop() {
				i++
				if err := bc.write(d, name(i)); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report()
		})
	}
}
