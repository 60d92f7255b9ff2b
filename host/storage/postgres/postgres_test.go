package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/identity/identitytest"
	"github.com/spectroauth/spectroauth/host/internal/pgtest"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/lifecycle/oncetest"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/session/sessiontest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// open opens a DB on a fresh database, closed at the end of t.
func open(t testing.TB, opts Options) (*DB, string) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	return replica(t, dsn, opts), dsn
}

// replica opens a DB on the database at dsn (another replica, when one is
// open there already), closed at the end of t. The background sweep is off
// unless opts sets it.
func replica(t testing.TB, dsn string, opts Options) *DB {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = -1
	}
	db, err := Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// The PostgreSQL stores pass the suites the file and memory stores pass.
func TestSessionStoreConformance(t *testing.T) {
	sessiontest.Run(t, func(t *testing.T, now func() time.Time) session.Store {
		db, _ := open(t, Options{Now: now})
		return db.Sessions()
	})
}

// The used-once set shared by replicas passes the suite the in-memory one
// passes, seen from two replicas.
func TestOnceSetConformance(t *testing.T) {
	oncetest.Run(t, func(t *testing.T) (a, b lifecycle.OnceSet) {
		db, dsn := open(t, Options{})
		return db.UsedOnce(), replica(t, dsn, Options{}).UsedOnce()
	})
}

func TestKeyStoreConformance(t *testing.T) {
	identitytest.RunKeyStore(t, func(t *testing.T) identity.KeyStore {
		db, _ := open(t, Options{})
		return db.Keys()
	})
}

func TestUserInfoStoreConformance(t *testing.T) {
	identitytest.RunUserInfoStore(t, func(t *testing.T) identity.UserInfoStore {
		db, _ := open(t, Options{})
		return db.UserInfo()
	})
}

// Two stores on one database are two replicas: what one writes, the other
// reads; a sign-out on one is seen by the other at once.
func TestReplicasShareSessions(t *testing.T) {
	a, dsn := open(t, Options{})
	b, err := Open(context.Background(), dsn, Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	k := sessiontest.Key(t)
	sess := sessiontest.Sample(time.Now(), "alice")
	if err := a.Sessions().Put(ctx, k, sess); err != nil {
		t.Fatal(err)
	}
	got, err := b.Sessions().Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	sessiontest.AssertSame(t, got, sess)
	if err := b.Sessions().Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Sessions().Get(ctx, k); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("replica A still serves a session B ended: %v", err)
	}
	if err := a.Sessions().Replace(ctx, k, sess); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("replica A's renewal revived a session B ended: %v", err)
	}
}

// The rows hold the handle's hash, never the handle; and what is stored is
// what the doc says.
func TestSessionRowsHoldNoHandle(t *testing.T) {
	db, dsn := open(t, Options{})
	ctx := context.Background()
	h, _ := session.NewHandle()
	k, _ := session.KeyOf(h)
	if err := db.Sessions().Put(ctx, k, sessiontest.Sample(time.Now(), "alice")); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var key, data []byte
	if err := c.QueryRow(ctx, `SELECT key, session FROM spectroauth_sessions`).Scan(&key, &data); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, k[:]) {
		t.Errorf("row key %x, want the session Key %s", key, k)
	}
	if bytes.Contains(data, []byte(h)) || bytes.Contains(key, []byte(h)) {
		t.Error("the row holds the session handle")
	}
}

// Replicas starting together against an empty database migrate it once,
// and all of them start.
func TestConcurrentMigrations(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	const n = 6
	var wg sync.WaitGroup
	dbs := make([]*DB, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dbs[i], errs[i] = Open(context.Background(), dsn, Options{SweepInterval: -1})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		defer dbs[i].Close()
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var versions, latest int
	if err := c.QueryRow(ctx, `SELECT count(*), max(version) FROM spectroauth_schema_migrations`).Scan(&versions, &latest); err != nil {
		t.Fatal(err)
	}
	if versions != len(migrations) || latest != migrations[len(migrations)-1].version {
		t.Fatalf("%d versions recorded (latest %d), want %d", versions, latest, len(migrations))
	}
	// A restart finds nothing to do.
	var logs bytes.Buffer
	again, err := Open(ctx, dsn, Options{SweepInterval: -1, Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug})})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if strings.Contains(logs.String(), "migrated") {
		t.Errorf("a restart migrated again: %s", logs.String())
	}
}

// A schema a newer release migrated further does not stop this one.
func TestNewerSchemaIsNoError(t *testing.T) {
	db, dsn := open(t, Options{})
	ctx := context.Background()
	if _, err := db.pool.Exec(ctx, `INSERT INTO spectroauth_schema_migrations (version, description) VALUES (999, 'from the future')`); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	again, err := Open(ctx, dsn, Options{SweepInterval: -1, Logger: hclog.New(&hclog.LoggerOptions{Output: &logs})})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if !strings.Contains(logs.String(), "newer than this release") {
		t.Errorf("no warning: %s", logs.String())
	}
}

// Every replica gets the same flow key, made by whichever came first.
func TestFlowKeySharedAndStable(t *testing.T) {
	db, dsn := open(t, Options{})
	const n = 8
	keys := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			other, err := Open(context.Background(), dsn, Options{SweepInterval: -1})
			if err != nil {
				t.Error(err)
				return
			}
			defer other.Close()
			if keys[i], err = other.FlowKey(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	first, err := db.FlowKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != FlowKeyBytes {
		t.Fatalf("flow key of %d bytes", len(first))
	}
	for i, k := range keys {
		if !bytes.Equal(k, first) {
			t.Fatalf("replica %d has another flow key", i)
		}
	}
}

// SetFlowKeyIfNone stores a flow key only where there is none, and tells
// the same key from another.
func TestSetFlowKeyIfNone(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t, Options{})
	mine := bytes.Repeat([]byte{7}, FlowKeyBytes)
	if _, _, err := db.SetFlowKeyIfNone(ctx, mine[:31]); err == nil {
		t.Error("a 31-byte flow key was accepted")
	}
	for i, want := range []bool{true, false} { // set, then already there
		set, same, err := db.SetFlowKeyIfNone(ctx, mine)
		if err != nil || set != want || !same {
			t.Fatalf("call %d: set %v, same %v, %v; want set %v, same", i, set, same, err, want)
		}
	}
	if got, err := db.FlowKey(ctx); err != nil || !bytes.Equal(got, mine) {
		t.Fatalf("FlowKey after SetFlowKeyIfNone: %v; not the key set", err)
	}
	// A database whose replicas made their own key keeps it.
	other, _ := open(t, Options{})
	theirs, err := other.FlowKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if set, same, err := other.SetFlowKeyIfNone(ctx, mine); err != nil || set || same {
		t.Fatalf("over another key: set %v, same %v, %v", set, same, err)
	}
	if got, _ := other.FlowKey(ctx); !bytes.Equal(got, theirs) {
		t.Error("SetFlowKeyIfNone replaced the database's flow key")
	}
}

// Sweeping the used-once set removes only expired entries (the rest of
// its contract is TestOnceSetConformance's).
func TestOnceSetSweep(t *testing.T) {
	clock := sessiontest.NewClock()
	db, _ := open(t, Options{Now: clock.Now})
	ctx := context.Background()
	claim := func(id string) bool {
		t.Helper()
		now := clock.Now()
		ok, err := db.UsedOnce().Claim(ctx, id, now, now.Add(10*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !claim("old") {
		t.Fatal("first claim refused")
	}
	clock.Advance(11 * time.Minute)
	if !claim("fresh") {
		t.Fatal("fresh claim refused")
	}
	n, err := db.UsedOnce().Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 (the expired entry)", n, err)
	}
	if claim("fresh") {
		t.Fatal("sweep forgot a live entry")
	}
}

// The background sweep removes expired sessions and used-once entries, and
// Close stops it.
func TestBackgroundSweep(t *testing.T) {
	clock := sessiontest.NewClock()
	db, _ := open(t, Options{Now: clock.Now, SweepInterval: 10 * time.Millisecond})
	ctx := context.Background()
	sess := sessiontest.Sample(clock.Now(), "a")
	sess.ExpiresAt = clock.Now().Add(time.Minute)
	if err := db.Sessions().Put(ctx, sessiontest.Key(t), sess); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UsedOnce().Claim(ctx, "x", clock.Now(), clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var n int
		if err := db.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM spectroauth_sessions) + (SELECT count(*) FROM spectroauth_used_once)`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d expired rows left", n)
		}
	}
	done := make(chan struct{})
	go func() { _ = db.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := db.Sessions().Get(ctx, sessiontest.Key(t)); err == nil {
		t.Fatal("Get after Close succeeded")
	}
}

// After Close the session store refuses use, as the file store does.
func TestSessionStoreClosed(t *testing.T) {
	db, _ := open(t, Options{})
	s := db.Sessions()
	_ = s.Close()
	ctx := context.Background()
	if _, err := s.Get(ctx, sessiontest.Key(t)); !errors.Is(err, session.ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if err := s.Put(ctx, sessiontest.Key(t), sessiontest.Sample(time.Now(), "a")); !errors.Is(err, session.ErrClosed) {
		t.Errorf("Put after Close: %v", err)
	}
}

// A damaged key row is skipped (and logged without key material), as the
// file store skips a damaged file; the Issuer still starts and signs.
func TestDamagedKeyRowSkipped(t *testing.T) {
	var logs bytes.Buffer
	db, _ := open(t, Options{Logger: hclog.New(&hclog.LoggerOptions{Output: &logs})})
	ctx := context.Background()
	good := identitytest.NewKey(t, time.Now())
	if err := db.Keys().AddKey(ctx, good); err != nil {
		t.Fatal(err)
	}
	bad := identitytest.NewKey(t, time.Now())
	if _, err := db.pool.Exec(ctx, `INSERT INTO spectroauth_signing_keys (kid, created_at, created_at_ns, key_json) VALUES ($1, now(), 0, $2)`,
		bad.ID, []byte(`{"version":1,"key":{"kty":"EC","d":"SECRETSECRET`)); err != nil {
		t.Fatal(err)
	}
	keys, err := db.Keys().ListKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != good.ID {
		t.Fatalf("ListKeys = %v, %v", keys, err)
	}
	if !strings.Contains(logs.String(), "skipping unreadable signing key row") || strings.Contains(logs.String(), "SECRET") {
		t.Errorf("log: %s", logs.String())
	}
	// The same key again is fine; another key under its id is not.
	if err := db.Keys().AddKey(ctx, good); err != nil {
		t.Errorf("adding the same key again: %v", err)
	}
	other := identitytest.NewKey(t, time.Now())
	other.ID = good.ID
	if err := db.Keys().AddKey(ctx, other); err == nil {
		t.Error("a different key under a used kid was accepted")
	}
	iss, err := identity.New(identity.Config{Issuer: "https://auth.example.com/api/auth", KeyStore: db.Keys(), UserInfo: db.UserInfo()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Issue(ctx, identity.Claims{Subject: "user:default/alice"}); err != nil {
		t.Fatal(err)
	}
}

// Errors say what failed and never carry the password.
func TestErrorsHoldNoPassword(t *testing.T) {
	const pw = "pw-SECRET-hunter2"
	srv := pgtest.SharedServer(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, srv.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	role := fmt.Sprintf("r%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD '"+pw+"'"); err != nil {
		t.Fatal(err)
	}
	// Nothing listens on this port: connecting fails.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	for name, dsn := range map[string]string{
		"unreachable":   "postgres://" + role + ":" + pw + "@" + addr + "/db?sslmode=disable&connect_timeout=2",
		"unparsable":    "postgres://" + role + ":" + pw + "@[::1/db",
		"kv unparsable": "host=/tmp password=" + pw + " port=notaport",
	} {
		_, err := Open(ctx, dsn, Options{SweepInterval: -1})
		if err == nil {
			t.Fatalf("%s: Open succeeded", name)
		}
		if strings.Contains(err.Error(), pw) || strings.Contains(fmt.Sprintf("%+v", err), pw) {
			t.Errorf("%s: error reveals the password: %v", name, err)
		}
		if !strings.Contains(err.Error(), "postgres:") {
			t.Errorf("%s: error does not say where it comes from: %v", name, err)
		}
	}
	// The scrubber catches a password in a driver message.
	db := &DB{secret: pw}
	err = db.wrap("doing it", fmt.Errorf("driver said %s: %w", pw, context.DeadlineExceeded))
	if strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "doing it") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("scrubbed error = %v", err)
	}
}

// Each statement is bounded: a database that does not answer fails the
// call after QueryTimeout, it does not hang it.
func TestQueryTimeout(t *testing.T) {
	db, _ := open(t, Options{QueryTimeout: 200 * time.Millisecond})
	ctx := context.Background()
	// Hold the row lock another statement needs.
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	k := sessiontest.Key(t)
	if err := db.Sessions().Put(ctx, k, sessiontest.Sample(time.Now(), "a")); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM spectroauth_sessions WHERE key = $1 FOR UPDATE`, k[:]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = db.Sessions().Delete(ctx, k)
	if err == nil || !strings.Contains(err.Error(), "deleting session") {
		t.Fatalf("Delete under a held lock: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Delete took %s", d)
	}
}

// BenchmarkSessionGet is the /refresh hot path on PostgreSQL: one
// primary-key SELECT and the JSON decode, over the local Unix socket, from
// parallel callers.
func BenchmarkSessionGet(b *testing.B) {
	db, _ := open(b, Options{})
	ctx := context.Background()
	keys := make([]session.Key, 256)
	for i := range keys {
		keys[i] = sessiontest.Key(b)
		if err := db.Sessions().Put(ctx, keys[i], sessiontest.Sample(time.Now(), fmt.Sprintf("u%d", i))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := db.Sessions().Get(ctx, keys[i%len(keys)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkSessionGetSerial is one caller's latency per Get.
func BenchmarkSessionGetSerial(b *testing.B) {
	db, _ := open(b, Options{})
	ctx := context.Background()
	k := sessiontest.Key(b)
	if err := db.Sessions().Put(ctx, k, sessiontest.Sample(time.Now(), "alice")); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := db.Sessions().Get(ctx, k); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSessionReplace(b *testing.B) {
	db, _ := open(b, Options{})
	ctx := context.Background()
	k := sessiontest.Key(b)
	sess := sessiontest.Sample(time.Now(), "alice")
	if err := db.Sessions().Put(ctx, k, sess); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := db.Sessions().Replace(ctx, k, sess); err != nil {
			b.Fatal(err)
		}
	}
}

// The renewal lock: one holder at a time across replicas, free again on
// unlock or once the lease of a holder that died runs out, and only its
// owner's unlock ends a lease.
func TestRenewalLock(t *testing.T) {
	// Short enough to wait out, long enough to outlast tryB.
	const lease = 2 * time.Second
	a, dsn := open(t, Options{RenewalLease: lease})
	b := replica(t, dsn, Options{RenewalLease: lease})
	ctx := context.Background()
	key := sessiontest.Key(t)
	if _, err := a.Sessions().LockRenewal(ctx, key); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("locking a missing session: %v, want ErrNotFound", err)
	}
	if err := a.Sessions().Put(ctx, key, sessiontest.Sample(time.Now(), "a")); err != nil {
		t.Fatal(err)
	}
	tryB := func() error {
		ctx, cancel := context.WithTimeout(ctx, 3*renewalPollPeriod)
		defer cancel()
		unlock, err := b.Sessions().LockRenewal(ctx, key)
		if err == nil {
			unlock()
		}
		return err
	}

	unlockA, err := a.Sessions().LockRenewal(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := tryB(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("B while A holds the lock: %v, want a deadline error", err)
	}
	// A waiter gets the lock as soon as the holder lets go.
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		unlock, err := b.Sessions().LockRenewal(ctx, key)
		if err == nil {
			unlock()
		}
		got <- err
	}()
	unlockA()
	unlockA() // idempotent
	if err := <-got; err != nil {
		t.Fatalf("B waiting for A: %v", err)
	}

	// A holder that died (it took the lease, and no heartbeat extends it):
	// the lease runs out. Its late unlock does not end the next holder's
	// lease.
	deadOwner, err := a.Sessions().takeRenewal(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	unlockDead := func() { a.Sessions().unlockRenewal(key, deadOwner) }
	start := time.Now()
	lctx, cancel := context.WithTimeout(ctx, lease+10*time.Second)
	defer cancel()
	unlockB, err := b.Sessions().LockRenewal(lctx, key)
	if err != nil {
		t.Fatalf("after the lease ran out: %v", err)
	}
	if d := time.Since(start); d < lease/2 {
		t.Fatalf("B took the dead holder's lease after %s, before it ran out", d)
	}
	unlockDead()
	if err := func() error {
		ctx, cancel := context.WithTimeout(ctx, 3*renewalPollPeriod)
		defer cancel()
		_, err := a.Sessions().LockRenewal(ctx, key)
		return err
	}(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the dead holder's unlock freed B's lease: %v", err)
	}
	unlockB()

	// The lease is not part of the session: Replace keeps it, a sign-out
	// ends both, and a waiter then learns the session is gone.
	unlockA, err = a.Sessions().LockRenewal(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Sessions().Replace(ctx, key, sessiontest.Sample(time.Now(), "a2")); err != nil {
		t.Fatal(err)
	}
	if err := tryB(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("B after A's Replace under the lock: %v", err)
	}
	if err := a.Sessions().Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := tryB(); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("B after the sign-out: %v, want ErrNotFound", err)
	}
	unlockA()
}

// The renewal lease is judged by the database's clock, not by each
// replica's: a replica whose clock runs a minute ahead does not take a lease
// another replica still holds, and one whose clock runs a minute behind
// takes it as soon as it has run out.
func TestRenewalLeaseIgnoresReplicaClocks(t *testing.T) {
	const lease = 2 * time.Second
	skewed := func(d time.Duration) func() time.Time {
		return func() time.Time { return time.Now().Add(d) }
	}
	a, dsn := open(t, Options{RenewalLease: lease})
	ahead := replica(t, dsn, Options{Now: skewed(time.Minute), RenewalLease: lease})
	behind := replica(t, dsn, Options{Now: skewed(-time.Minute), RenewalLease: lease})
	ctx := context.Background()
	key := sessiontest.Key(t)
	if err := a.Sessions().Put(ctx, key, sessiontest.Sample(time.Now(), "a")); err != nil {
		t.Fatal(err)
	}

	unlockA, err := a.Sessions().LockRenewal(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 3*renewalPollPeriod)
	unlock, err := ahead.Sessions().LockRenewal(tctx, key)
	cancel()
	if err == nil {
		unlock()
		t.Fatal("a replica whose clock runs ahead took a lease another replica holds")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the replica ahead: %v, want a deadline error", err)
	}
	unlockA()

	// A holder that died (no heartbeat): the lease runs out by the
	// database's clock, even for a replica whose own clock is behind.
	if _, err := a.Sessions().takeRenewal(ctx, key); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tctx, cancel = context.WithTimeout(ctx, lease+5*time.Second)
	unlock, err = behind.Sessions().LockRenewal(tctx, key)
	cancel()
	if err != nil {
		t.Fatalf("the replica behind, once the lease ran out: %v", err)
	}
	unlock()
	if d := time.Since(start); d < lease/2 {
		t.Fatalf("the replica behind took the lease after %s, before it ran out", d)
	}
}

// A holder keeps the renewal lease for as long as it renews, however many
// leases that takes: its heartbeat extends the lease, so no other replica
// takes it (and spends the same refresh token) until the holder unlocks.
// A heartbeat that finds the lease gone says so, without secrets.
func TestRenewalLeaseHeartbeat(t *testing.T) {
	const lease = 300 * time.Millisecond
	var logMu sync.Mutex
	var logBuf bytes.Buffer
	logs := func() string { logMu.Lock(); defer logMu.Unlock(); return logBuf.String() }
	a, dsn := open(t, Options{RenewalLease: lease, Logger: hclog.New(&hclog.LoggerOptions{Output: &logBuf, Mutex: &logMu})})
	b := replica(t, dsn, Options{RenewalLease: lease})
	ctx := context.Background()
	key := sessiontest.Key(t)
	sess := sessiontest.Sample(time.Now(), "a")
	if err := a.Sessions().Put(ctx, key, sess); err != nil {
		t.Fatal(err)
	}
	lockB := func(wait time.Duration) (func(), error) {
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		return b.Sessions().LockRenewal(ctx, key)
	}
	owner := func() []byte {
		t.Helper()
		var o []byte
		if err := a.pool.QueryRow(ctx, `SELECT renewal_owner FROM spectroauth_sessions WHERE key = $1`, key[:]).Scan(&o); err != nil {
			t.Fatal(err)
		}
		return o
	}

	unlockA, err := a.Sessions().LockRenewal(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if unlock, err := lockB(5 * lease); err == nil {
		unlock()
		t.Fatal("B took the lease while A still held it, after A's first lease ran out")
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("B while A holds the lock: %v, want a deadline error", err)
	}
	unlockA()
	unlockA() // idempotent
	if o := owner(); o != nil {
		t.Fatalf("A's unlock left the lease held (owner %x)", o)
	}
	unlockB, err := lockB(lease)
	if err != nil {
		t.Fatalf("B right after A unlocked: %v", err)
	}
	unlockB()
	time.Sleep(lease)
	if strings.Contains(logs(), "renewal lease") {
		t.Fatalf("a heartbeat ran after unlock: %s", logs())
	}

	// A lease lost under the holder (it ran out while the database could
	// not be reached, and another replica took it): the heartbeat warns.
	unlockA, err = a.Sessions().LockRenewal(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.pool.Exec(ctx, `UPDATE spectroauth_sessions SET renewal_owner = '\x00' WHERE key = $1`, key[:]); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs(), "renewal lease"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning of the lost lease: %s", logs())
		}
	}
	unlockA()
	if o := owner(); len(o) != 1 {
		t.Fatalf("A's unlock ended the lease it had lost (owner %x)", o)
	}
	for _, secret := range []string{sess.Upstream.RefreshToken, sess.Upstream.AccessToken, sess.Upstream.PaletteSessionToken} {
		if strings.Contains(logs(), secret) {
			t.Fatalf("the log holds a token: %s", logs())
		}
	}
}

// Behind PgBouncer in transaction pooling mode, prepared statements cannot
// be cached per connection: the README tells operators to add
// default_query_exec_mode=simple_protocol to the URL. Open accepts it and
// every store works in that mode.
func TestSimpleProtocol(t *testing.T) {
	simple := func(t testing.TB, opts Options) *DB {
		db := replica(t, pgtest.NewDatabase(t)+"&default_query_exec_mode=simple_protocol", opts)
		if m := db.pool.Config().ConnConfig.DefaultQueryExecMode; m != pgx.QueryExecModeSimpleProtocol {
			t.Fatalf("query exec mode %v, want simple_protocol", m)
		}
		return db
	}
	sessiontest.Run(t, func(t *testing.T, now func() time.Time) session.Store {
		return simple(t, Options{Now: now}).Sessions()
	})
	identitytest.RunKeyStore(t, func(t *testing.T) identity.KeyStore { return simple(t, Options{}).Keys() })
	identitytest.RunUserInfoStore(t, func(t *testing.T) identity.UserInfoStore { return simple(t, Options{}).UserInfo() })

	db := simple(t, Options{})
	ctx := context.Background()
	key := sessiontest.Key(t)
	if err := db.Sessions().Put(ctx, key, sessiontest.Sample(time.Now(), "a")); err != nil {
		t.Fatal(err)
	}
	unlock, err := db.Sessions().LockRenewal(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if ok, err := db.UsedOnce().Claim(ctx, "x", time.Now(), time.Now().Add(time.Minute)); !ok || err != nil {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	if _, err := db.FlowKey(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Sessions().Sweep(ctx); err != nil {
		t.Fatal(err)
	}
}
