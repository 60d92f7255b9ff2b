package lifecycle

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"sync"
	"testing"
)

// TestDerive checks Derive against HMAC-SHA256(flow key, purpose 0 value),
// repeatedly and from several goroutines, so that a reused HMAC never
// carries state from an earlier derivation.
func TestDerive(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	m := &Manager{cfg: Config{FlowKey: key}}
	want := func(purpose, value string) string {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(purpose + "\x00" + value))
		return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				purpose, value := "pkce-verifier", strconv.Itoa(g*1000+i)
				if i%2 == 1 {
					purpose, value = "oidc-nonce", value+"-long-value-that-spans-more-than-one-sha256-block-"+value+value+value+value
				}
				if got, w := m.Derive(purpose, value), want(purpose, value); got != w {
					t.Errorf("Derive(%q, %q) = %q, want %q", purpose, value, got, w)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkDerive(b *testing.B) {
	m := &Manager{cfg: Config{FlowKey: []byte("0123456789abcdef0123456789abcdef")}}
	b.ReportAllocs()
	for b.Loop() {
		m.Derive("pkce-verifier", "p4fLs9bV2m0rSx1uTq8wEw")
	}
}
