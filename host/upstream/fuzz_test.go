package upstream

import (
	"context"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzVerifyIDToken feeds mutated ID tokens from the provider to the
// verifier: a real token signed by the real OP (host/devprovider), with a
// byte changed, or with its header or payload replaced while the signature
// is kept. A refused token stays refused: whatever verifies carries exactly
// the claims of the token the provider signed, and every refusal is
// ErrInvalidIDToken (or ErrKeysUnavailable), never anything else.
func FuzzVerifyIDToken(f *testing.F) {
	h := newHarness(f, harnessOpts{})
	p := h.provider()
	raw := h.signIn(p).IDToken
	ctx := context.Background()
	_, want, err := p.verifyIDToken(ctx, raw, idTokenCheck{})
	if err != nil {
		f.Fatalf("the provider's own token does not verify: %v", err)
	}
	parts := strings.Split(raw, ".")
	f.Fuzz(func(t *testing.T, pos uint16, x byte, header, payload string, splice bool) {
		cand := []byte(raw)
		cand[int(pos)%len(cand)] ^= x
		if splice {
			h, pl := parts[0], parts[1]
			if header != "" {
				h = base64.RawURLEncoding.EncodeToString([]byte(header))
			}
			if payload != "" {
				pl = base64.RawURLEncoding.EncodeToString([]byte(payload))
			}
			cand = []byte(h + "." + pl + "." + parts[2])
		}
		_, got, err := p.verifyIDToken(ctx, string(cand), idTokenCheck{})
		if err != nil {
			if !errors.Is(err, ErrInvalidIDToken) && !errors.Is(err, ErrKeysUnavailable) {
				t.Fatalf("refusal is neither ErrInvalidIDToken nor ErrKeysUnavailable: %v", err)
			}
			if len(err.Error()) > 1024 {
				t.Fatalf("refusal of %d bytes", len(err.Error()))
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("a mutated token verified with other claims:\n%q\n%v\nwant %v", cand, got, want)
		}
	})
}
