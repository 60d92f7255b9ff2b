package session

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"testing"
)

// FuzzKeyOf: a session handle is accepted exactly when it is the canonical
// unpadded base64url spelling of HandleBytes bytes, so one handle has one
// key, and the key is the SHA-256 of the handle.
func FuzzKeyOf(f *testing.F) {
	f.Fuzz(func(t *testing.T, h string) {
		key, err := KeyOf(h)
		b, decErr := base64.RawURLEncoding.Strict().DecodeString(h)
		canonical := decErr == nil && len(b) == HandleBytes && base64.RawURLEncoding.EncodeToString(b) == h
		if (err == nil) != canonical {
			t.Fatalf("KeyOf(%q) error %v, but canonical = %v", h, err, canonical)
		}
		if err == nil && key != sha256.Sum256([]byte(h)) {
			t.Fatalf("KeyOf(%q) is not the SHA-256 of the handle", h)
		}
	})
}

// FuzzDecodeSessionFile: a session file (the disk is outside input after a
// crash or a hand edit) decodes to a session with an expiry, or to a fixed
// reason that quotes nothing from the file.
func FuzzDecodeSessionFile(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		s, reason := decodeSessionFile(data, nil)
		if s == nil {
			if reason == "" {
				t.Fatal("refused without a reason")
			}
			if len(reason) > 64 || (len(data) >= 4 && bytes.Contains([]byte(reason), data)) {
				t.Fatalf("reason %q may quote the file", reason)
			}
			return
		}
		if reason != "" || s.ExpiresAt.IsZero() {
			t.Fatalf("accepted session with reason %q, expiry %v", reason, s.ExpiresAt)
		}
	})
}
