package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/daemon"
	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/pgtest"
	"github.com/spectroauth/spectroauth/host/session"
)

// afterTests are run once the package's tests are done: clean-ups of what
// several tests share.
var afterTests []func()

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	for _, f := range afterTests {
		f()
	}
	os.Exit(code)
}

// dataDir is the data directory a daemon on file storage left, with a
// signing key and a session holding tokens added. It returns the key's
// private part, base64url, as a JWK holds it.
func dataDir(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	cfg, err := config.Load("", config.WithEnv(map[string]string{
		"SPECTROAUTH_SERVER__LISTEN":                                     l.Addr().String(),
		"SPECTROAUTH_SERVER__BASEURL":                                    base,
		"SPECTROAUTH_APP__BASEURL":                                       base,
		"SPECTROAUTH_AUTH__PROVIDERS__SPECTROCLOUD__DEVELOPMENT__ISSUER": base + daemon.DevProviderPath,
		"SPECTROAUTH_STORAGE__PATH":                                      dir,
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := daemon.Start(ctx, cfg, daemon.Options{Listener: l})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A key is made at the first sign-in; this daemon had none.
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := identity.OpenFileKeyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.AddKey(ctx, identity.Key{ID: uuid.NewString(), CreatedAt: time.Now(), Private: priv, Public: &priv.PublicKey}); err != nil {
		t.Fatal(err)
	}
	ss, err := session.OpenFileStore(dir, session.Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	h, _ := session.NewHandle()
	k, _ := session.KeyOf(h)
	now := time.Now()
	if err := ss.Put(ctx, k, &session.Session{
		Env: "development", Provider: "spectrocloud", CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		UserEntityRef: "user:default/alice",
		Upstream:      session.UpstreamTokens{IDToken: "id-SECRET", RefreshToken: "rt-SECRET"},
		Backstage:     &session.BackstageToken{Token: "bs-SECRET", ExpiresAt: now.Add(time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	scalar, err := priv.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return dir, base64.RawURLEncoding.EncodeToString(scalar)
}

// storage-copy copies a data directory into PostgreSQL, says what it did
// in counts, changes nothing the second time, and prints no secret.
func TestStorageCopyCommand(t *testing.T) {
	for _, v := range []string{"CLIENT_SECRET", "CATALOG_TOKEN", "PALETTE_API_KEY"} {
		t.Setenv(v, "literal-staging-secret")
	}
	dir, privateKey := dataDir(t)
	flowKey, err := os.ReadFile(filepath.Join(dir, "flow.key"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{"SECRET", privateKey, "literal-staging-secret", hex.EncodeToString(flowKey), base64.StdEncoding.EncodeToString(flowKey), base64.RawURLEncoding.EncodeToString(flowKey)}
	valid := "../config/testdata/valid.yaml"

	// The file storage valid.yaml names is refused, naming storage.type.
	var stdout, stderr strings.Builder
	if code := run([]string{"storage-copy", "-config", valid, "-from", dir}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), `storage.type is "file"`) {
		t.Fatalf("into file storage: exit %d, stderr %q", code, stderr.String())
	}

	// The test server trusts the socket: the password is never asked for,
	// only there to be kept out of the output.
	t.Setenv("SPECTROAUTH_STORAGE__TYPE", "postgres")
	t.Setenv("SPECTROAUTH_STORAGE__POSTGRESURL", pgtest.NewDatabase(t)+"&password=pw-SECRET-77")
	for i, want := range [][]string{
		{"signing keys  1 copied, 0 already present", "user info     0 copied", "sessions      1 copied, 0 skipped as expired, 0 already present", "flow key      copied"},
		{"signing keys  0 copied, 1 already present", "sessions      0 copied, 0 skipped as expired, 1 already present", "flow key      already present", "Nothing changed"},
	} {
		stdout.Reset()
		stderr.Reset()
		code := run([]string{"storage-copy", "-config", valid, "-from", dir}, &stdout, &stderr)
		if code != 0 {
			t.Fatalf("run %d: exit %d\nstdout: %s\nstderr: %s", i+1, code, stdout.String(), stderr.String())
		}
		for _, w := range want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("run %d: stdout lacks %q:\n%s", i+1, w, stdout.String())
			}
		}
		for _, s := range secrets {
			if strings.Contains(stdout.String()+stderr.String(), s) {
				t.Errorf("run %d printed a secret (%.8s…):\n%s%s", i+1, s, stdout.String(), stderr.String())
			}
		}
		if i == 0 && strings.Contains(stdout.String(), "Nothing changed") {
			t.Errorf("the first run says nothing changed:\n%s", stdout.String())
		}
	}

	// A data directory that is not one fails, naming it.
	stdout.Reset()
	stderr.Reset()
	missing := filepath.Join(dir, "nope")
	if code := run([]string{"storage-copy", "-config", valid, "-from", missing}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), missing) {
		t.Errorf("a missing data directory: exit %d, stderr %q", code, stderr.String())
	}
}

// Usage errors exit 2 and say what is missing.
func TestStorageCopyUsage(t *testing.T) {
	for _, args := range [][]string{
		{"storage-copy"},
		{"storage-copy", "-config", "x.yaml"},
		{"storage-copy", "-from", "/data"},
		{"storage-copy", "-config", "x.yaml", "-from", "/data", "extra"},
	} {
		var stdout, stderr strings.Builder
		if code := run(args, &stdout, &stderr); code != 2 || stderr.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and why", args, code, stderr.String())
		}
	}
}
