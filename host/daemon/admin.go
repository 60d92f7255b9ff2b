package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/config"
)

// AdminSocketName is the admin socket's file name in the data directory.
const AdminSocketName = "admin.sock"

// AdminSocketPath is where a daemon of cfg listens for `spectroauthd
// reload`: admin.sock in storage.path, the daemon's data directory.
func AdminSocketPath(cfg *config.Config) string {
	return filepath.Join(cfg.Storage.Path, AdminSocketName)
}

// adminRequest and adminAnswer are the admin socket's protocol: one JSON
// line each way per connection.
type adminRequest struct {
	Op string `json:"op"` // "reload"
}

type adminAnswer struct {
	OK      bool   `json:"ok"`
	Message string `json:"message"`
}

// adminTimeout bounds one admin request, a reload's plugin starts included.
const adminTimeout = 2 * time.Minute

// adminReadTimeout bounds how long a caller may take to send its request,
// and adminMaxRequest its size: a request is one short JSON line.
const (
	adminReadTimeout = 10 * time.Second
	adminMaxRequest  = 4 << 10
)

// sameUser refuses a caller whose uid is not the daemon's own.
func sameUser(peer, own int) error {
	if peer != own {
		return fmt.Errorf("admin socket: only the daemon's own user (uid %d) may use it, not uid %d", own, peer)
	}
	return nil
}

// adminServer serves the admin socket: a Unix socket, mode 0600, that only
// the daemon's own user may use (the kernel's peer credentials are checked
// where it tells them).
type adminServer struct {
	path string
	l    net.Listener
	log  hclog.Logger
	wg   sync.WaitGroup
}

// serveAdmin listens on path for admin requests, run by handle.
func serveAdmin(path string, log hclog.Logger, handle func(ctx context.Context, op string) (string, error)) (*adminServer, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s: another daemon answers on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin socket %s: removing a stale one: %w", path, err)
	}
	// Made in a private directory, restricted, then moved into place: at
	// no moment can another user connect to it.
	dir, err := os.MkdirTemp(filepath.Dir(path), ".admin-")
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, AdminSocketName)
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	a := &adminServer{path: path, l: l, log: log}
	a.wg.Go(func() { a.serve(handle) })
	return a, nil
}

func (a *adminServer) serve(handle func(ctx context.Context, op string) (string, error)) {
	for {
		c, err := a.l.Accept()
		if err != nil {
			return
		}
		a.wg.Go(func() {
			defer c.Close()
			a.answer(c.(*net.UnixConn), handle)
		})
	}
}

func (a *adminServer) answer(c *net.UnixConn, handle func(ctx context.Context, op string) (string, error)) {
	_ = c.SetDeadline(time.Now().Add(adminReadTimeout))
	if err := peerIsOwner(c); err != nil {
		a.log.Warn("admin socket: connection refused", "error", err)
		_ = json.NewEncoder(c).Encode(adminAnswer{Message: err.Error()})
		return
	}
	var req adminRequest
	line, err := bufio.NewReader(io.LimitReader(c, adminMaxRequest)).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	var ans adminAnswer
	if err != nil {
		ans.Message = fmt.Sprintf("admin socket: a request is one JSON line of at most %d bytes: %v", adminMaxRequest, err)
	} else {
		_ = c.SetDeadline(time.Now().Add(adminTimeout))
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		msg, err := handle(ctx, req.Op)
		cancel()
		ans = adminAnswer{OK: err == nil, Message: msg}
		if err != nil {
			ans.Message = err.Error()
		}
	}
	_ = json.NewEncoder(c).Encode(ans)
}

// close stops serving and removes the socket.
func (a *adminServer) close() {
	_ = a.l.Close()
	_ = os.Remove(a.path)
	a.wg.Wait()
}

// handleAdmin runs one admin operation.
func (d *Daemon) handleAdmin(ctx context.Context, op string) (string, error) {
	switch op {
	case "reload":
		r, err := d.ReloadConfig(ctx)
		if err != nil {
			return "", fmt.Errorf("refused, the running configuration serves on: %w", err)
		}
		return r.String(), nil
	}
	return "", fmt.Errorf("unknown admin operation %q", op)
}

// AskReload asks the daemon listening on the admin socket at path to
// reload its configuration, and returns its answer: what the reload did,
// or an error with the reason it was refused.
func AskReload(ctx context.Context, path string) (string, error) {
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, "unix", path)
	if err != nil {
		return "", fmt.Errorf("no daemon answers on the admin socket %s (is it running, with this storage.path?): %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(adminRequest{Op: "reload"}); err != nil {
		return "", fmt.Errorf("asking the daemon to reload: %w", err)
	}
	var ans adminAnswer
	if err := json.NewDecoder(c).Decode(&ans); err != nil {
		return "", fmt.Errorf("reading the daemon's answer: %w", err)
	}
	if !ans.OK {
		return "", errors.New(ans.Message)
	}
	return ans.Message, nil
}
