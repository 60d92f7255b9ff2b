package session

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// key is the store key of a handle made by mustHandle.
func key(h string) Key {
	k, err := KeyOf(h)
	if err != nil {
		panic(err)
	}
	return k
}

func mustHandle(t testing.TB) string {
	t.Helper()
	h, err := NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// sample is a session with realistic sizes: JWTs of about 1 KB.
func sample(now time.Time, user string) *Session {
	jwt := strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 50)
	return &Session{
		Env:                 "development",
		Provider:            "spectrocloud",
		CreatedAt:           now,
		ExpiresAt:           now.Add(24 * time.Hour),
		UserEntityRef:       "user:default/" + user,
		OwnershipEntityRefs: []string{"user:default/" + user, "group:default/team-a", "group:default/platform"},
		Profile:             Profile{Email: user + "@example.com", DisplayName: strings.ToUpper(user), Picture: "https://img.example.com/" + user + ".png"},
		Scope:               "openid profile email offline_access",
		Upstream: UpstreamTokens{
			IDToken:             jwt + ".id",
			AccessToken:         jwt + ".access",
			RefreshToken:        "rt-" + strings.Repeat("x", 60),
			PaletteSessionToken: "palette-" + strings.Repeat("p", 180),
			TokenType:           "Bearer",
			AccessTokenExpiry:   now.Add(time.Hour),
			IDTokenExpiry:       now.Add(time.Hour),
			Claims:              json.RawMessage(`{"sub":"` + user + `","email":"` + user + `@example.com","groups":["dev","ops"],"email_verified":true}`),
		},
		Backstage: &BackstageToken{Token: jwt + ".backstage", ExpiresAt: now.Add(time.Hour)},
	}
}

func openStore(t testing.TB, dir string, clock *fakeClock, logs *bytes.Buffer) *FileStore {
	t.Helper()
	opts := Options{Now: clock.Now, SweepInterval: -1}
	if logs != nil {
		opts.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})
	} else {
		opts.Logger = hclog.NewNullLogger()
	}
	s, err := OpenFileStore(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestNewHandleAndKey(t *testing.T) {
	if n := base64.RawURLEncoding.EncodedLen(HandleBytes); n != handleLen {
		t.Fatalf("handleLen = %d, want %d", handleLen, n)
	}
	seen := map[string]bool{}
	for range 100 {
		h := mustHandle(t)
		if len(h) != 43 || strings.ContainsAny(h, "+/=") {
			t.Fatalf("handle %q is not 43 base64url characters", h)
		}
		if seen[h] {
			t.Fatal("duplicate handle")
		}
		seen[h] = true
		k, err := KeyOf(h)
		if err != nil {
			t.Fatalf("KeyOf(%q): %v", h, err)
		}
		if len(k.String()) != 64 || strings.Contains(k.String(), h) {
			t.Fatalf("key %s", k)
		}
	}
	h := mustHandle(t)
	bad := []string{"", "short", h + "A", h[:42] + "!", h[:42] + "=", strings.Repeat("/", 43), strings.Repeat("A", 42) + "B"}
	for _, b := range bad {
		if _, err := KeyOf(b); err == nil {
			t.Errorf("KeyOf(%q) accepted a malformed handle", b)
		}
	}
}

// The file store's Replace over a deleted or expired session leaves nothing
// on disk either (the conformance suite checks what Get sees).
func TestFileStoreReplaceLeavesNothingOnDisk(t *testing.T) {
	clock := newClock()
	dir := t.TempDir()
	s := openStore(t, dir, clock, nil)
	ctx := context.Background()
	h := mustHandle(t)
	if err := s.Replace(ctx, key(h), sample(clock.Now(), "alice")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Replace of nothing: %v, want ErrNotFound", err)
	}
	if err := s.Put(ctx, key(h), sample(clock.Now(), "alice")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, key(h)); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(ctx, key(h), sample(clock.Now(), "alice")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Replace after Delete: %v, want ErrNotFound", err)
	}
	h2 := mustHandle(t)
	short := sample(clock.Now(), "bob")
	short.ExpiresAt = clock.Now().Add(time.Minute)
	if err := s.Put(ctx, key(h2), short); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	if err := s.Replace(ctx, key(h2), sample(clock.Now(), "bob")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Replace of an expired session: %v, want ErrNotFound", err)
	}
	_ = s.Close()
	reopened := openStore(t, dir, clock, nil)
	if n := reopened.Len(); n != 0 {
		t.Errorf("%d sessions on disk after Replace over deleted and expired ones, want 0", n)
	}
}

func assertSame(t *testing.T, got, want *Session) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Fatalf("session differs:\n got %s\nwant %s", g, w)
	}
}

// Sweep drops the expired session from memory, and its compaction from
// the disk.
func TestFileStoreSweepCompacts(t *testing.T) {
	lowCompactMin(t)
	clock := newClock()
	dir := t.TempDir()
	s := openStore(t, dir, clock, nil)
	ctx := context.Background()
	short, long := mustHandle(t), mustHandle(t)
	a := sample(clock.Now(), "a")
	a.ExpiresAt = clock.Now().Add(time.Hour)
	if err := s.Put(ctx, key(short), a); err != nil {
		t.Fatal(err)
	}
	for range 2 { // signed in and renewed: the first is garbage
		if err := s.Put(ctx, key(long), sample(clock.Now(), "b")); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Hour)
	if n, err := s.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "sessions", journalName))
	if err != nil {
		t.Fatal(err)
	}
	if k := key(short); bytes.Contains(data, k[:]) {
		t.Fatal("swept session still in the journal")
	}
	if k := key(long); !bytes.Contains(data, k[:]) {
		t.Fatal("live session gone from the journal")
	}
}

// lowCompactMin lets tests compact journals of a few sessions.
func lowCompactMin(t testing.TB) {
	old := compactMinBytes
	compactMinBytes = 0
	t.Cleanup(func() { compactMinBytes = old })
}

func TestRestartSurvives(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	ctx := context.Background()
	s := openStore(t, dir, clock, nil)
	handles := map[string]*Session{}
	for i := range 20 {
		h := mustHandle(t)
		sess := sample(clock.Now(), fmt.Sprintf("u%d", i))
		if i%4 == 0 {
			sess.ExpiresAt = clock.Now().Add(time.Hour) // these expire while "down"
		}
		if err := s.Put(ctx, key(h), sess); err != nil {
			t.Fatal(err)
		}
		handles[h] = sess
	}
	gone := mustHandle(t)
	_ = s.Put(ctx, key(gone), sample(clock.Now(), "gone"))
	_ = s.Delete(ctx, key(gone))
	_ = s.Close()

	clock.Advance(2 * time.Hour)
	s2 := openStore(t, dir, clock, nil)
	for h, want := range handles {
		got, err := s2.Get(ctx, key(h))
		if want.Expired(clock.Now()) {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("expired session came back: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("session lost across restart: %v", err)
		}
		assertSame(t, got, want)
	}
	if _, err := s2.Get(ctx, key(gone)); !errors.Is(err, ErrNotFound) {
		t.Fatal("deleted session came back")
	}
	if s2.Len() != 15 {
		t.Fatalf("index holds %d sessions, want 15 (expired ones dropped at load)", s2.Len())
	}
	if names := dirNames(t, filepath.Join(dir, "sessions")); !slices.Equal(names, []string{journalName}) {
		t.Fatalf("files on disk: %v, want the journal alone", names)
	}
}

func TestFilesOnDisk(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	s := openStore(t, dir, clock, nil)
	h := mustHandle(t)
	if err := s.Put(context.Background(), key(h), sample(clock.Now(), "alice")); err != nil {
		t.Fatal(err)
	}
	sdir := filepath.Join(dir, "sessions")
	if fi, err := os.Stat(sdir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("sessions dir: %v %v", fi.Mode(), err)
	}
	p := filepath.Join(sdir, journalName)
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode() != 0o600 {
		t.Fatalf("journal: %v %v", fi, err)
	}
	data, _ := os.ReadFile(p)
	if bytes.Contains(data, []byte(h)) {
		t.Fatal("session file contains the handle")
	}
	// Nothing anywhere under dir is named after or holds the handle.
	_ = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if strings.Contains(path, h) {
			t.Errorf("path %s contains the handle", path)
		}
		return nil
	})
}

func TestCorruptFilesSkipped(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	ctx := context.Background()
	s := openStore(t, dir, clock, nil)
	good := mustHandle(t)
	if err := s.Put(ctx, key(good), sample(clock.Now(), "alice")); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()

	sdir := filepath.Join(dir, "sessions")
	secret := "rt-SECRET-refresh-token"
	bad := map[string]string{
		"truncated":   `{"version":1,"session":{"upstream":{"refreshToken":"` + secret,
		"not json":    secret,
		"wrong types": `{"version":1,"session":{"expiresAt":"` + secret + `"}}`,
		"version":     `{"version":99,"session":{"expiresAt":"2030-01-01T00:00:00Z"}}`,
		"no expiry":   `{"version":1,"session":{"upstream":{"refreshToken":"` + secret + `"}}}`,
		"empty":       ``,
	}
	for name, content := range bad {
		k, _ := KeyOf(mustHandle(t))
		if err := os.WriteFile(filepath.Join(sdir, k.String()+".json"), []byte(content), 0o600); err != nil {
			t.Fatal(name, err)
		}
	}
	_ = os.WriteFile(filepath.Join(sdir, "notes.txt"), []byte("unrelated"), 0o600)

	var logs bytes.Buffer
	s2 := openStore(t, dir, clock, &logs)
	if _, err := s2.Get(ctx, key(good)); err != nil {
		t.Fatalf("good session lost: %v", err)
	}
	if s2.Len() != 1 {
		t.Fatalf("index holds %d sessions, want 1", s2.Len())
	}
	if got := strings.Count(logs.String(), "skipping unreadable session file"); got != len(bad) {
		t.Errorf("logged %d corrupt files, want %d:\n%s", got, len(bad), logs.String())
	}
	if strings.Contains(logs.String(), "SECRET") {
		t.Errorf("log reveals file content:\n%s", logs.String())
	}
}

// ReadFileSessions reads a store's directory while the store is open and
// changes nothing in it: it passes the live sessions, counts the expired
// and the unreadable ones, and skips temporary files.
func TestReadFileSessions(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	ctx := context.Background()
	s := openStore(t, dir, clock, nil) // left open: a daemon using the directory
	alice, bob := mustHandle(t), mustHandle(t)
	live := sample(clock.Now(), "alice")
	if err := s.Put(ctx, key(alice), live); err != nil {
		t.Fatal(err)
	}
	short := sample(clock.Now(), "bob")
	short.ExpiresAt = clock.Now().Add(time.Hour)
	if err := s.Put(ctx, key(bob), short); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Hour) // bob's session has expired, alice's has not
	sdir := filepath.Join(dir, "sessions")
	k, _ := KeyOf(mustHandle(t))
	_ = os.WriteFile(filepath.Join(sdir, k.String()+".json"), []byte(`{"version":1,"session":{"upstream":{"refreshToken":"SECRET`), 0o600)
	_ = os.WriteFile(filepath.Join(sdir, "."+k.String()+".json.tmp-1"), []byte("half"), 0o600)
	listing := func() []string {
		entries, err := os.ReadDir(sdir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	before := listing()

	var logs bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug})
	got := map[Key]*Session{}
	expired, unreadable, err := ReadFileSessions(dir, clock.Now(), log, func(k Key, sess *Session) error {
		got[k] = sess
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if expired != 1 || unreadable != 1 || len(got) != 1 || got[key(alice)] == nil {
		t.Fatalf("got %d sessions, %d expired, %d unreadable; want alice's only, 1, 1", len(got), expired, unreadable)
	}
	assertSame(t, got[key(alice)], live)
	if strings.Contains(logs.String(), "SECRET") || !strings.Contains(logs.String(), "skipping unreadable session file") {
		t.Errorf("log: %s", logs.String())
	}
	if after := listing(); !slices.Equal(before, after) {
		t.Errorf("reading changed the directory:\nbefore %v\nafter  %v", before, after)
	}

	stop := errors.New("stop")
	if _, _, err := ReadFileSessions(dir, clock.Now(), log, func(Key, *Session) error { return stop }); err != stop {
		t.Errorf("fn's error: got %v", err)
	}
	if _, _, err := ReadFileSessions(filepath.Join(dir, "nope"), clock.Now(), log, func(Key, *Session) error { return nil }); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("a missing directory: %v", err)
	}
}

// A crash mid-write leaves temporary files (whole or partial). They are
// never loaded and are removed at open; the session's previous version
// stays intact.
func TestCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	ctx := context.Background()
	s := openStore(t, dir, clock, nil)
	h := mustHandle(t)
	orig := sample(clock.Now(), "alice")
	if err := s.Put(ctx, key(h), orig); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()

	sdir := filepath.Join(dir, "sessions")
	k, _ := KeyOf(h)
	newer := sample(clock.Now(), "mallory")
	full, _ := json.Marshal(sessionFile{Version: fileVersion, Session: newer})
	// The crash hit before the rename: a complete and a torn temp file.
	_ = os.WriteFile(filepath.Join(sdir, "."+k.String()+".json.tmp-111"), full, 0o600)
	_ = os.WriteFile(filepath.Join(sdir, "."+k.String()+".json.tmp-222"), full[:len(full)/2], 0o600)
	// And a temp file for a session that never made it.
	k2, _ := KeyOf(mustHandle(t))
	_ = os.WriteFile(filepath.Join(sdir, "."+k2.String()+".json.tmp-333"), full, 0o600)

	s2 := openStore(t, dir, clock, nil)
	got, err := s2.Get(ctx, key(h))
	if err != nil {
		t.Fatal(err)
	}
	assertSame(t, got, orig)
	if s2.Len() != 1 {
		t.Fatalf("index holds %d sessions, want 1", s2.Len())
	}
	entries, _ := os.ReadDir(sdir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("leftovers not cleaned: %v", names)
	}
}

// Concurrent writers leave the file store's disk and index in agreement.
func TestFileStoreConcurrentDiskAgrees(t *testing.T) {
	clock := newClock()
	fs := openStore(t, t.TempDir(), clock, nil)
	ctx := context.Background()
	handles := make([]string, 8)
	for i := range handles {
		handles[i] = mustHandle(t)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				h := handles[(g+i)%len(handles)]
				var err error
				switch i % 4 {
				case 0, 1:
					sess := sample(clock.Now(), fmt.Sprintf("g%d", g))
					if i%3 == 0 {
						sess.ExpiresAt = sess.CreatedAt.Add(10 * time.Minute)
					}
					if err = fs.Put(ctx, key(h), sess); errors.Is(err, ErrExpired) {
						err = nil
					}
				case 2:
					err = fs.Delete(ctx, key(h))
				default:
					_, err = fs.Sweep(ctx)
				}
				if err != nil {
					t.Error(err)
				}
				if g == 0 && i%10 == 0 {
					clock.Advance(3 * time.Minute)
				}
			}
		}()
	}
	wg.Wait()
	// What a reopen reads back is what the index holds.
	reopened := openStore(t, filepath.Dir(fs.dir), clock, nil)
	for _, h := range handles {
		want, werr := fs.Get(ctx, key(h))
		got, gerr := reopened.Get(ctx, key(h))
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("after reopen: Get %v, before: %v", gerr, werr)
		}
		if werr == nil {
			assertSame(t, got, want)
		}
	}
}

func TestBackgroundSweepAndClose(t *testing.T) {
	clock := newClock()
	s, err := OpenFileStore(t.TempDir(), Options{Now: clock.Now, SweepInterval: 5 * time.Millisecond, Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sess := sample(clock.Now(), "a")
	sess.ExpiresAt = clock.Now().Add(time.Minute)
	if err := s.Put(ctx, key(mustHandle(t)), sess); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for s.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("background sweep did not remove the expired session")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Close cancels the sweep goroutine and waits for it (bounded).
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return: sweep goroutine stuck")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Get(ctx, key(mustHandle(t))); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if err := s.Put(ctx, key(mustHandle(t)), sample(clock.Now(), "b")); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v", err)
	}
}

func TestStringRedactsSecrets(t *testing.T) {
	sess := sample(newClock().Now(), "alice")
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(verb, sess)
		for _, secret := range []string{sess.Upstream.RefreshToken, sess.Upstream.AccessToken[:40], sess.Upstream.PaletteSessionToken, sess.Backstage.Token[:40]} {
			if strings.Contains(out, secret) {
				t.Errorf("%s of a session reveals a token: %s", verb, out)
			}
		}
	}
}

func BenchmarkGet(b *testing.B) {
	clock := newClock()
	s := openStore(b, b.TempDir(), clock, nil)
	ctx := context.Background()
	handles := make([]string, 256)
	for i := range handles {
		handles[i] = mustHandle(b)
		if err := s.Put(ctx, key(handles[i]), sample(clock.Now(), fmt.Sprintf("u%d", i))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Get(ctx, key(handles[i%len(handles)])); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func BenchmarkPut(b *testing.B) {
	clock := newClock()
	s := openStore(b, b.TempDir(), clock, nil)
	ctx := context.Background()
	h := mustHandle(b)
	sess := sample(clock.Now(), "alice")
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Put(ctx, key(h), sess); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemory10k loads 10,000 realistic sessions from disk (what a
// restart does) and reports the heap the index holds per session, and the
// load time per op.
func BenchmarkMemory10k(b *testing.B) {
	const n = 10000
	clock := newClock()
	dir := b.TempDir()
	writeSessionFiles(b, dir, n, clock)
	fi, err := os.Stat(filepath.Join(dir, "sessions", journalName))
	if err != nil {
		b.Fatal(err)
	}
	fileBytes := int(fi.Size())
	var perSession float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s, err := OpenFileStore(dir, Options{Now: clock.Now, SweepInterval: -1, Logger: hclog.NewNullLogger()})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if s.Len() != n {
			b.Fatalf("loaded %d sessions", s.Len())
		}
		perSession = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(s)
		_ = s.Close()
	}
	b.ReportMetric(perSession, "bytes/session")
	b.ReportMetric(float64(fileBytes)/n, "filebytes/session")
}

// BenchmarkOpenFileStore10k is a daemon's start on 10,000 sessions: the
// time OpenFileStore takes to load them (files in the page cache).
func BenchmarkOpenFileStore10k(b *testing.B) {
	const n = 10000
	clock := newClock()
	dir := b.TempDir()
	writeSessionFiles(b, dir, n, clock)
	// CPU as well as wall time: on a shared machine the CPU a load takes
	// is the steadier figure, and parallel decoding changes only the wall.
	cpu0 := processCPU(b)
	for b.Loop() {
		s, err := OpenFileStore(dir, Options{Now: clock.Now, SweepInterval: -1, Logger: hclog.NewNullLogger()})
		if err != nil {
			b.Fatal(err)
		}
		if s.Len() != n {
			b.Fatalf("loaded %d sessions, want %d", s.Len(), n)
		}
		_ = s.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n*1000, "ns/session")
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N)/1000, "cpu-ms/op")
}

// processCPU is the user and system CPU the process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// writeSessionFiles leaves n live sessions under dir, in the journal, with
// one sync (PutMany).
func writeSessionFiles(tb testing.TB, dir string, n int, clock *fakeClock) {
	tb.Helper()
	s, err := OpenFileStore(dir, Options{Now: clock.Now, SweepInterval: -1, CatchUpInterval: -1, Logger: hclog.NewNullLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	entries := make([]Entry, n)
	for i := range entries {
		entries[i] = Entry{Key: key(mustHandle(tb)), Session: sample(clock.Now(), fmt.Sprintf("user%05d", i))}
	}
	if err := s.PutMany(context.Background(), entries); err != nil {
		tb.Fatal(err)
	}
}
