package pgtest

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// Two databases on the shared server are separate and usable; the server
// listens on no TCP port.
func TestNewDatabase(t *testing.T) {
	ctx := context.Background()
	a, b := NewDatabase(t), NewDatabase(t)
	if a == b {
		t.Fatal("the same database twice")
	}
	for _, dsn := range []string{a, b} {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		var addrs string
		if err := c.QueryRow(ctx, "SHOW listen_addresses").Scan(&addrs); err != nil {
			t.Fatal(err)
		}
		if addrs != "" {
			t.Errorf("listen_addresses = %q, want none", addrs)
		}
		if _, err := c.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
			t.Fatal(err)
		}
		_ = c.Close(ctx)
	}
}

// A server of a test's own, on TCP, halts (its clients are told 57P01) and
// resumes on the same port with its databases intact.
func TestHaltResume(t *testing.T) {
	ctx := context.Background()
	s := NewServer(t, Options{TCP: true})
	dsn, err := s.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
		t.Fatal(err)
	}
	if err := s.Halt(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a statement on a halted server succeeded")
	} else if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code != "57P01" {
		t.Errorf("the halted server said %v, want 57P01 or a closed connection", err)
	}
	if _, err := pgx.Connect(ctx, dsn); err == nil {
		t.Fatal("connected to a halted server")
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	c2, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	if _, err := c2.Exec(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatalf("the database after Resume: %v", err)
	}
}
