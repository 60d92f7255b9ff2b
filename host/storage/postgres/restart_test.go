package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/identity/identitytest"
	"github.com/spectroauth/spectroauth/host/internal/pgtest"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/session/sessiontest"
)

// storeCalls are one call of each store method, each returning nil when it
// did what it should on a database where key holds sess and user info
// exists for "user:default/a".
func storeCalls(db *DB, key session.Key, sess *session.Session) []struct {
	name string
	call func(context.Context) error
} {
	return []struct {
		name string
		call func(context.Context) error
	}{
		{"Sessions.Get", func(ctx context.Context) error { _, err := db.Sessions().Get(ctx, key); return err }},
		{"Sessions.Put", func(ctx context.Context) error { return db.Sessions().Put(ctx, key, sess) }},
		{"Sessions.Replace", func(ctx context.Context) error { return db.Sessions().Replace(ctx, key, sess) }},
		{"Sessions.ListByUser", func(ctx context.Context) error {
			_, err := db.Sessions().ListByUser(ctx, sess.UserEntityRef)
			return err
		}},
		{"Sessions.LockRenewal", func(ctx context.Context) error {
			unlock, err := db.Sessions().LockRenewal(ctx, key)
			if err == nil {
				unlock()
			}
			return err
		}},
		{"Sessions.Sweep", func(ctx context.Context) error { _, err := db.Sessions().Sweep(ctx); return err }},
		{"Keys.ListKeys", func(ctx context.Context) error { _, err := db.Keys().ListKeys(ctx); return err }},
		{"Keys.DeleteKeysBefore", func(ctx context.Context) error {
			return db.Keys().DeleteKeysBefore(ctx, time.Now().Add(-time.Hour))
		}},
		{"UserInfo.Get", func(ctx context.Context) error { _, err := db.UserInfo().Get(ctx, "user:default/a"); return err }},
		{"UserInfo.Put", func(ctx context.Context) error {
			return db.UserInfo().Put(ctx, "user:default/a", identity.UserInfo{Claims: identity.UserInfoClaims{Sub: "user:default/a", Ent: []string{"user:default/a"}}})
		}},
		{"FlowKey", func(ctx context.Context) error { _, err := db.FlowKey(ctx); return err }},
		{"UsedOnce.Claim", func(ctx context.Context) error {
			now := time.Now()
			fresh, err := db.UsedOnce().Claim(ctx, rand.Text(), now, now.Add(time.Minute))
			if err == nil && !fresh {
				err = errors.New("a fresh id was refused")
			}
			return err
		}},
		{"Ping", db.Ping},
	}
}

// endBackends ends every backend of the pool's database but the admin's
// own, as pg_terminate_backend does when an operator or a failover tool
// ends them: each pooled connection's client is sent 57P01
// (admin_shutdown), and on TCP its next write still succeeds.
func endBackends(t *testing.T, admin *pgx.Conn, db *DB) {
	t.Helper()
	ctx := context.Background()
	// Touch every pooled connection, so that none has been idle for the
	// second after which the pool pings it before handing it out.
	conns := make([]interface{ Release() }, 0, db.maxConns)
	for range 3 {
		c, err := db.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
	db2 := db.pool.Config().ConnConfig.Database
	var ended int
	if err := admin.QueryRow(ctx,
		`SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
		 WHERE datname = $1 AND pid <> pg_backend_pid()`, db2).Scan(&ended); err != nil {
		t.Fatal(err)
	}
	// Connections whose backends an earlier call ended may be among them.
	if ended == 0 {
		t.Fatal("ended no backend")
	}
	// Each backend sends its client 57P01 and exits; all at once is faster
	// than pg_terminate_backend's wait for each in turn.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var left int
		if err := admin.QueryRow(ctx,
			`SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, db2).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends still there 10s after they were ended", left)
		}
	}
}

// A store on a pooled connection whose backend the server ended (as
// pg_terminate_backend and a restarting server do) runs the statement
// again on a fresh connection: no caller sees the ended backend, however
// many pooled connections died. The answer on such a connection is the
// server's 57P01 (admin_shutdown), or a write that failed before anything
// was sent; the test runs on a Unix socket and on TCP, where writes to a
// closed peer succeed.
func TestStatementsSurviveEndedBackends(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		t.Run(map[bool]string{false: "unix socket", true: "tcp"}[tcp], func(t *testing.T) {
			srv := pgtest.SharedServer(t)
			if tcp {
				srv = pgtest.NewServer(t, pgtest.Options{TCP: true})
			}
			ctx := context.Background()
			dsn, err := srv.CreateDatabase(ctx)
			if err != nil {
				t.Fatal(err)
			}
			db := replica(t, dsn, Options{})
			// pgtest's user is a superuser: it may end other roles' backends.
			admin, err := pgx.Connect(ctx, srv.DSN("postgres"))
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close(ctx)
			key := sessiontest.Key(t)
			sess := sessiontest.Sample(time.Now(), "a")
			if err := db.Sessions().Put(ctx, key, sess); err != nil {
				t.Fatal(err)
			}
			if err := db.Keys().AddKey(ctx, identitytest.NewKey(t, time.Now())); err != nil {
				t.Fatal(err)
			}
			for _, c := range storeCalls(db, key, sess) {
				if c.name == "UserInfo.Get" {
					continue // before UserInfo.Put it answers not found
				}
				endBackends(t, admin, db)
				if err := c.call(ctx); err != nil {
					t.Errorf("%s after its pooled backends were ended: %v", c.name, err)
				}
			}
		})
	}
}

// Across a full restart of the server (a fast shutdown: every backend is
// sent 57P01), calls while it is down fail with an error saying the
// database could not be reached, within the query timeout, and calls
// after it is back succeed on the first try.
func TestStoresSurviveADatabaseRestart(t *testing.T) {
	srv := pgtest.NewServer(t, pgtest.Options{TCP: true})
	ctx := context.Background()
	dsn, err := srv.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db := replica(t, dsn, Options{QueryTimeout: 2 * time.Second})
	key := sessiontest.Key(t)
	sess := sessiontest.Sample(time.Now(), "a")
	if err := db.Sessions().Put(ctx, key, sess); err != nil {
		t.Fatal(err)
	}
	if err := db.UserInfo().Put(ctx, "user:default/a", identity.UserInfo{Claims: identity.UserInfoClaims{Sub: "user:default/a", Ent: []string{"user:default/a"}}}); err != nil {
		t.Fatal(err)
	}
	calls := storeCalls(db, key, sess)
	// Fill the pool, so that every connection the restart kills is pooled.
	for _, c := range calls {
		if err := c.call(ctx); err != nil {
			t.Fatalf("%s before the restart: %v", c.name, err)
		}
	}

	if err := srv.Halt(); err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		start := time.Now()
		err := c.call(ctx)
		if err == nil {
			t.Errorf("%s succeeded while the database was down", c.name)
			continue
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("%s took %s to fail while the database was down", c.name, took)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "postgres: ") || !strings.Contains(msg, "connect") {
			t.Errorf("%s while the database was down: %q, want it to say the database could not be reached", c.name, msg)
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			t.Errorf("%s while the database was down answered the server's %s, not that it could not connect", c.name, pgErr.Code)
		}
	}

	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		if err := c.call(ctx); err != nil {
			t.Errorf("%s after the restart: %v", c.name, err)
		}
	}
}

// The two statements that would not be idempotent by themselves recognise
// their own earlier run, so that retrying them after a connection ended
// mid-statement (the first run may have committed) answers what the first
// run would have: the used-once claim and the renewal lease.
func TestRetriedStatementsAreIdempotent(t *testing.T) {
	db, _ := open(t, Options{})
	ctx := context.Background()
	now := time.Now()
	me, someone := []byte("claimant-me-0001"), []byte("claimant-other-1")
	for i, want := range []bool{true, true} {
		if fresh, err := db.UsedOnce().claim(ctx, "nonce", now, now.Add(time.Minute), me); err != nil || fresh != want {
			t.Fatalf("claim run %d = %v, %v; want %v", i+1, fresh, err, want)
		}
	}
	if fresh, err := db.UsedOnce().claim(ctx, "nonce", now, now.Add(time.Minute), someone); err != nil || fresh {
		t.Fatalf("another claim of a claimed id = %v, %v; want refused", fresh, err)
	}
	if fresh, err := db.UsedOnce().Claim(ctx, "nonce", now, now.Add(time.Minute)); err != nil || fresh {
		t.Fatalf("Claim of a claimed id = %v, %v; want refused", fresh, err)
	}

	key := sessiontest.Key(t)
	if err := db.Sessions().Put(ctx, key, sessiontest.Sample(now, "a")); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, true} {
		if taken, err := db.Sessions().tryRenewal(ctx, key, me); err != nil || taken != want {
			t.Fatalf("lease run %d = %v, %v; want %v", i+1, taken, err, want)
		}
	}
	if taken, err := db.Sessions().tryRenewal(ctx, key, someone); err != nil || taken {
		t.Fatalf("another's lease while held = %v, %v; want not taken", taken, err)
	}
}
