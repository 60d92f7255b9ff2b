package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/internal/atomicfile"
)

// small is a session of a few hundred bytes, so that tests can cut the
// journal at each of its record's offsets.
func small(now time.Time, user string) *Session {
	return &Session{Env: "development", Provider: "spectrocloud", CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour), UserEntityRef: "user:default/" + user}
}

func journalPath(dir string) string { return filepath.Join(dir, "sessions", journalName) }

func readJournalFile(t testing.TB, dir string) []byte {
	t.Helper()
	data, err := os.ReadFile(journalPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// copyStore makes a store directory whose journal is data.
func copyStore(t testing.TB, data []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sessions"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(journalPath(dir), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A crash mid-append leaves a torn last record, or garbage after the last
// record: a reopen keeps every earlier session, loses only the torn one,
// cuts the tail, and what is put next survives another reopen.
func TestJournalTornTail(t *testing.T) {
	clock := newClock()
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, clock, nil)
	var keys []Key
	for i := range 3 {
		k := key(mustHandle(t))
		if err := s.Put(ctx, k, small(clock.Now(), fmt.Sprintf("u%d", i))); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	lastStart := len(readJournalFile(t, dir))
	torn := key(mustHandle(t))
	if err := s.Put(ctx, torn, small(clock.Now(), "torn")); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	whole := readJournalFile(t, dir)

	check := func(t *testing.T, data []byte, tornLost bool) {
		t.Helper()
		d := copyStore(t, data)
		s := openStore(t, d, clock, nil)
		wantSize := len(whole)
		if tornLost {
			wantSize = lastStart
		}
		if got := len(readJournalFile(t, d)); got != wantSize {
			t.Fatalf("journal of %d bytes after open, want the tail cut to %d", got, wantSize)
		}
		for _, k := range keys {
			if _, err := s.Get(ctx, k); err != nil {
				t.Fatalf("earlier session lost: %v", err)
			}
		}
		if _, err := s.Get(ctx, torn); tornLost == (err == nil) {
			t.Fatalf("torn session: Get = %v, want lost %v", err, tornLost)
		}
		next := key(mustHandle(t))
		if err := s.Put(ctx, next, small(clock.Now(), "next")); err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
		s2 := openStore(t, d, clock, nil)
		if _, err := s2.Get(ctx, next); err != nil {
			t.Fatalf("put after the torn tail lost on reopen: %v", err)
		}
		want := len(keys) + 1
		if !tornLost {
			want++
		}
		if s2.Len() != want {
			t.Fatalf("reopened with %d sessions, want %d", s2.Len(), want)
		}
	}
	t.Run("cut", func(t *testing.T) {
		for cut := lastStart; cut < len(whole); cut++ {
			check(t, whole[:cut], true)
		}
	})
	for name, tail := range map[string][]byte{
		"zeros":          make([]byte, 100),
		"garbage":        []byte("\x07\x00\x00\x00garbage that is no record at all"),
		"huge length":    {0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, opPut},
		"header only":    whole[lastStart : lastStart+recordHdrLen],
		"flipped record": flipLastByte(whole[lastStart:]),
	} {
		t.Run(name, func(t *testing.T) {
			check(t, append(slices.Clone(whole), tail...), false)
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func flipLastByte(rec []byte) []byte {
	c := slices.Clone(rec)
	c[len(c)-1] ^= 1
	return c
}

// Attacker-influenced session fields (claims, names) holding the bytes of
// a whole record do not become a session: the JSON escapes them, and no
// offset inside a payload reads as a record.
func TestJournalForgedRecordInSession(t *testing.T) {
	clock := newClock()
	ctx := context.Background()
	victim := key(mustHandle(t))
	forgedPayload, err := encodePut(small(clock.Now(), "mallory"))
	if err != nil {
		t.Fatal(err)
	}
	forged := string(appendRecord(nil, opPut, victim, forgedPayload))
	forgedDelete := string(appendRecord(nil, opDelete, victim, nil))
	claims, _ := json.Marshal(map[string]string{"name": forged})
	for name, edit := range map[string]func(*Session){
		"display name":    func(s *Session) { s.Profile.DisplayName = forged },
		"claims":          func(s *Session) { s.Upstream.Claims = claims },
		"entity ref":      func(s *Session) { s.UserEntityRef = forgedDelete + forged },
		"after a newline": func(s *Session) { s.Profile.Email = "\n" + forged + "\n" },
		"invalid utf-8":   func(s *Session) { s.Scope = "\xff\xfe" + forged },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, clock, nil)
			sess := sample(clock.Now(), "eve")
			edit(sess)
			payload, err := encodePut(sess)
			if err != nil {
				t.Fatal(err)
			}
			if i := bytes.IndexFunc(payload, func(r rune) bool { return r < 0x20 }); i >= 0 {
				t.Fatalf("payload holds a control byte at %d", i)
			}
			for i := range payload {
				if n := scanRecords(payload[i:], func(record) {}); n != 0 {
					t.Fatalf("a record read at payload offset %d", i)
				}
			}
			eve := key(mustHandle(t))
			if err := s.Put(ctx, eve, sess); err != nil {
				t.Fatal(err)
			}
			_ = s.Close()
			s2 := openStore(t, dir, clock, nil)
			if _, err := s2.Get(ctx, victim); !errors.Is(err, ErrNotFound) {
				t.Fatalf("forged record became a session: %v", err)
			}
			got, err := s2.Get(ctx, eve)
			if err != nil {
				t.Fatal(err)
			}
			// What JSON makes of it (invalid UTF-8 becomes U+FFFD).
			var want Session
			if err := json.Unmarshal(payload, &sessionFile{Session: &want}); err != nil {
				t.Fatal(err)
			}
			if g, _ := json.Marshal(got); !bytes.Equal(g, mustJSON(t, &want)) {
				t.Fatal("the session read back differs from the one stored")
			}
			if s2.Len() != 1 {
				t.Fatalf("%d sessions after replay, want 1", s2.Len())
			}
		})
	}
}

// Two stores on one directory, as the daemon and `spectroauthd sessions
// revoke`: a revocation by one ends a renewal in the other, and reaches
// the other's Get within its catch-up interval; a put by one reaches the
// other likewise.
func TestJournalTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	log := hclog.NewNullLogger()
	daemon, err := OpenFileStore(dir, Options{SweepInterval: -1, CatchUpInterval: 20 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer daemon.Close()
	renewed, revoked := key(mustHandle(t)), key(mustHandle(t))
	for _, k := range []Key{renewed, revoked} {
		if err := daemon.Put(ctx, k, small(time.Now(), "alice")); err != nil {
			t.Fatal(err)
		}
	}
	cli, err := OpenFileStore(dir, Options{SweepInterval: -1, CatchUpInterval: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if cli.Len() != 2 {
		t.Fatalf("the second store loaded %d sessions, want 2", cli.Len())
	}
	if err := cli.Delete(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	if err := daemon.Replace(ctx, renewed, small(time.Now(), "alice")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("renewal after the revocation: %v, want ErrNotFound", err)
	}
	if err := cli.Delete(ctx, revoked); err != nil {
		t.Fatal(err)
	}
	added := key(mustHandle(t))
	if err := cli.Put(ctx, added, small(time.Now(), "bob")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, gerr := daemon.Get(ctx, revoked)
		_, aerr := daemon.Get(ctx, added)
		if errors.Is(gerr, ErrNotFound) && aerr == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon's store did not catch up: revoked %v, added %v", gerr, aerr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// And the other way: the daemon's writes reach the CLI's next write.
	if _, err := daemon.DeleteByUser(ctx, "user:default/bob"); err != nil {
		t.Fatal(err)
	}
	if err := cli.Replace(ctx, added, small(time.Now(), "bob")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Replace after the other store's DeleteByUser: %v", err)
	}
}

// Compaction keeps exactly the live sessions, shrinks the journal, and
// survives a reopen; one store compacting while another appends loses
// nothing.
func TestJournalCompaction(t *testing.T) {
	clock := newClock()
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, clock, nil)
	want := map[Key]*Session{}
	for i := range 30 {
		k := key(mustHandle(t))
		sess := small(clock.Now(), fmt.Sprintf("u%d", i))
		for r := range 3 { // renewals: garbage
			sess.Scope = fmt.Sprint(r)
			if err := s.Put(ctx, k, sess); err != nil {
				t.Fatal(err)
			}
		}
		switch i % 3 {
		case 0:
			if err := s.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		case 1:
			want[k] = sess.Clone()
		case 2:
			short := sess.Clone()
			short.ExpiresAt = clock.Now().Add(time.Minute)
			if err := s.Put(ctx, k, short); err != nil {
				t.Fatal(err)
			}
		}
	}
	clock.Advance(time.Hour)
	before := len(readJournalFile(t, dir))
	lowCompactMin(t)
	if n, err := s.Sweep(ctx); err != nil || n != 10 {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	after := len(readJournalFile(t, dir))
	if after >= before/3 {
		t.Fatalf("journal %d bytes after compaction, %d before", after, before)
	}
	checkSessions(t, s, want)
	if names := dirNames(t, filepath.Join(dir, "sessions")); !slices.Equal(names, []string{journalName}) {
		t.Fatalf("files after compaction: %v", names)
	}
	if fi, err := os.Stat(journalPath(dir)); err != nil || fi.Mode() != 0o600 {
		t.Fatalf("compacted journal: %v, %v", fi, err)
	}
	_ = s.Close()
	s2 := openStore(t, dir, clock, nil)
	checkSessions(t, s2, want)

	// Garbage again (none compacted inline), and the compaction at open.
	compactMinBytes = 1 << 30
	for k, w := range want {
		for range 8 {
			if err := s2.Put(ctx, k, w); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = s2.Close()
	grown := len(readJournalFile(t, dir))
	compactMinBytes = 0
	s3 := openStore(t, dir, clock, nil)
	if got := len(readJournalFile(t, dir)); got != after {
		t.Fatalf("journal of %d bytes compacted at open to %d, want %d", grown, got, after)
	}
	checkSessions(t, s3, want)
	k := key(mustHandle(t))
	if err := s3.Put(ctx, k, small(clock.Now(), "later")); err != nil {
		t.Fatalf("Put after a compaction at open: %v", err)
	}
	want[k] = small(clock.Now(), "later")
	_ = s3.Close()
	checkSessions(t, openStore(t, dir, clock, nil), want)
}

func TestJournalCompactionWhileAnotherAppends(t *testing.T) {
	ctx := context.Background()
	clock, dir, compactor, writer := compactorAndWriter(t)
	const n = 150
	keys := make([]Key, n)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range keys {
			keys[i] = key(mustHandle(t))
			sess := small(clock.Now(), fmt.Sprintf("w%d", i))
			if err := writer.Put(ctx, keys[i], sess); err != nil {
				t.Error(err)
				return
			}
			if err := writer.Put(ctx, keys[i], sess); err != nil { // garbage
				t.Error(err)
				return
			}
		}
	})
	compactions := 0
	for done := false; !done; compactions++ {
		done = writer.Len() == n
		if err := compactor.compactNow(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d compactions", compactions)
	_ = writer.Close()
	_ = compactor.Close()
	s := openStore(t, dir, clock, nil)
	if s.Len() != n {
		t.Fatalf("%d sessions after compacting under appends, want %d", s.Len(), n)
	}
	for _, k := range keys {
		if _, err := s.Get(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
}

// checkSessions fails t unless s holds exactly want.
func checkSessions(t *testing.T, s *FileStore, want map[Key]*Session) {
	t.Helper()
	if s.Len() != len(want) {
		t.Fatalf("%d sessions, want %d", s.Len(), len(want))
	}
	for k, w := range want {
		got, err := s.Get(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		assertSame(t, got, w)
	}
}

// compactorAndWriter opens two stores on one new directory, as two
// processes, with compaction at any size.
func compactorAndWriter(t *testing.T) (clock *fakeClock, dir string, compactor, writer *FileStore) {
	lowCompactMin(t)
	clock, dir = newClock(), t.TempDir()
	return clock, dir, openStore(t, dir, clock, nil), openStore(t, dir, clock, nil)
}

// compactNow compacts the journal whatever its garbage.
func (s *FileStore) compactNow() error {
	if err := s.lockJournal(); err != nil {
		return err
	}
	defer s.unlockJournal()
	return s.compactLocked()
}

// storeDir makes a store directory and its sessions directory, empty.
func storeDir(t *testing.T) (dir, sdir string) {
	t.Helper()
	dir = t.TempDir()
	sdir = filepath.Join(dir, "sessions")
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir, sdir
}

// A directory of the one-file-per-session layout, files as the earlier
// store wrote them, is imported and its files removed; a crash after the
// import's sync and before the removals leaves the files, and the next
// open finds the journal's records win, with no duplicates.
func TestJournalMigration(t *testing.T) {
	clock := newClock()
	ctx := context.Background()
	dir, sdir := storeDir(t)
	files := map[string][]byte{}
	want := map[Key]*Session{}
	for i := range 5 {
		k := key(mustHandle(t))
		sess := sample(clock.Now(), fmt.Sprintf("u%d", i))
		data, err := json.Marshal(sessionFile{Version: fileVersion, Session: sess})
		if err != nil {
			t.Fatal(err)
		}
		files[fileName(k)] = data
		want[k] = sess
	}
	expiredKey := key(mustHandle(t))
	old := sample(clock.Now().Add(-48*time.Hour), "old")
	data, _ := json.Marshal(sessionFile{Version: fileVersion, Session: old})
	files[fileName(expiredKey)] = data
	writeFiles := func() {
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(sdir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeFiles()

	s := openStore(t, dir, clock, nil)
	if names := dirNames(t, sdir); !slices.Equal(names, []string{journalName}) {
		t.Fatalf("after the import: %v, want the journal alone", names)
	}
	checkSessions(t, s, want)
	// The store moves on: a renewal and a sign-out.
	var renewedKey, deletedKey Key
	for k := range want {
		if renewedKey == (Key{}) {
			renewedKey = k
		} else if deletedKey == (Key{}) {
			deletedKey = k
		}
	}
	renewed := sample(clock.Now(), "renewed")
	if err := s.Replace(ctx, renewedKey, renewed); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, deletedKey); err != nil {
		t.Fatal(err)
	}
	want[renewedKey] = renewed
	delete(want, deletedKey)
	_ = s.Close()
	size := len(readJournalFile(t, dir))

	// The crash: the files are back, as if never removed.
	writeFiles()
	s2 := openStore(t, dir, clock, nil)
	checkSessions(t, s2, want)
	if got := len(readJournalFile(t, dir)); got != size {
		t.Fatalf("the journal grew from %d to %d bytes: files re-imported", size, got)
	}
	if names := dirNames(t, sdir); !slices.Equal(names, []string{journalName}) {
		t.Fatalf("after the second open: %v, want the journal alone", names)
	}

	// ReadFileSessions sees both layouts, the journal winning, and writes
	// nothing.
	_ = s2.Close()
	writeFiles()
	got := map[Key]*Session{}
	expired, unreadable, err := ReadFileSessions(dir, clock.Now(), hclog.NewNullLogger(), func(k Key, sess *Session) error {
		if got[k] != nil {
			t.Errorf("key %s passed twice", k)
		}
		got[k] = sess
		return nil
	})
	if err != nil || unreadable != 0 || expired != 1 {
		t.Fatalf("ReadFileSessions: %d expired, %d unreadable, %v", expired, unreadable, err)
	}
	if len(got) != len(want) {
		t.Fatalf("ReadFileSessions passed %d sessions, want %d", len(got), len(want))
	}
	for k, w := range want {
		assertSame(t, got[k], w)
	}
}

// The journal file is never followed through a symbolic link.
func TestJournalNoFollow(t *testing.T) {
	dir := t.TempDir()
	sdir := filepath.Join(dir, "sessions")
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "elsewhere")
	if err := os.Symlink(target, filepath.Join(sdir, journalName)); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFileStore(dir, Options{SweepInterval: -1, Logger: hclog.NewNullLogger()}); err == nil {
		t.Fatal("opened a journal through a symbolic link")
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Fatalf("created the link's target: %v", err)
	}
}

// A journal of another format is refused, not truncated.
func TestJournalForeignFileRefused(t *testing.T) {
	foreign := []byte("SPAUTHSJ\x02\x00\x00\x00 a later format")
	dir := copyStore(t, foreign)
	_, err := OpenFileStore(dir, Options{SweepInterval: -1, Logger: hclog.NewNullLogger()})
	if err == nil || !strings.Contains(err.Error(), "not a session journal") {
		t.Fatalf("open: %v", err)
	}
	if got := readJournalFile(t, dir); !bytes.Equal(got, foreign) {
		t.Fatal("the foreign file was changed")
	}
}

// Stores opening while another appends (an operator's command beside a
// busy daemon) load without its lock, catch up under it, and never cut a
// record a live writer is appending: nothing the writer stored is lost.
func TestJournalOpenWhileAnotherAppends(t *testing.T) {
	clock := newClock()
	ctx := context.Background()
	dir := t.TempDir()
	writer := openStore(t, dir, clock, nil)
	const n = 120
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = key(mustHandle(t))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, k := range keys {
			if err := writer.Put(ctx, k, sample(clock.Now(), fmt.Sprintf("w%d", i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	opens := 0
	for running := true; running; opens++ {
		select {
		case <-done:
			running = false
		default:
		}
		s, err := OpenFileStore(dir, Options{Now: clock.Now, SweepInterval: -1, CatchUpInterval: -1, Logger: hclog.NewNullLogger()})
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
	}
	if t.Failed() {
		return
	}
	t.Logf("%d opens while appending", opens)
	_ = writer.Close()
	s := openStore(t, dir, clock, nil)
	if s.Len() != n {
		t.Fatalf("%d sessions after opens under appends, want %d", s.Len(), n)
	}
}

// Writers whose records a sync that started after their writes covered do
// not sync again (group commit): eight Puts waiting behind one sync share
// the next.
func TestJournalGroupCommit(t *testing.T) {
	clock := newClock()
	ctx := context.Background()
	s := openStore(t, t.TempDir(), clock, nil)
	jf := s.jf
	jf.syncMu.Lock() // a sync in progress
	before := jf.syncs
	start := jf.written.Load()
	const writers = 8
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			if err := s.Put(ctx, key(mustHandle(t)), small(clock.Now(), fmt.Sprint(i))); err != nil {
				t.Error(err)
			}
		})
	}
	// All eight appended, and waiting for the sync.
	rec := int64(len(appendRecord(nil, opPut, Key{}, mustJSON(t, sessionFile{Version: fileVersion, Session: small(clock.Now(), "0")}))))
	deadline := time.Now().Add(5 * time.Second)
	for jf.written.Load()-start < writers*rec {
		if time.Now().After(deadline) {
			jf.syncMu.Unlock()
			t.Fatalf("%d of %d bytes appended", jf.written.Load()-start, writers*rec)
		}
		time.Sleep(time.Millisecond)
	}
	jf.syncMu.Unlock()
	wg.Wait()
	jf.syncMu.Lock()
	defer jf.syncMu.Unlock()
	if n := jf.syncs - before; n != 1 {
		t.Fatalf("%d syncs for %d waiting writers, want 1", n, writers)
	}
}

// A journal restored with a looser mode is made 0600 at open.
func TestJournalModeTightened(t *testing.T) {
	clock := newClock()
	dir := t.TempDir()
	s := openStore(t, dir, clock, nil)
	if err := s.Put(context.Background(), key(mustHandle(t)), small(clock.Now(), "a")); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if err := os.Chmod(journalPath(dir), 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, dir, clock, nil)
	if fi, err := os.Stat(journalPath(dir)); err != nil || fi.Mode() != 0o600 {
		t.Fatalf("journal after open: %v, %v", fi.Mode(), err)
	}
	if s2.Len() != 1 {
		t.Fatalf("%d sessions", s2.Len())
	}
}

// A compaction a crash interrupted leaves journal.tmp: the next open
// removes it and keeps the journal, which the rename never replaced.
func TestJournalCrashedCompaction(t *testing.T) {
	clock := newClock()
	dir := t.TempDir()
	s := openStore(t, dir, clock, nil)
	k := key(mustHandle(t))
	if err := s.Put(context.Background(), k, small(clock.Now(), "a")); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	tmp := filepath.Join(dir, "sessions", journalTemp)
	if err := os.WriteFile(tmp, append(journalHeader(), "half a compaction"...), 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, dir, clock, nil)
	if _, err := os.Lstat(tmp); !os.IsNotExist(err) {
		t.Fatalf("journal.tmp left: %v", err)
	}
	if _, err := s2.Get(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	lowCompactMin(t)
	if err := s2.compactNow(); err != nil {
		t.Fatalf("compaction after the crashed one: %v", err)
	}
}

// A journal with another name (a backup's hard link) keeps a name after
// another process's compaction replaced it at the path: the next write
// still finds out (device and inode) and goes to the new journal.
func TestJournalReplacedWhileHardLinked(t *testing.T) {
	ctx := context.Background()
	clock, dir, compactor, writer := compactorAndWriter(t)
	if err := os.Link(journalPath(dir), filepath.Join(dir, "journal.backup")); err != nil {
		t.Skipf("hard link: %v", err)
	}
	if err := compactor.compactNow(); err != nil {
		t.Fatal(err)
	}
	k := key(mustHandle(t))
	if err := writer.Put(ctx, k, small(clock.Now(), "after")); err != nil {
		t.Fatal(err)
	}
	_ = writer.Close()
	_ = compactor.Close()
	if _, err := openStore(t, dir, clock, nil).Get(ctx, k); err != nil {
		t.Fatalf("a put after the compaction went to the replaced file: %v", err)
	}
}

// A failed sync makes the store refuse every write for good and say so in
// Err (the daemon's /readyz); a reopen replays what the disk holds and
// writes again.
func TestJournalFailedSyncBreaksStore(t *testing.T) {
	clock := newClock()
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, clock, nil)
	kept := key(mustHandle(t))
	if err := s.Put(ctx, kept, small(clock.Now(), "kept")); err != nil {
		t.Fatal(err)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("Err of a working store: %v", err)
	}
	errDisk := errors.New("injected EIO")
	syncJournal = func(int) error { return errDisk }
	err := s.Put(ctx, key(mustHandle(t)), small(clock.Now(), "lost"))
	syncJournal = datasync
	if !errors.Is(err, errDisk) {
		t.Fatalf("Put with a failing sync: %v, want the sync's error", err)
	}
	if err := s.Err(); !errors.Is(err, errDisk) {
		t.Fatalf("Err after a failed sync: %v, want it to wrap the sync's error", err)
	}
	// The disk works again; the store still refuses, for it cannot tell
	// what reached the disk.
	if err := s.Put(ctx, key(mustHandle(t)), small(clock.Now(), "after")); !errors.Is(err, errDisk) {
		t.Fatalf("Put after a failed sync: %v, want a refusal naming the failure", err)
	}
	if err := s.Delete(ctx, kept); err == nil {
		t.Fatal("Delete after a failed sync succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r := openStore(t, dir, clock, nil)
	if err := r.Err(); err != nil {
		t.Fatalf("Err after a reopen: %v", err)
	}
	if _, err := r.Get(ctx, kept); err != nil {
		t.Fatalf("the session synced before the failure: %v", err)
	}
	if err := r.Put(ctx, key(mustHandle(t)), small(clock.Now(), "again")); err != nil {
		t.Fatalf("Put after a reopen: %v", err)
	}
}

// A writer whose record is in a journal that a compaction replaces, and
// that has yet to sync it, may count on the replacement only once the
// directory sync has made the rename durable: until then a crash brings
// the old journal back, where the record never reached the disk. When the
// directory sync fails, the writer must not be told its record is durable.
func TestJournalCompactionReleasesWaitersAfterDirSync(t *testing.T) {
	for _, dirErr := range []error{nil, errors.New("injected EIO on the directory")} {
		t.Run(fmt.Sprint(dirErr), func(t *testing.T) {
			clock := newClock()
			s := openStore(t, t.TempDir(), clock, nil)
			// What Put does, up to its commit: appended, not synced.
			k, sess := key(mustHandle(t)), small(clock.Now(), "waiting")
			rec := appendRecord(nil, opPut, k, mustJSON(t, sessionFile{Version: fileVersion, Session: sess}))
			if err := s.lockJournal(); err != nil {
				t.Fatal(err)
			}
			end, err := s.appendLocked(rec)
			if err != nil {
				s.unlockJournal()
				t.Fatal(err)
			}
			s.applyLocked(record{op: opPut, key: k, payload: rec[recordHdrLen:]}, sess)
			old := s.jf
			releasedEarly := false
			syncStoreDir = func(dir string) error {
				old.syncMu.Lock()
				releasedEarly = old.synced >= end
				old.syncMu.Unlock()
				if dirErr != nil {
					return dirErr
				}
				return atomicfile.SyncDir(dir)
			}
			t.Cleanup(func() { syncStoreDir = atomicfile.SyncDir })
			cerr := s.compactLocked()
			s.unlockJournal()
			if !errors.Is(cerr, dirErr) {
				t.Fatalf("compaction: %v, want %v", cerr, dirErr)
			}
			if releasedEarly {
				t.Fatal("a writer waiting on the replaced journal was released before the directory sync")
			}
			err = s.commit(old, end)
			if dirErr == nil && err != nil {
				t.Fatalf("the waiting writer after a compaction: %v", err)
			}
			if dirErr != nil && err == nil && old.syncs == 0 {
				t.Fatal("the waiting writer was told its record is durable after the directory sync failed")
			}
		})
	}
}

// A revocation whose append fails (ENOSPC) ends the session in memory at
// once, and returns the error; a retry then must write the delete, not
// find the session already gone and report success, or the session, still
// in the journal, comes back at the next open. The same for DeleteByUser,
// and after another process's compaction (which still had the session)
// made this store read the journal again.
func TestJournalFailedDeleteRetried(t *testing.T) {
	for _, tc := range []struct{ byUser, compacted bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		byUser := tc.byUser
		t.Run(fmt.Sprintf("%+v", tc), func(t *testing.T) {
			lowCompactMin(t)
			clock := newClock()
			ctx := context.Background()
			dir := t.TempDir()
			s := openStore(t, dir, clock, nil)
			k := key(mustHandle(t))
			if err := s.Put(ctx, k, small(clock.Now(), "revoked")); err != nil {
				t.Fatal(err)
			}
			del := func() error {
				if byUser {
					_, err := s.DeleteByUser(ctx, "user:default/revoked")
					return err
				}
				return s.Delete(ctx, k)
			}
			writeJournal = func(*os.File, []byte, int64) (int, error) { return 0, syscall.ENOSPC }
			err := del()
			writeJournal = (*os.File).WriteAt
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("revocation on a full disk: %v, want ENOSPC", err)
			}
			if tc.compacted {
				if err := openStore(t, dir, clock, nil).compactNow(); err != nil {
					t.Fatal(err)
				}
				if _, err := s.ListByUser(ctx, "user:default/revoked"); err != nil { // catches up
					t.Fatal(err)
				}
			}
			if _, err := s.Get(ctx, k); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get after the failed revocation: %v, want ErrNotFound", err)
			}
			if err := del(); err != nil {
				t.Fatalf("revocation retried: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := openStore(t, dir, clock, nil).Get(ctx, k); !errors.Is(err, ErrNotFound) {
				t.Fatalf("after a reopen the revoked session is back: %v", err)
			}
		})
	}
}

// A store that a failed sync broke refuses writes but still answers Get
// from its index, so it must still see the revocations that another
// process (`spectroauthd sessions revoke`) appends: its catch-up goes on.
func TestJournalBrokenStoreSeesRevocation(t *testing.T) {
	clock := newClock()
	ctx := context.Background()
	dir := t.TempDir()
	daemon := openStore(t, dir, clock, nil)
	k := key(mustHandle(t))
	if err := daemon.Put(ctx, k, small(clock.Now(), "revoked")); err != nil {
		t.Fatal(err)
	}
	syncJournal = func(int) error { return errors.New("injected EIO") }
	err := daemon.Put(ctx, key(mustHandle(t)), small(clock.Now(), "lost"))
	syncJournal = datasync
	if err == nil || daemon.Err() == nil {
		t.Fatalf("Put with a failing sync: %v, Err %v; want both to fail", err, daemon.Err())
	}
	cli := openStore(t, dir, clock, nil)
	if err := cli.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	if err := daemon.catchUp(); err != nil {
		t.Fatal(err)
	}
	if _, err := daemon.Get(ctx, k); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get on the broken store after another process revoked the session: %v, want ErrNotFound", err)
	}
}

// openUpToLock does what OpenFileStore does up to taking the journal's
// lock: it opens the journal of the store under dir and loads it without
// the lock, reporting whether the load read it. The test goes on with
// a.jf.lock() and a.initLocked.
func openUpToLock(t *testing.T, dir string, clock *fakeClock) (a *FileStore, read bool) {
	t.Helper()
	a = &FileStore{dir: filepath.Join(dir, "sessions"), path: journalPath(dir), opts: Options{Now: clock.Now, Logger: hclog.NewNullLogger()}.withDefaults()}
	f, err := openJournalFile(a.path, os.O_RDWR|os.O_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.jf.f.Close() })
	if a.jf, err = newJFile(f, 0); err != nil {
		t.Fatal(err)
	}
	if read, err = a.load(false); err != nil {
		t.Fatal(err)
	}
	return a, read
}

// A store that found the journal new (empty) and, before it took the
// journal's lock, was overtaken by another process that wrote and
// compacted it, follows to the file now at the path before it imports
// session files of the earlier layout: appended to the replaced file, the
// imported sessions would be lost with it, and their files removed.
func TestJournalReplacedBeforeFirstLock(t *testing.T) {
	clock := newClock()
	ctx := context.Background()
	dir, sdir := storeDir(t)
	// The first store's open, up to its lock: the journal is new.
	a, read := openUpToLock(t, dir, clock)
	if read {
		t.Fatal("the unlocked load read a new journal")
	}
	// Meanwhile another process writes and compacts the journal.
	b := openStore(t, dir, clock, nil)
	kb := key(mustHandle(t))
	if err := b.Put(ctx, kb, small(clock.Now(), "b")); err != nil {
		t.Fatal(err)
	}
	if err := b.compactNow(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// A session file of the earlier layout for the first store to import.
	kl := key(mustHandle(t))
	if err := os.WriteFile(filepath.Join(sdir, fileName(kl)), mustJSON(t, sessionFile{Version: fileVersion, Session: small(clock.Now(), "legacy")}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.jf.lock(); err != nil {
		t.Fatal(err)
	}
	err := a.initLocked(read)
	_ = a.jf.unlock()
	if err != nil {
		t.Fatal(err)
	}
	r := openStore(t, dir, clock, nil)
	for _, k := range []Key{kb, kl} {
		if _, err := r.Get(ctx, k); err != nil {
			t.Fatalf("session %s after the open: %v", k, err)
		}
	}
}

// A store opening while another process cuts a tail off the journal under
// the lock (its write that failed, or a dead writer's torn record) may find
// the file shorter than when it looked: the open goes on and reads the
// journal under the lock instead.
func TestJournalOpenWhileTailCut(t *testing.T) {
	clock := newClock()
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, clock, nil)
	for i := range 20 {
		if err := s.Put(ctx, key(mustHandle(t)), small(clock.Now(), fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	f, err := openJournalFile(journalPath(dir), os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	jf, err := newJFile(f, 0)
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		garbage := bytes.Repeat([]byte{0xff}, 4096)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := jf.lock(); err != nil {
				t.Error(err)
				return
			}
			size, _, err := jf.state(journalPath(dir))
			if err == nil {
				_, err = f.WriteAt(garbage, size)
			}
			if err == nil {
				err = f.Truncate(size)
			}
			_ = jf.unlock()
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	for range 300 {
		o, err := OpenFileStore(dir, Options{Now: clock.Now, SweepInterval: -1, CatchUpInterval: -1, Logger: hclog.NewNullLogger()})
		if err != nil {
			t.Fatalf("open while another process cuts a tail: %v", err)
		}
		if o.Len() != 20 {
			t.Fatalf("%d sessions, want 20", o.Len())
		}
		_ = o.Close()
	}
}

// An open that took the lock of a journal another process has replaced
// since leaves journal.tmp alone until it holds the lock of the journal at
// the path: until then the file may be a compaction under way in a process
// that holds that lock.
func TestJournalOpenLeavesCompactionUnderWay(t *testing.T) {
	clock := newClock()
	dir, sdir := storeDir(t)
	b := openStore(t, dir, clock, nil)
	if err := b.Put(context.Background(), key(mustHandle(t)), small(clock.Now(), "b")); err != nil {
		t.Fatal(err)
	}
	// A second store's open, up to its lock, on the journal as it is now.
	a, read := openUpToLock(t, dir, clock)
	// The first compacts, replacing that journal, and then, holding the
	// new one's lock, starts another compaction.
	if err := b.compactNow(); err != nil {
		t.Fatal(err)
	}
	if err := b.lockJournal(); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(sdir, journalTemp)
	if err := os.WriteFile(tmp, journalHeader(), 0o600); err != nil {
		b.unlockJournal()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		err := a.jf.lock()
		if err == nil {
			err = a.initLocked(read)
			_ = a.jf.unlock()
		}
		_ = a.jf.f.Close()
		done <- err
	}()
	time.Sleep(200 * time.Millisecond) // the open gets as far as it can
	_, statErr := os.Lstat(tmp)
	b.unlockJournal()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if statErr != nil {
		t.Fatalf("journal.tmp of the compaction under way: %v", statErr)
	}
}

// A symbolic link planted at journal.tmp is neither followed nor written
// through by a compaction: the link's target keeps its content and mode.
func TestJournalCompactionTempNoFollow(t *testing.T) {
	clock := newClock()
	ctx := context.Background()
	dir, sdir := storeDir(t)
	s := openStore(t, dir, clock, nil)
	k := key(mustHandle(t))
	if err := s.Put(ctx, k, small(clock.Now(), "a")); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("not a journal"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(sdir, journalTemp)); err != nil {
		t.Fatal(err)
	}
	if err := s.compactNow(); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(victim); err != nil || string(data) != "not a journal" {
		t.Fatalf("the link's target after a compaction: %q, %v", data, err)
	}
	if fi, err := os.Lstat(journalPath(dir)); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("journal after the compaction: %v, %v", fi.Mode(), err)
	}
	if _, err := openStore(t, dir, clock, nil).Get(ctx, k); err != nil {
		t.Fatal(err)
	}
}

// An open's unlocked load may read whole records of a batch another
// process is still writing (a sign out everywhere: several deletes in one
// write) that then fails (ENOSPC) and is cut off again; that process's next
// record, acknowledged, takes their place. Under the lock the open must
// read the journal again rather than go on from where its load ended,
// inside the new record, which it would take for a torn tail and cut.
func TestJournalOpenAfterAnotherCutsABatch(t *testing.T) {
	clock := newClock()
	ctx := context.Background()
	dir, _ := storeDir(t)
	b := openStore(t, dir, clock, nil)
	k1, k2 := key(mustHandle(t)), key(mustHandle(t))
	for _, k := range []Key{k1, k2} {
		if err := b.Put(ctx, k, small(clock.Now(), "u")); err != nil {
			t.Fatal(err)
		}
	}
	// The batch, as far as it got before it failed.
	batch := appendRecord(appendRecord(nil, opDelete, k1, nil), opDelete, k2, nil)
	start := int64(len(readJournalFile(t, dir)))
	f, err := openJournalFile(journalPath(dir), os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(batch, start); err != nil {
		t.Fatal(err)
	}
	// The second store's open, up to its lock, reads it.
	a, _ := openUpToLock(t, dir, clock)
	// The write fails and is cut off; the next, a sign-in, succeeds.
	if err := f.Truncate(start); err != nil {
		t.Fatal(err)
	}
	kp := key(mustHandle(t))
	if err := b.Put(ctx, kp, small(clock.Now(), "acknowledged")); err != nil {
		t.Fatal(err)
	}
	if err := a.jf.lock(); err != nil {
		t.Fatal(err)
	}
	err = a.initLocked(true)
	_ = a.jf.unlock()
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*FileStore{"the open": a, "a reopen": openStore(t, dir, clock, nil)} {
		for i, k := range []Key{k1, k2, kp} {
			if _, err := s.Get(ctx, k); err != nil {
				t.Errorf("%s: session %d of k1, k2, the acknowledged one: %v", name, i, err)
			}
		}
	}
}

// A session file of the earlier layout, which had no size limit, whose
// session is over the journal's record limit (an identity provider's
// claims are not ours to bound) is left in place and logged, as an
// unreadable one is: it must not stop the import of the others, and with
// it every start of the daemon.
func TestJournalMigrationSkipsOversizedFile(t *testing.T) {
	clock := newClock()
	ctx := context.Background()
	dir, sdir := storeDir(t)
	big := sample(clock.Now(), "big")
	big.Upstream.Claims = json.RawMessage(`{"groups":"` + strings.Repeat("g", maxPayload) + `"}`)
	kBig, kOK := key(mustHandle(t)), key(mustHandle(t))
	for k, sess := range map[Key]*Session{kBig: big, kOK: small(clock.Now(), "ok")} {
		if err := os.WriteFile(filepath.Join(sdir, fileName(k)), mustJSON(t, sessionFile{Version: fileVersion, Session: sess}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := OpenFileStore(dir, Options{Now: clock.Now, SweepInterval: -1, Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatalf("open with an oversized session file: %v", err)
	}
	defer s.Close()
	if _, err := s.Get(ctx, kOK); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(sdir, fileName(kBig))); err != nil {
		t.Fatalf("the oversized session's file: %v", err)
	}
}

// A bad record in the middle of the journal (a disk that lost or garbled a
// write) cannot be a crash's torn tail: what follows it, a revocation
// here, is dropped as before, but kept beside the journal and logged at
// error. A plain torn tail keeps nothing aside.
func TestJournalDamagedMiddleKeptAside(t *testing.T) {
	clock := newClock()
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, clock, nil)
	first, revoked := key(mustHandle(t)), key(mustHandle(t))
	for _, k := range []Key{first, revoked} {
		if err := s.Put(ctx, k, small(clock.Now(), "u")); err != nil {
			t.Fatal(err)
		}
	}
	damageAt := len(readJournalFile(t, dir)) - 10 // inside revoked's put record
	if err := s.Delete(ctx, revoked); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	whole := readJournalFile(t, dir)

	damaged := slices.Clone(whole)
	damaged[damageAt] ^= 0xff
	var logs bytes.Buffer
	d := copyStore(t, damaged)
	r := openStore(t, d, clock, &logs)
	if _, err := r.Get(ctx, first); err != nil {
		t.Fatalf("the session before the damage: %v", err)
	}
	cut := filepath.Join(d, "sessions", fmt.Sprintf("%s.cut-%d", journalName, clock.Now().UnixNano()))
	kept, err := os.ReadFile(cut)
	if err != nil {
		t.Fatalf("the damaged end was not kept aside: %v", err)
	}
	if end := len(readJournalFile(t, d)); !bytes.Equal(kept, damaged[end:]) {
		t.Fatalf("kept %d bytes, want the %d cut off", len(kept), len(damaged)-end)
	}
	if fi, err := os.Stat(cut); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kept file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if !strings.Contains(logs.String(), "[ERROR]") || !strings.Contains(logs.String(), "revocations") {
		t.Fatalf("no error naming lost revocations in the log:\n%s", logs.String())
	}

	// Torn at the end (the delete half written): nothing kept aside.
	d2 := copyStore(t, whole[:len(whole)-5])
	logs.Reset()
	_ = openStore(t, d2, clock, &logs)
	if m, _ := filepath.Glob(filepath.Join(d2, "sessions", journalName+".cut-*")); len(m) != 0 {
		t.Fatalf("a torn tail was kept aside: %v", m)
	}
	if strings.Contains(logs.String(), "[ERROR]") {
		t.Fatalf("a torn tail logged an error:\n%s", logs.String())
	}
}

// suspiciousTail: one record's remains are a torn write; a good record
// after a bad one, or more than one record can hold, is not.
func TestSuspiciousTail(t *testing.T) {
	put := appendRecord(nil, opPut, Key{1}, []byte(`{"version":1}`))
	del := appendRecord(nil, opDelete, Key{2}, nil)
	for _, tc := range []struct {
		name       string
		tail       []byte
		suspicious bool
		good       int
	}{
		{"half a record", put[:len(put)/2], false, 0},
		{"garbage", []byte("\x07\x00\x00\x00garbage"), false, 0},
		{"bad record, then a delete", append(flipLastByte(put), del...), true, 1},
		{"bad record, then a put and a delete", append(append([]byte{0xde, 0xad}, put...), del...), true, 2},
		{"longer than a record can be", make([]byte, maxTornTail+1), true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, good, err := suspiciousTail(bytes.NewReader(tc.tail), 0, int64(len(tc.tail)))
			if err != nil || got != tc.suspicious || good != tc.good {
				t.Fatalf("suspiciousTail = %v, %d, %v; want %v, %d", got, good, err, tc.suspicious, tc.good)
			}
		})
	}
}
