package identity

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
)

func newKey(t testing.TB, created time.Time) Key {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return Key{ID: uuid.NewString(), CreatedAt: created, Private: priv, Public: &priv.PublicKey}
}

func quietLogger(buf *bytes.Buffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Debug})
}

func TestKeyStores(t *testing.T) {
	stores := map[string]func(t *testing.T) KeyStore{
		"memory": func(t *testing.T) KeyStore { return NewMemoryKeyStore() },
		"file": func(t *testing.T) KeyStore {
			s, err := OpenFileKeyStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 123456789, time.UTC)
			k1, k2, k3 := newKey(t, t0), newKey(t, t0.Add(time.Hour)), newKey(t, t0.Add(2*time.Hour))
			for _, k := range []Key{k1, k2, k3} {
				if err := s.AddKey(ctx, k); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.ListKeys(ctx)
			if err != nil || len(got) != 3 {
				t.Fatalf("ListKeys = %d keys, %v", len(got), err)
			}
			for _, g := range got {
				var want Key
				for _, k := range []Key{k1, k2, k3} {
					if k.ID == g.ID {
						want = k
					}
				}
				if !g.CreatedAt.Equal(want.CreatedAt) || !g.Private.Equal(want.Private) || !g.Public.Equal(want.Public) {
					t.Errorf("key %s did not round-trip", g.ID)
				}
			}
			if err := s.DeleteKeysBefore(ctx, k2.CreatedAt); err != nil {
				t.Fatal(err)
			}
			got, _ = s.ListKeys(ctx)
			if len(got) != 2 {
				t.Fatalf("after DeleteKeysBefore: %d keys, want 2", len(got))
			}
			for _, g := range got {
				if g.ID == k1.ID {
					t.Fatal("old key not deleted")
				}
			}

			bad := []Key{
				{ID: "not-a-uuid", CreatedAt: t0, Public: k1.Public, Private: k1.Private},
				{ID: "../../etc/passwd", CreatedAt: t0, Public: k1.Public, Private: k1.Private},
				{ID: uuid.NewString(), Public: k1.Public, Private: k1.Private},
				{ID: uuid.NewString(), CreatedAt: t0},
				{ID: uuid.NewString(), CreatedAt: t0, Public: k2.Public, Private: k1.Private},
			}
			for _, k := range bad {
				if err := s.AddKey(ctx, k); err == nil {
					t.Errorf("AddKey accepted an invalid key %q", k.ID)
				}
			}
		})
	}
}

func TestFileKeyStoreOnDisk(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	s, err := OpenFileKeyStore(dir, WithLogger(quietLogger(&logs)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	k := newKey(t, time.Now())
	if err := s.AddKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	kdir := filepath.Join(dir, "keys")
	fi, err := os.Stat(kdir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("keys dir mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	p := filepath.Join(kdir, k.ID+".json")
	fi, err = os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	var kf map[string]any
	data, _ := os.ReadFile(p)
	if err := json.Unmarshal(data, &kf); err != nil {
		t.Fatal(err)
	}
	if jwk, _ := kf["key"].(map[string]any); jwk["kid"] != k.ID || jwk["d"] == nil || jwk["alg"] != "ES256" {
		t.Errorf("key file JWK = %v", kf["key"])
	}

	// A crash mid-write leaves a temp file; a corrupt file (disk damage)
	// and an unrelated file may also be there.
	if err := os.WriteFile(filepath.Join(kdir, "."+uuid.NewString()+".json.tmp-42"), []byte(`{"vers`), 0o600); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(kdir, uuid.NewString()+".json")
	if err := os.WriteFile(corrupt, []byte(`{"version":1,"key":{"kty":"EC","d":"AAAA`), 0o600); err != nil {
		t.Fatal(err)
	}
	renamed := newKey(t, time.Now())
	renamedData, _ := json.Marshal(keyFile{Version: 1, CreatedAt: renamed.CreatedAt})
	if err := os.WriteFile(filepath.Join(kdir, uuid.NewString()+".json"), renamedData, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(kdir, "README"), []byte("hi"), 0o600); err != nil {
		t.Fatal(err)
	}

	s2, err := OpenFileKeyStore(dir, WithLogger(quietLogger(&logs)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != k.ID {
		t.Fatalf("ListKeys after damage = %v", got)
	}
	if !strings.Contains(logs.String(), "skipping unreadable signing key file") {
		t.Errorf("corrupt key not logged: %s", logs.String())
	}
	if strings.Contains(logs.String(), "AAAA") {
		t.Errorf("log reveals key material: %s", logs.String())
	}
	entries, _ := os.ReadDir(kdir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temp file %s not cleaned", e.Name())
		}
	}
	// An Issuer still starts and signs.
	iss, err := New(Config{Issuer: testIssuer, KeyStore: s2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Issue(ctx, Claims{Subject: "user:default/a"}); err != nil {
		t.Fatal(err)
	}
}

func TestUserInfoStores(t *testing.T) {
	stores := map[string]func(t *testing.T, dir string) UserInfoStore{
		"memory": func(t *testing.T, _ string) UserInfoStore { return NewMemoryUserInfoStore() },
		"file": func(t *testing.T, dir string) UserInfoStore {
			s, err := OpenFileUserInfoStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t, t.TempDir())
			tests := []struct {
				sub string
				ent []string
			}{
				{"user:default/alice", []string{"user:default/alice", "group:default/a"}},
				{`user:default/"odd" <name> ü`, []string{`user:default/"odd" <name> ü`}},
				{"user:default/none", nil},
			}
			for _, tc := range tests {
				info := UserInfo{Claims: UserInfoClaims{Sub: tc.sub, Ent: tc.ent}}
				if err := s.Put(ctx, tc.sub, info); err != nil {
					t.Fatalf("Put(%q): %v", tc.sub, err)
				}
				got, err := s.Get(ctx, tc.sub)
				if err != nil || !got.Equal(info) {
					t.Fatalf("Get(%q) = %+v, %v", tc.sub, got, err)
				}
				// The caller's slice and the returned one are copies.
				if len(got.Claims.Ent) > 0 {
					got.Claims.Ent[0] = "mutated"
					again, _ := s.Get(ctx, tc.sub)
					if again.Claims.Ent[0] == "mutated" {
						t.Fatal("Get returned the stored slice")
					}
				}
			}
			if _, err := s.Get(ctx, "user:default/nobody"); !errorsIs(err, ErrUserInfoNotFound) {
				t.Fatalf("Get(unknown) err = %v", err)
			}
			if err := s.Put(ctx, "user:default/a", UserInfo{Claims: UserInfoClaims{Sub: "user:default/b"}}); err == nil {
				t.Fatal("Put accepted claims for another user")
			}
		})
	}
}

func TestFileUserInfoStorePersistsAndSkipsUnchanged(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := OpenFileUserInfoStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	sub := "user:default/alice"
	info := UserInfo{Claims: UserInfoClaims{Sub: sub, Ent: []string{sub, "group:default/a"}}}
	if err := s.Put(ctx, sub, info); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "userinfo", userInfoFileName(sub))
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("user info file: %v, %v", fi, err)
	}

	// Unchanged: no write. Remove the file behind the store's back; an
	// unchanged Put must not bring it back.
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, sub, UserInfo{Claims: UserInfoClaims{Sub: sub, Ent: []string{sub, "group:default/a"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("unchanged Put wrote the file")
	}
	// Changed: written.
	info.Claims.Ent = append(info.Claims.Ent, "group:default/b")
	if err := s.Put(ctx, sub, info); err != nil {
		t.Fatal(err)
	}
	// Reopen: survives; a corrupt file and a temp file are skipped.
	udir := filepath.Join(dir, "userinfo")
	_ = os.WriteFile(filepath.Join(udir, userInfoFileName("user:default/x")), []byte("{garbage"), 0o600)
	_ = os.WriteFile(filepath.Join(udir, "."+userInfoFileName("user:default/y")+".tmp-1"), []byte("{"), 0o600)
	var logs bytes.Buffer
	s2, err := OpenFileUserInfoStore(dir, WithLogger(quietLogger(&logs)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Get(ctx, sub)
	if err != nil || !got.Equal(info) {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	if !strings.Contains(logs.String(), "skipping unreadable user info file") {
		t.Errorf("corrupt file not logged: %q", logs.String())
	}
}

func TestFileUserInfoStoreConcurrent(t *testing.T) {
	s, err := OpenFileUserInfoStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				sub := "user:default/u" + string(rune('a'+i%3))
				ent := []string{sub, "group:default/g" + string(rune('0'+g%2))}
				if err := s.Put(ctx, sub, UserInfo{Claims: UserInfoClaims{Sub: sub, Ent: ent}}); err != nil {
					t.Error(err)
				}
				if _, err := s.Get(ctx, sub); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkUserInfoPutUnchanged(b *testing.B) {
	s, err := OpenFileUserInfoStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	sub := "user:default/alice"
	info := UserInfo{Claims: UserInfoClaims{Sub: sub, Ent: []string{sub, "group:default/a"}}}
	if err := s.Put(ctx, sub, info); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Put(ctx, sub, info); err != nil {
			b.Fatal(err)
		}
	}
}
