package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestSameUser: the admin socket's peer check lets the daemon's own uid in
// and refuses any other, naming both.
func TestSameUser(t *testing.T) {
	if err := sameUser(1000, 1000); err != nil {
		t.Fatalf("sameUser(own uid) = %v", err)
	}
	for _, peer := range []int{0, 999, 1001} {
		err := sameUser(peer, 1000)
		if err == nil || !strings.Contains(err.Error(), "only the daemon's own user (uid 1000)") {
			t.Errorf("sameUser(%d, 1000) = %v, want a refusal", peer, err)
		}
	}
}

// TestAdminSocketRequestBounds: a request larger than adminMaxRequest is
// refused without running the operation, the socket is 0600, and a well
// formed request after it is served.
func TestAdminSocketRequestBounds(t *testing.T) {
	path := filepath.Join(t.TempDir(), AdminSocketName)
	var calls atomic.Int32
	a, err := serveAdmin(path, hclog.NewNullLogger(), func(context.Context, string) (string, error) {
		calls.Add(1)
		return "done", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, %v; want mode 0600", info, err)
	}

	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	big := `{"op":"reload","pad":"` + strings.Repeat("x", 2*adminMaxRequest) + "\"}\n"
	go func() { _, _ = c.Write([]byte(big)) }()
	var ans adminAnswer
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&ans); err != nil {
		t.Fatalf("reading the answer to an oversized request: %v", err)
	}
	if ans.OK || !strings.Contains(ans.Message, "at most") {
		t.Fatalf("answer to an oversized request = %+v, want a refusal", ans)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("an oversized request ran the operation %d times", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if msg, err := AskReload(ctx, path); err != nil || msg != "done" {
		t.Fatalf("AskReload = %q, %v", msg, err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("operation ran %d times, want 1", n)
	}
}
