package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/session/sessiontest"
)

// Every store passes the same suite; host/storage/postgres runs it too.
func TestStoreConformance(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		sessiontest.Run(t, func(t *testing.T, now func() time.Time) session.Store {
			s, err := session.OpenFileStore(t.TempDir(), session.Options{Now: now, SweepInterval: -1, Logger: hclog.NewNullLogger()})
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
	t.Run("memory", func(t *testing.T) {
		sessiontest.Run(t, func(t *testing.T, now func() time.Time) session.Store {
			return session.NewMemoryStore(session.Options{Now: now})
		})
	})
}

// An operator's `sessions revoke` appends deletes to the journal of a
// running daemon, whose file store keeps the sessions in memory: the
// daemon's next renewal (Replace) catches up with the journal first and
// ends the session rather than write it back.
func TestFileStoreRenewalSeesRevocationByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	opts := session.Options{SweepInterval: -1, Logger: hclog.NewNullLogger()}
	daemon, err := session.OpenFileStore(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer daemon.Close()
	ctx := context.Background()
	key := sessiontest.Key(t)
	if err := daemon.Put(ctx, key, sessiontest.Sample(time.Now(), "alice")); err != nil {
		t.Fatal(err)
	}
	operator, err := session.OpenFileStore(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := operator.DeleteByUser(ctx, "user:default/alice"); err != nil || n != 1 {
		t.Fatalf("DeleteByUser = %d, %v", n, err)
	}
	_ = operator.Close()
	if err := daemon.Replace(ctx, key, sessiontest.Sample(time.Now(), "alice")); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("renewal after the operator's revocation: %v, want ErrNotFound", err)
	}
	if _, err := daemon.Get(ctx, key); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get after the failed renewal: %v", err)
	}
}
