package session

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/internal/atomicfile"
)

// The migration of a directory of the one-file-per-session layout (read in
// parallel) must find what the sequential os.ReadFile load did: the same
// live keys (imported into the journal), the same expired files (removed,
// as the imported ones are), the same unreadable files skipped (and left),
// logged by name and fixed reason only.
func TestMigrationMatchesSequentialLoad(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		live, expired, corrupt int
	}{
		{"empty", 0, 0, 0},
		{"one", 1, 0, 0},
		{"few, one worker", 20, 5, 3},
		{"many, all workers", 700, 150, 40},
		{"only expired", 0, 200, 0},
		{"only corrupt", 0, 0, 130},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sdir := filepath.Join(dir, "sessions")
			clock := newClock()
			writeMixedSessions(t, sdir, clock, tc.live, tc.expired, tc.corrupt)
			clock.Advance(2 * time.Hour) // the "expired" ones (1 h) end, the live ones (24 h) do not

			want := sequentialLoad(t, sdir, clock.Now())
			before := dirNames(t, sdir)

			var logs bytes.Buffer
			s := openStore(t, dir, clock, &logs)
			var got []Key
			s.index.Range(func(k, _ any) bool { got = append(got, k.(Key)); return true })
			slices.SortFunc(got, func(a, b Key) int { return bytes.Compare(a[:], b[:]) })
			if !slices.Equal(got, want.live) {
				t.Errorf("loaded %d keys, want the %d the sequential load finds", len(got), len(want.live))
			}
			for _, k := range want.live {
				if _, err := s.Get(context.Background(), k); err != nil {
					t.Errorf("Get(%s): %v", k, err)
				}
			}
			// Imported and expired files removed (and the crash's
			// temporary file, as ever), nothing else.
			after := dirNames(t, sdir)
			var removed []string
			for _, n := range before {
				if !slices.Contains(after, n) && !atomicfile.IsTemp(n) {
					removed = append(removed, n)
				}
			}
			wantRemoved := slices.Clone(want.expired)
			for _, k := range want.live {
				wantRemoved = append(wantRemoved, fileName(k))
			}
			slices.Sort(wantRemoved)
			if !slices.Equal(removed, wantRemoved) {
				t.Errorf("removed %d files, want the %d imported and %d expired ones", len(removed), len(want.live), len(want.expired))
			}
			// And the journal has them: a reopen loads them all.
			_ = s.Close()
			s2 := openStore(t, dir, clock, nil)
			if s2.Len() != len(want.live) {
				t.Errorf("reopened with %d sessions, want %d", s2.Len(), len(want.live))
			}
			// Each unreadable file logged once, by name and reason.
			for _, n := range want.unreadable {
				if c := strings.Count(logs.String(), n); c != 1 {
					t.Errorf("unreadable %s logged %d times, want once", n, c)
				}
			}
			if c := strings.Count(logs.String(), "skipping unreadable session file"); c != len(want.unreadable) {
				t.Errorf("logged %d unreadable files, want %d", c, len(want.unreadable))
			}
			if strings.Contains(logs.String(), "SECRET") {
				t.Errorf("log reveals file content:\n%s", logs.String())
			}
			counts := fmt.Sprintf("imported=%d expired=%d superseded=0 skipped=%d", len(want.live), len(want.expired), len(want.unreadable))
			if len(want.live)+len(want.expired)+len(want.unreadable) > 0 && !strings.Contains(logs.String(), counts) {
				t.Errorf("log lacks %q:\n%s", counts, lastLines(logs.String(), 3))
			}
		})
	}
}

// A FIFO (or a symbolic link to one) under a session file's name is skipped
// as unreadable, rather than blocking the daemon's start on opening it, as
// os.ReadFile would.
func TestLoadSkipsNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	sdir := filepath.Join(dir, "sessions")
	clock := newClock()
	writeMixedSessions(t, sdir, clock, 3, 0, 0)
	fifo := filepath.Join(sdir, key(mustHandle(t)).String()+".json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if err := os.Symlink(fifo, filepath.Join(sdir, key(mustHandle(t)).String()+".json")); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	done := make(chan *FileStore, 1)
	go func() { done <- openStore(t, dir, clock, &logs) }()
	select {
	case s := <-done:
		if s.Len() != 3 {
			t.Errorf("loaded %d sessions, want 3", s.Len())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("load blocked on a FIFO")
	}
	if c := strings.Count(logs.String(), "not a regular file"); c != 2 {
		t.Errorf("logged %d non-regular files, want 2:\n%s", c, logs.String())
	}
}

// writeMixedSessions writes live sessions (a day long), expiring ones (an
// hour long, written with the store's own encoding) and corrupt files, plus
// files the load must ignore: a temporary file, a foreign name and a
// directory with a session file's name.
func writeMixedSessions(t *testing.T, sdir string, clock *fakeClock, live, expiring, corrupt int) {
	t.Helper()
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(sdir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := range live + expiring {
		sess := sample(clock.Now(), fmt.Sprintf("user%04d", i))
		if i >= live {
			sess.ExpiresAt = clock.Now().Add(time.Hour)
		}
		data, err := json.Marshal(sessionFile{Version: fileVersion, Session: sess})
		if err != nil {
			t.Fatal(err)
		}
		write(fileName(key(mustHandle(t))), data)
	}
	bad := []string{
		`{"version":1,"session":{"upstream":{"refreshToken":"rt-SECRET`,
		`SECRET`,
		`{"version":99,"session":{"expiresAt":"2030-01-01T00:00:00Z"}}`,
		`{"version":1,"session":{"upstream":{"refreshToken":"SECRET"}}}`,
		``,
	}
	for i := range corrupt {
		write(fileName(key(mustHandle(t))), []byte(bad[i%len(bad)]))
	}
	write(".0123.json.tmp-crash", []byte(`{"version":1}`))
	write("notes.txt", []byte("unrelated"))
	if err := os.Mkdir(filepath.Join(sdir, fileName(key(mustHandle(t)))), 0o700); err != nil {
		t.Fatal(err)
	}
}

// loadResult is what a load found: keys (sorted) and file names (sorted).
type loadResult struct {
	live                []Key
	expired, unreadable []string
}

// sequentialLoad is the load as it was, one os.ReadFile after another over
// a sorted listing, without changing anything: the reference.
func sequentialLoad(t *testing.T, sdir string, now time.Time) loadResult {
	t.Helper()
	entries, err := os.ReadDir(sdir)
	if err != nil {
		t.Fatal(err)
	}
	var r loadResult
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || atomicfile.IsTemp(name) {
			continue
		}
		k, ok := keyFromFileName(name)
		if !ok {
			continue
		}
		sess, why := decodeSessionFile(os.ReadFile(filepath.Join(sdir, name)))
		switch {
		case why != "":
			r.unreadable = append(r.unreadable, name)
		case sess.Expired(now):
			r.expired = append(r.expired, name)
		default:
			r.live = append(r.live, k)
		}
	}
	slices.SortFunc(r.live, func(a, b Key) int { return bytes.Compare(a[:], b[:]) })
	return r
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if p != dir {
			names = append(names, strings.TrimPrefix(p, dir+"/"))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names // WalkDir's order is lexical
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
