package upstream

import (
	"log/slog"
	"os"
	"testing"
)

// TestMain keeps the OP's request-error WARN lines (zitadel logs through
// slog.Default) out of the test output; errors still show.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	os.Exit(m.Run())
}
