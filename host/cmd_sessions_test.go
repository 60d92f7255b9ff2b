package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/internal/pgtest"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/session/sessiontest"
	"github.com/spectroauth/spectroauth/host/storage/postgres"
)

// An operator lists a user's sessions and ends them all, on file and on
// PostgreSQL storage, with an audit line; other users' sessions stay.
func TestSessionsCommand(t *testing.T) {
	for _, v := range []string{"CLIENT_SECRET", "CATALOG_TOKEN", "PALETTE_API_KEY"} {
		t.Setenv(v, "literal-secret")
	}
	valid := "../config/testdata/valid.yaml"
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// setup points the configuration at fresh storage and returns how
		// to open its session store.
		setup func(t *testing.T) func() session.Store
	}{
		{"file", func(t *testing.T) func() session.Store {
			dir := t.TempDir()
			t.Setenv("SPECTROAUTH_STORAGE__PATH", dir)
			return func() session.Store {
				s, err := session.OpenFileStore(dir, session.Options{SweepInterval: -1, Logger: hclog.NewNullLogger()})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
		}},
		{"postgres", func(t *testing.T) func() session.Store {
			dsn := pgtest.NewDatabase(t)
			t.Setenv("SPECTROAUTH_STORAGE__TYPE", "postgres")
			t.Setenv("SPECTROAUTH_STORAGE__POSTGRESURL", dsn)
			return func() session.Store {
				db, err := postgres.Open(ctx, dsn, postgres.Options{SweepInterval: -1, Logger: hclog.NewNullLogger()})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = db.Close() })
				return db.Sessions()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			open := tc.setup(t)
			store := open()
			alice := []session.Key{sessiontest.Key(t), sessiontest.Key(t)}
			for _, k := range alice {
				if err := store.Put(ctx, k, sessiontest.Sample(time.Now(), "alice")); err != nil {
					t.Fatal(err)
				}
			}
			bob := sessiontest.Key(t)
			if err := store.Put(ctx, bob, sessiontest.Sample(time.Now(), "bob")); err != nil {
				t.Fatal(err)
			}
			_ = store.Close()

			var stdout, stderr strings.Builder
			if code := run([]string{"sessions", "list", "--user", "user:default/alice", "-config", valid}, &stdout, &stderr); code != 0 {
				t.Fatalf("list: exit %d: %s", code, stderr.String())
			}
			if !strings.Contains(stdout.String(), alice[0].String()) || !strings.Contains(stdout.String(), "2 live session(s)") || strings.Contains(stdout.String(), bob.String()) {
				t.Fatalf("list:\n%s", stdout.String())
			}
			if strings.Contains(stdout.String(), "rt-") || strings.Contains(stdout.String(), "eyJ") {
				t.Fatalf("list printed a token:\n%s", stdout.String())
			}
			stdout.Reset()
			stderr.Reset()
			// A store left open, as a running daemon's.
			running := open()
			defer running.Close()
			if code := run([]string{"sessions", "revoke", "--user", "user:default/alice", "-config", valid, "-log-format", "json"}, &stdout, &stderr); code != 0 {
				t.Fatalf("revoke: exit %d: %s", code, stderr.String())
			}
			if !strings.Contains(stdout.String(), "Ended 2 session(s)") {
				t.Fatalf("revoke: %s", stdout.String())
			}
			if !strings.Contains(stderr.String(), `"audit":"sessions-revoked"`) || !strings.Contains(stderr.String(), `"by":"operator"`) {
				t.Fatalf("no audit line: %s", stderr.String())
			}

			// The running store refuses them within about a second (file
			// storage reads the journal every second; PostgreSQL at once).
			deadline := time.Now().Add(3 * time.Second)
			for _, k := range alice {
				for _, err := running.Get(ctx, k); !errors.Is(err, session.ErrNotFound); _, err = running.Get(ctx, k) {
					if time.Now().After(deadline) {
						t.Fatalf("a running store still serves alice's session 3 s after the revocation: %v", err)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			store = open()
			defer store.Close()
			for _, k := range alice {
				if _, err := store.Get(ctx, k); !errors.Is(err, session.ErrNotFound) {
					t.Fatalf("alice's session after revoke: %v", err)
				}
			}
			if _, err := store.Get(ctx, bob); err != nil {
				t.Fatalf("bob's session after revoking alice's: %v", err)
			}
		})
	}
	var stdout, stderr strings.Builder
	if code := run([]string{"sessions", "delete"}, &stdout, &stderr); code != 2 {
		t.Errorf("sessions delete: exit %d, want 2", code)
	}
	if code := run([]string{"sessions", "list", "-config", valid}, &stdout, &stderr); code != 2 {
		t.Errorf("sessions list without --user: exit %d, want 2", code)
	}
}
