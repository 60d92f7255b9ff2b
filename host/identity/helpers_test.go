package identity

import (
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
)

const testIssuer = "https://backstage.example.com/api/auth"

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	iss   *Issuer
	keys  KeyStore
	info  UserInfoStore
	clock *fakeClock
}

func newFixture(t testing.TB, ks KeyStore) *fixture {
	t.Helper()
	if ks == nil {
		ks = NewMemoryKeyStore()
	}
	f := &fixture{keys: ks, info: NewMemoryUserInfoStore(), clock: newClock()}
	var err error
	f.iss, err = New(Config{Issuer: testIssuer, Lifetime: time.Hour, KeyStore: ks, UserInfo: f.info, Now: f.clock.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f
}

func (f *fixture) issue(t testing.TB, c Claims) Token {
	t.Helper()
	tok, err := f.iss.Issue(context.Background(), c)
	if err != nil {
		t.Fatalf("Issue(%q): %v", c.Subject, err)
	}
	return tok
}

// parts splits a compact JWS into its decoded header and payload and the
// raw signature segment.
func parts(t testing.TB, raw string) (header, payload []byte, sig string) {
	t.Helper()
	p := strings.Split(raw, ".")
	if len(p) != 3 {
		t.Fatalf("token has %d parts", len(p))
	}
	h, err := base64.RawURLEncoding.DecodeString(p[0])
	if err != nil {
		t.Fatalf("header: %v", err)
	}
	b, err := base64.RawURLEncoding.DecodeString(p[1])
	if err != nil {
		t.Fatalf("payload: %v", err)
	}
	return h, b, p[2]
}

// jwksKeys parses a JWKS document.
func jwksKeys(t testing.TB, doc []byte) map[string]jose.JSONWebKey {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatalf("JWKS %s: %v", doc, err)
	}
	m := map[string]jose.JSONWebKey{}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("JWKS holds a private key %s", k.KeyID)
		}
		m[k.KeyID] = k
	}
	return m
}

// signRaw signs arbitrary header and payload JSON with priv, for tokens
// Issue would never make.
func signRaw(t testing.TB, priv *ecdsa.PrivateKey, header, payload string) string {
	t.Helper()
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	sig, err := cryptosigner.Opaque(priv).SignPayload([]byte(input), jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// currentKey returns the private key the fixture signs with now.
func (f *fixture) currentKey(t testing.TB) Key {
	t.Helper()
	keys, err := f.keys.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := f.iss.set.Load()
	for _, k := range keys {
		if s.signer != nil && k.ID == s.signer.id {
			return k
		}
	}
	t.Fatal("no current signing key")
	return Key{}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
