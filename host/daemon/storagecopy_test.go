package daemon

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/pgtest"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/storage/postgres"
)

// postgresConfig is the development defaults on the PostgreSQL database dsn:
// what storage-copy is given.
func postgresConfig(t *testing.T, dsn string) *config.Config {
	t.Helper()
	cfg, err := config.Load("", config.WithEnv(map[string]string{
		"SPECTROAUTH_STORAGE__TYPE":        "postgres",
		"SPECTROAUTH_STORAGE__POSTGRESURL": dsn,
	}))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func copyStorage(t *testing.T, cfg *config.Config, from string) CopyReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := CopyFileStorage(ctx, cfg, from, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// openDB opens the database at dsn for a test to look into.
func openDB(t *testing.T, dsn string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), dsn, postgres.Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestStorageCopyMovesADaemonToPostgres is the move from one daemon to
// replicas: alice signs in at a daemon on file storage, which then stops;
// its data directory is copied into a fresh database, and a daemon on that
// database, at the same URL, takes over. Alice's cookie still refreshes
// there, and the Backstage token issued before the move still verifies.
func TestStorageCopyMovesADaemonToPostgres(t *testing.T) {
	var dir string
	old, base, err := startDevWith(t, func(cfg *config.Config) { dir = cfg.Storage.Path })
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	code, frame, err := devSignIn(c, base+"/api/auth/spectrocloud/start?scope=openid%20offline_access&origin="+url.QueryEscape(base)+"&flow=popup&env=development", base, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusOK || !strings.Contains(frame, "authorization_response") {
		t.Fatalf("sign-in at the file-storage daemon: %d %s", code, frame)
	}
	code, before := refreshAt(t, c, base, base)
	if code != http.StatusOK || before.BackstageIdentity.Token == "" {
		t.Fatalf("refresh at the file-storage daemon: %d", code)
	}
	addr := old.Addr().String()
	if err := old.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	dsn := pgtest.NewDatabase(t)
	cfg := postgresConfig(t, dsn)
	first := copyStorage(t, cfg, dir)
	if first.KeysCopied < 1 || first.UserInfoCopied != 1 || first.SessionsCopied != 1 || first.FlowKey != FlowKeyCopied || !first.Changed() {
		t.Fatalf("first copy: %+v; want a key, alice's user info and session, and the flow key", first)
	}
	// Idempotent: a second run finds everything there and writes nothing.
	second := copyStorage(t, cfg, dir)
	want := CopyReport{KeysPresent: first.KeysCopied, UserInfoPresent: 1, SessionsPresent: 1, FlowKey: FlowKeyPresent}
	if second != want || second.Changed() {
		t.Fatalf("second copy: %+v, want %+v", second, want)
	}
	fileKey, err := os.ReadFile(filepath.Join(dir, "flow.key"))
	if err != nil {
		t.Fatal(err)
	}
	if dbKey, err := openDB(t, dsn).FlowKey(context.Background()); err != nil || !bytes.Equal(dbKey, fileKey) {
		t.Fatalf("the database's flow key is not the data directory's (%v)", err)
	}

	// The replica takes over at the same address (the same public URL).
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	startReplica(t, l, base, dsn, true)

	code, after := refreshAt(t, c, base, base)
	if code != http.StatusOK || after.BackstageIdentity.Identity.UserEntityRef != "user:default/alice" {
		t.Fatalf("alice's cookie at the PostgreSQL daemon: %d, user %q", code, after.BackstageIdentity.Identity.UserEntityRef)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/api/auth/v1/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+before.BackstageIdentity.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"sub":"user:default/alice"`) {
		t.Fatalf("a token issued before the move, at the PostgreSQL daemon's /v1/userinfo: %d %s", res.StatusCode, body)
	}
}

// fileStorage makes a data directory as a file-storage daemon leaves it:
// one signing key, alice's user info, a session of hers that is live and
// one of bob's that expired an hour ago, and no flow key.
func fileStorage(t *testing.T) (dir string, key identity.Key, info identity.UserInfo) {
	t.Helper()
	ctx := context.Background()
	dir = t.TempDir()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key = identity.Key{ID: uuid.NewString(), CreatedAt: time.Now(), Private: priv, Public: &priv.PublicKey}
	ks, err := identity.OpenFileKeyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.AddKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	us, err := identity.OpenFileUserInfoStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	info = identity.UserInfo{Claims: identity.UserInfoClaims{Sub: "user:default/alice", Ent: []string{"user:default/alice"}}}
	if err := us.Put(ctx, info.Claims.Sub, info); err != nil {
		t.Fatal(err)
	}
	// The store's clock is two hours back, so it takes bob's session,
	// which expired an hour ago.
	now := time.Now()
	ss, err := session.OpenFileStore(dir, session.Options{Now: func() time.Time { return now.Add(-2 * time.Hour) }, SweepInterval: -1, Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	for user, expires := range map[string]time.Time{"alice": now.Add(time.Hour), "bob": now.Add(-time.Hour)} {
		h, err := session.NewHandle()
		if err != nil {
			t.Fatal(err)
		}
		k, _ := session.KeyOf(h)
		sess := &session.Session{Env: "development", Provider: "spectrocloud", CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: expires, UserEntityRef: "user:default/" + user}
		if err := ss.Put(ctx, k, sess); err != nil {
			t.Fatal(err)
		}
	}
	return dir, key, info
}

// Expired sessions are skipped; a flow key or user info the database
// already has, different from the data directory's, is left as it is.
func TestStorageCopySkipsExpiredAndKeepsWhatTheDatabaseHas(t *testing.T) {
	ctx := context.Background()
	dir, _, info := fileStorage(t)
	dsn := pgtest.NewDatabase(t)
	cfg := postgresConfig(t, dsn)

	r := copyStorage(t, cfg, dir)
	want := CopyReport{KeysCopied: 1, UserInfoCopied: 1, SessionsCopied: 1, SessionsExpired: 1, FlowKey: FlowKeyNone}
	if r != want {
		t.Fatalf("copy: %+v, want %+v", r, want)
	}

	// The replicas have run since: their own flow key, newer user info.
	db := openDB(t, dsn)
	theirs, err := db.FlowKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	newer := identity.UserInfo{Claims: identity.UserInfoClaims{Sub: info.Claims.Sub, Ent: []string{info.Claims.Sub, "group:default/new"}}}
	if err := db.UserInfo().Put(ctx, info.Claims.Sub, newer); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "flow.key"), bytes.Repeat([]byte{1}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	r = copyStorage(t, cfg, dir)
	want = CopyReport{KeysPresent: 1, UserInfoKept: 1, SessionsPresent: 1, SessionsExpired: 1, FlowKey: FlowKeyDifferent}
	if r != want || r.Changed() {
		t.Fatalf("copy over a database in use: %+v, want %+v", r, want)
	}
	if got, _ := db.FlowKey(ctx); !bytes.Equal(got, theirs) {
		t.Error("the copy replaced the database's flow key")
	}
	if got, _ := db.UserInfo().Get(ctx, info.Claims.Sub); !got.Equal(newer) {
		t.Errorf("the copy replaced the database's user info: %+v", got)
	}
}

// The copy only goes into PostgreSQL storage, and reads the data
// directory before it touches the database.
func TestStorageCopyRefusals(t *testing.T) {
	ctx := context.Background()
	file, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CopyFileStorage(ctx, file, t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), `storage.type is "file"`) {
		t.Errorf("into file storage: %v; want a refusal naming storage.type", err)
	}
	// Nothing listens on port 1: reaching the database would fail otherwise.
	unreachable := postgresConfig(t, "postgres://spectroauth:pw-SECRET@127.0.0.1:1/spectroauth?connect_timeout=2")
	for name, dir := range map[string]string{"missing": filepath.Join(t.TempDir(), "nope"), "empty": t.TempDir()} {
		_, err := CopyFileStorage(ctx, unreachable, dir, nil)
		if err == nil || !strings.Contains(err.Error(), "reading the") || !strings.Contains(err.Error(), dir) {
			t.Errorf("%s data directory: %v; want an error naming it", name, err)
		}
	}
	dir, _, _ := fileStorage(t)
	_, err = CopyFileStorage(ctx, unreachable, dir, nil)
	if err == nil || !strings.Contains(err.Error(), "storage.postgresUrl") || strings.Contains(err.Error(), "pw-SECRET") {
		t.Errorf("an unreachable database: %v; want an error naming storage.postgresUrl, not the password", err)
	}
}
