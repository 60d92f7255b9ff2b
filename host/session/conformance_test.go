package session_test

import (
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
