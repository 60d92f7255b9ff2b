// Package identitytest is the conformance suite every identity.KeyStore and
// identity.UserInfoStore passes: the memory and file stores in package
// identity, and the PostgreSQL stores in host/storage/postgres.
package identitytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spectroauth/spectroauth/host/identity"
)

// NewKey makes a fresh P-256 signing key created at created.
func NewKey(t testing.TB, created time.Time) identity.Key {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return identity.Key{ID: uuid.NewString(), CreatedAt: created, Private: priv, Public: &priv.PublicKey}
}

// RunKeyStore runs the key store suite; open returns an empty store.
func RunKeyStore(t *testing.T, open func(t *testing.T) identity.KeyStore) {
	t.Run("AddListDelete", func(t *testing.T) { testKeys(t, open(t)) })
	t.Run("Concurrent", func(t *testing.T) { testKeysConcurrent(t, open(t)) })
}

func testKeys(t *testing.T, s identity.KeyStore) {
	ctx := context.Background()
	if got, err := s.ListKeys(ctx); err != nil || len(got) != 0 {
		t.Fatalf("ListKeys of an empty store = %d keys, %v", len(got), err)
	}
	// Nanoseconds survive: rotation and pruning compare creation times.
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 123456789, time.UTC)
	k1, k2, k3 := NewKey(t, t0), NewKey(t, t0.Add(time.Hour)), NewKey(t, t0.Add(2*time.Hour))
	for _, k := range []identity.Key{k1, k2, k3} {
		if err := s.AddKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ListKeys(ctx)
	if err != nil || len(got) != 3 {
		t.Fatalf("ListKeys = %d keys, %v", len(got), err)
	}
	for _, g := range got {
		var want identity.Key
		for _, k := range []identity.Key{k1, k2, k3} {
			if k.ID == g.ID {
				want = k
			}
		}
		if want.ID == "" {
			t.Fatalf("ListKeys returned a key never added: %s", g.ID)
		}
		if !g.CreatedAt.Equal(want.CreatedAt) || g.Private == nil || !g.Private.Equal(want.Private) || !g.Public.Equal(want.Public) {
			t.Errorf("key %s did not round-trip", g.ID)
		}
	}
	// DeleteKeysBefore removes keys created strictly before the cutoff.
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
	if err := s.DeleteKeysBefore(ctx, k2.CreatedAt.Add(time.Nanosecond)); err != nil {
		t.Fatal(err)
	}
	if got, _ = s.ListKeys(ctx); len(got) != 1 || got[0].ID != k3.ID {
		t.Fatalf("after DeleteKeysBefore one nanosecond past k2: %d keys, want only k3", len(got))
	}

	bad := []identity.Key{
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
	if got, _ = s.ListKeys(ctx); len(got) != 1 {
		t.Fatalf("refused keys were stored: %d keys", len(got))
	}
}

func testKeysConcurrent(t *testing.T, s identity.KeyStore) {
	ctx := context.Background()
	now := time.Now().UTC()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				if err := s.AddKey(ctx, NewKey(t, now.Add(time.Duration(g*10+i)*time.Second))); err != nil {
					t.Error(err)
				}
				if _, err := s.ListKeys(ctx); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if got, err := s.ListKeys(ctx); err != nil || len(got) != 20 {
		t.Fatalf("ListKeys after concurrent adds = %d keys, %v; want 20", len(got), err)
	}
}

// RunUserInfoStore runs the user info store suite; open returns an empty
// store.
func RunUserInfoStore(t *testing.T, open func(t *testing.T) identity.UserInfoStore) {
	t.Run("PutGet", func(t *testing.T) { testUserInfo(t, open(t)) })
	t.Run("Concurrent", func(t *testing.T) { testUserInfoConcurrent(t, open(t)) })
}

func testUserInfo(t *testing.T, s identity.UserInfoStore) {
	ctx := context.Background()
	tests := []struct {
		sub string
		ent []string
	}{
		{"user:default/alice", []string{"user:default/alice", "group:default/a"}},
		{`user:default/"odd" <name> ü`, []string{`user:default/"odd" <name> ü`}},
		{"user:default/none", nil},
		// Changed: replaces what was there.
		{"user:default/alice", []string{"user:default/alice", "group:default/a", "group:default/b"}},
		// Unchanged again.
		{"user:default/alice", []string{"user:default/alice", "group:default/a", "group:default/b"}},
	}
	for _, tc := range tests {
		info := identity.UserInfo{Claims: identity.UserInfoClaims{Sub: tc.sub, Ent: tc.ent}}
		if err := s.Put(ctx, tc.sub, info); err != nil {
			t.Fatalf("Put(%q): %v", tc.sub, err)
		}
		got, err := s.Get(ctx, tc.sub)
		if err != nil || !got.Equal(info) {
			t.Fatalf("Get(%q) = %+v, %v; want %+v", tc.sub, got, err, info)
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
	if _, err := s.Get(ctx, "user:default/nobody"); !errors.Is(err, identity.ErrUserInfoNotFound) {
		t.Fatalf("Get(unknown) err = %v", err)
	}
	if err := s.Put(ctx, "user:default/a", identity.UserInfo{Claims: identity.UserInfoClaims{Sub: "user:default/b"}}); err == nil {
		t.Fatal("Put accepted claims for another user")
	}
	if err := s.Put(ctx, "", identity.UserInfo{}); err == nil {
		t.Fatal("Put accepted an empty user")
	}
}

func testUserInfoConcurrent(t *testing.T, s identity.UserInfoStore) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				sub := fmt.Sprintf("user:default/u%d", i%3)
				ent := []string{sub, fmt.Sprintf("group:default/g%d", g%2)}
				if err := s.Put(ctx, sub, identity.UserInfo{Claims: identity.UserInfoClaims{Sub: sub, Ent: ent}}); err != nil {
					t.Error(err)
				}
				if got, err := s.Get(ctx, sub); err != nil || got.Claims.Sub != sub || len(got.Claims.Ent) != 2 {
					t.Errorf("Get(%s) = %+v, %v", sub, got, err)
				}
			}
		}()
	}
	wg.Wait()
}
