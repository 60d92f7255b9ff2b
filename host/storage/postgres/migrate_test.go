package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"

	"github.com/spectroauth/spectroauth/host/internal/pgtest"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/session/sessiontest"
)

// A rolling upgrade whose migration alters a table another transaction
// holds (a pg_dump, a report left open) must not stop the replicas still
// serving: PostgreSQL queues every later statement on that table behind
// the waiting ALTER, so without a lock timeout each of them timed out for
// as long as the blocker lasted. The new replica gives way and tries again;
// it migrates once the blocker is gone.
func TestMigrationWaitingForALockDoesNotStallReplicas(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	// The previous release: schema version 1, serving sessions.
	old, err := openWith(ctx, dsn, Options{SweepInterval: -1, Logger: hclog.NewNullLogger()}, migrations[:1])
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	key := sessiontest.Key(t)
	// Written as that release wrote it (no user_ref yet).
	sess := sessiontest.Sample(time.Now(), "alice")
	data, err := old.Sessions().encode(sess)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.exec(ctx, `INSERT INTO spectroauth_sessions (key, expires_at, session) VALUES ($1, $2, $3)`, key[:], sess.ExpiresAt, data); err != nil {
		t.Fatal(err)
	}

	// A long transaction has read the sessions table.
	blocker := holdLocks(t, dsn, `SELECT count(*) FROM spectroauth_sessions`)

	// The new release starts and migrates to version 2.
	opened := make(chan error, 1)
	go func() {
		db, err := Open(ctx, dsn, Options{SweepInterval: -1})
		if err == nil {
			defer db.Close()
		}
		opened <- err
	}()
	time.Sleep(200 * time.Millisecond)

	// Meanwhile the old replica keeps serving sessions.
	failed := 0
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		gctx, cancel := context.WithTimeout(ctx, 4*time.Second)
		_, err := old.Sessions().Get(gctx, key)
		cancel()
		if err != nil && !errors.Is(err, session.ErrNotFound) {
			failed++
		}
	}
	if failed > 0 {
		t.Errorf("%d session reads of the serving replica failed while the new one waited to migrate", failed)
	}

	blocker.release()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatalf("the new replica did not start once the blocker was gone: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the new replica did not start within 30 s of the blocker going")
	}
}

// heldLocks is a transaction on a connection of its own.
type heldLocks struct {
	t  testing.TB
	c  *pgx.Conn
	tx pgx.Tx
}

// holdLocks runs stmt in a transaction that keeps the locks it took until
// release (or the end of t).
func holdLocks(t testing.TB, dsn, stmt string) *heldLocks {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	h := &heldLocks{t: t, c: c}
	t.Cleanup(func() { _ = c.Close(ctx) })
	if h.tx, err = c.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.tx.Exec(ctx, stmt); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *heldLocks) release() {
	h.t.Helper()
	if err := h.tx.Rollback(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}
