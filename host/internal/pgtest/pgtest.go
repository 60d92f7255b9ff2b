// Package pgtest runs a throwaway PostgreSQL server for tests.
//
// The server is Debian's PostgreSQL (package postgresql: initdb and
// postgres under /usr/lib/postgresql/<version>/bin, or on PATH). It lives in
// a fresh temporary directory, listens only on a Unix socket there (no TCP
// port at all, unless a test asks for one on 127.0.0.1), lets the test user
// in without a password (trust, which is safe since only the socket's
// directory owner and root can reach it) and
// runs with fsync off, so a test gets a database in well under a second
// after the first.
//
// PostgreSQL refuses to run as root. When the tests run as root (CI does),
// initdb and the server run as the "postgres" system user that the Debian
// package creates, through the child process's credentials (the same
// effect as setpriv or runuser, without either); the temporary directory
// is handed to that user. The test process, as root, still reaches the
// socket.
//
// A test package uses it with
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// and pgtest.NewDatabase(t) in each test that needs PostgreSQL: the first
// call starts the package's server, every call creates an empty database,
// and Main stops the server when the tests are done. A test that stops and
// restarts the server (Halt, Resume) starts one of its own with NewServer.
// Without the binaries
// the tests that need them skip with a message saying what to install,
// unless the CI environment variable is set: then they fail.
package pgtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// User is the superuser of the test server.
const User = "spectroauth_test"

// Server is a running throwaway PostgreSQL server.
type Server struct {
	dir     string // temporary directory: data/, sock/, server.log
	bin     string
	sockDir string
	tcpPort int // 0: the Unix socket only
	cred    *syscall.Credential
	mu      sync.Mutex // guards cmd and exited across Halt and Resume
	cmd     *exec.Cmd
	exited  chan struct{}
	dbs     atomic.Int64
}

// Options configure a server started by NewServer or StartWith.
type Options struct {
	// TCP makes the server listen on a free port of 127.0.0.1 as well, and
	// DSN name it: a client then sees a server that went away as a TCP
	// client does (writes that succeed, then the server's last message),
	// not as on a Unix socket (writes that fail at once). Any local user
	// can reach that port without a password while the test runs.
	TCP bool
}

var (
	shared     *Server
	sharedErr  error
	sharedSkip string
	sharedOnce sync.Once
)

// Main runs the package's tests and stops the shared server, if one was
// started. Use it from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
	}
	return code
}

// NewDatabase returns the connection string of a new, empty database on the
// package's shared server, starting the server on first use. It skips t
// (fails it under CI) when PostgreSQL is not installed.
func NewDatabase(t testing.TB) string {
	t.Helper()
	s := SharedServer(t)
	dsn, err := s.CreateDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// SharedServer returns the package's shared server, starting it on first
// use. Only tests of a package whose TestMain calls Main may use it.
func SharedServer(t testing.TB) *Server {
	t.Helper()
	sharedOnce.Do(func() {
		bin, why := FindBin()
		if bin == "" {
			sharedSkip = why
			return
		}
		shared, sharedErr = Start(bin)
	})
	if sharedSkip != "" {
		skipUnlessCI(t, sharedSkip)
	}
	if sharedErr != nil {
		t.Fatalf("pgtest: %v", sharedErr)
	}
	return shared
}

// skipUnlessCI skips t because PostgreSQL is missing (why), or fails it
// under CI, where .ci/run installs PostgreSQL and a missing one is a bug.
func skipUnlessCI(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("pgtest: %s (CI is set, so this fails rather than skips)", why)
	}
	t.Skipf("pgtest: SKIP: %s", why)
}

// NewServer starts a server of t's own (not the package's shared one), for
// a test that stops and restarts it; it is removed at the end of t. It
// skips t (fails it under CI) when PostgreSQL is not installed.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, why := FindBin()
	if bin == "" {
		skipUnlessCI(t, why)
	}
	s, err := StartWith(bin, opts)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s
}

// FindBin returns the directory holding initdb and postgres: on PATH, or
// Debian's newest /usr/lib/postgresql/<version>/bin. When there is none it
// returns "" and a message saying what to install.
func FindBin() (dir, why string) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			d := filepath.Dir(real)
			if isExec(filepath.Join(d, "postgres")) {
				return d, ""
			}
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return versionOf(matches[i]) > versionOf(matches[j]) })
	for _, m := range matches {
		d := filepath.Dir(m)
		if isExec(m) && isExec(filepath.Join(d, "postgres")) {
			return d, ""
		}
	}
	return "", "PostgreSQL is not installed: no initdb on PATH or in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
}

func versionOf(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Start initialises a cluster in a new temporary directory and starts a
// server on a Unix socket there. Stop it with Stop. Should the test process
// die without stopping it, the server gets SIGQUIT (immediate shutdown).
func Start(bin string) (*Server, error) { return StartWith(bin, Options{}) }

// StartWith is Start with options.
func StartWith(bin string, opts Options) (_ *Server, err error) {
	dir, err := os.MkdirTemp("", "spectroauth-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("making the server's directory: %w", err)
	}
	s := &Server{dir: dir, bin: bin, sockDir: filepath.Join(dir, "sock")}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := os.Mkdir(s.sockDir, 0o700); err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	s.cred = cred
	if opts.TCP {
		if s.tcpPort, err = freePort(); err != nil {
			return nil, err
		}
	}
	if cred != nil {
		// The server's user owns everything under dir; root reaches it anyway.
		for _, p := range []string{dir, s.sockDir} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, fmt.Errorf("handing %s to the postgres user: %w", p, err)
			}
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"),
		"-D", data, "-U", User, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.Env = serverEnv()
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if err := s.launch(); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

// launch starts postgres on the cluster in s.dir and waits until it
// accepts connections.
func (s *Server) launch() error {
	logf, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	listen := ""
	if s.tcpPort != 0 {
		listen = "127.0.0.1"
	}
	// The server runs in the foreground as our child (pg_ctl would detach
	// it), so that the kernel ends it if this process dies.
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", filepath.Join(s.dir, "data"),
		"-c", "listen_addresses="+listen,
		"-c", "port="+strconv.Itoa(cmp.Or(s.tcpPort, 5432)),
		"-c", "unix_socket_directories="+s.sockDir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
		"-c", "shared_buffers=32MB",
		"-c", "log_min_messages=warning",
	)
	cmd.Env = serverEnv()
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	return s.waitReady(30*time.Second, exited)
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serverCredential is nil when we are not root, and the postgres user's
// otherwise.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs a non-root user to run as and there is no \"postgres\" user (the postgresql package creates it): %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("the postgres user has ids %s:%s", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func serverEnv() []string {
	return []string{"PATH=/usr/bin:/bin", "LANG=C", "LC_ALL=C", "TZ=UTC"}
}

func (s *Server) waitReady(limit time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			err = c.Ping(ctx)
			_ = c.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
			return fmt.Errorf("postgres exited at start:\n%s", log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
			return fmt.Errorf("postgres did not accept connections within %s: %v\n%s", limit, err, log)
		}
	}
}

// DSN is the connection string (a URL) of database db on this server.
// With Options.TCP it names the server's TCP port on 127.0.0.1.
func (s *Server) DSN(db string) string {
	q := url.Values{"host": {s.sockDir}, "user": {User}, "sslmode": {"disable"}}
	if s.tcpPort != 0 {
		q.Set("host", "127.0.0.1")
		q.Set("port", strconv.Itoa(s.tcpPort))
	}
	return "postgres:///" + url.PathEscape(db) + "?" + q.Encode()
}

// SocketDir is the directory of the server's Unix socket.
func (s *Server) SocketDir() string { return s.sockDir }

// CreateDatabase makes a new empty database and returns its connection
// string.
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: connecting: %w", err)
	}
	defer c.Close(ctx)
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), s.dbs.Add(1))
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		return "", fmt.Errorf("pgtest: creating database %s: %w", name, err)
	}
	return s.DSN(name), nil
}

// Stop shuts the server down (fast: sessions are ended) and removes its
// directory.
func (s *Server) Stop() error {
	err := s.Halt()
	if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// Halt shuts the server down as an operator's fast shutdown does: every
// session is ended (its client is sent 57P01, admin_shutdown) and the
// server exits. The cluster stays; Resume starts it again. Halting a
// halted server does nothing.
func (s *Server) Halt() error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
		return nil
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return errors.New("postgres did not stop within 20s; killed")
	}
}

// Resume starts a halted server again, on the same cluster, socket and
// port, and waits until it accepts connections.
func (s *Server) Resume() error {
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		return errors.New("pgtest: the server is running")
	}
	return s.launch()
}

// Log returns the server's log so far, for a failing test to show.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	return strings.TrimSpace(string(b))
}
