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
	"slices"
	"strings"
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

// ReadFileKeys and ReadFileUserInfo list what the file stores hold while
// they are open, skip what they cannot read, and change nothing on disk.
func TestReadFileKeysAndUserInfo(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	ks, err := OpenFileKeyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	us, err := OpenFileUserInfoStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	k1, k2 := newKey(t, time.Now().Add(-time.Hour)), newKey(t, time.Now())
	for _, k := range []Key{k1, k2} {
		if err := ks.AddKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]UserInfo{}
	for _, sub := range []string{"user:default/alice", "user:default/bob"} {
		info := UserInfo{Claims: UserInfoClaims{Sub: sub, Ent: []string{sub, "group:default/a"}}}
		if err := us.Put(ctx, sub, info); err != nil {
			t.Fatal(err)
		}
		want[sub] = info
	}
	// A damaged file in each, and a temporary file a write in progress has.
	_ = os.WriteFile(filepath.Join(dir, "keys", uuid.NewString()+".json"), []byte("{garbage"), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "keys", "."+k1.ID+".json.tmp-1"), []byte("{"), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "userinfo", userInfoFileName("user:default/x")), []byte("{garbage"), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "userinfo", "."+userInfoFileName("user:default/y")+".tmp-1"), []byte("{"), 0o600)
	listing := func() (names []string) {
		for _, sub := range []string{"keys", "userinfo"} {
			entries, err := os.ReadDir(filepath.Join(dir, sub))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				names = append(names, sub+"/"+e.Name())
			}
		}
		return names
	}
	before := listing()

	var logs bytes.Buffer
	keys, err := ReadFileKeys(ctx, dir, WithLogger(quietLogger(&logs)))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("ReadFileKeys: %d keys, want 2", len(keys))
	}
	for _, k := range keys {
		w := k1
		if k.ID == k2.ID {
			w = k2
		}
		if k.ID != w.ID || !k.CreatedAt.Equal(w.CreatedAt) || !k.Private.Equal(w.Private) {
			t.Errorf("key %s read back differs", k.ID)
		}
	}
	infos, err := ReadFileUserInfo(dir, WithLogger(quietLogger(&logs)))
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != len(want) {
		t.Fatalf("ReadFileUserInfo: %d, want %d", len(infos), len(want))
	}
	for _, info := range infos {
		if !info.Equal(want[info.Claims.Sub]) {
			t.Errorf("user info of %s read back differs: %+v", info.Claims.Sub, info)
		}
	}
	if strings.Count(logs.String(), "skipping unreadable") != 2 {
		t.Errorf("damaged files not logged: %s", logs.String())
	}
	if after := listing(); !slices.Equal(before, after) {
		t.Errorf("reading changed the directories:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := ReadFileKeys(ctx, filepath.Join(dir, "nope")); err == nil {
		t.Error("ReadFileKeys of a missing directory succeeded")
	}
	if _, err := ReadFileUserInfo(filepath.Join(dir, "nope")); err == nil {
		t.Error("ReadFileUserInfo of a missing directory succeeded")
	}
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

// Every store keeps keys in one encoding: the file store's JSON, private or
// public-only.
func TestEncodeDecodeKey(t *testing.T) {
	k := newKey(t, time.Date(2026, 1, 1, 0, 0, 0, 987654321, time.UTC))
	for name, in := range map[string]Key{"private": k, "public": {ID: k.ID, CreatedAt: k.CreatedAt, Public: k.Public}} {
		data, err := EncodeKey(in)
		if err != nil {
			t.Fatal(name, err)
		}
		if hasD := strings.Contains(string(data), `"d":`); hasD != (in.Private != nil) {
			t.Errorf("%s: private half present = %v", name, hasD)
		}
		out, err := DecodeKey(data)
		if err != nil {
			t.Fatal(name, err)
		}
		if out.ID != in.ID || !out.CreatedAt.Equal(in.CreatedAt) || !out.Public.Equal(in.Public) || (out.Private == nil) != (in.Private == nil) {
			t.Errorf("%s: did not round-trip", name)
		}
	}
	if _, err := EncodeKey(Key{ID: "x"}); err == nil {
		t.Error("EncodeKey accepted an invalid key")
	}
	if _, err := DecodeKey([]byte(`{"version":1,"key":{"kty":"EC","d":"SECRET`)); err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("DecodeKey of damaged JSON: %v", err)
	}
}
