package pgtest

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
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
