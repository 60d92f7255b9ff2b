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

// FuzzJournalReplay: replaying arbitrary bytes (the disk after a crash, or
// a hand edit) never panics, allocates by what the bytes hold (a record's
// length is checked against maxPayload and the file before a buffer grows
// to it), and reads back exactly the good prefix.
func FuzzJournalReplay(f *testing.F) {
	var j []byte
	j = append(j, journalHeader()...)
	var k Key
	k[0] = 7
	j = appendRecord(j, opPut, k, []byte(`{"version":1,"session":{"expiresAt":"2030-01-01T00:00:00Z"}}`))
	j = appendRecord(j, opDelete, k, nil)
	k[0] = 8
	j = appendRecord(j, opPut, k, []byte(`{"version":1,"session":{}}`))
	f.Add(j)
	f.Add(j[:len(j)-3])
	f.Add(journalHeader()[:5])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		partial, err := checkHeader(data)
		if err != nil || partial {
			return
		}
		last, end, err := loadJournal(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if end < int64(journalHdrLen) || end > int64(len(data)) {
			t.Fatalf("good end %d of %d bytes", end, len(data))
		}
		if int64(len(last)*recordHdrLen) > end {
			t.Fatalf("%d records in %d bytes", len(last), end)
		}
		if again := scanRecords(data[journalHdrLen:end], func(record) {}); int64(again) != end-int64(journalHdrLen) {
			t.Fatalf("the good prefix rescans to %d bytes, not %d", again, end-int64(journalHdrLen))
		}
		for _, l := range last {
			if l.op == opPut && (l.sess == nil) == (l.why == "") {
				t.Fatalf("put decoded to %v with reason %q", l.sess, l.why)
			}
		}
	})
}
