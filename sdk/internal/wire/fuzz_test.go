package wire

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzTruncateMessage: a plugin's error message crosses the wire bounded,
// as a prefix of itself, and valid UTF-8 stays valid.
func FuzzTruncateMessage(f *testing.F) {
	const suffix = "… (truncated)"
	f.Fuzz(func(t *testing.T, msg string, pad uint16) {
		msg = strings.Repeat("x", int(pad)%(2*MaxErrorMessage)) + msg
		out := TruncateMessage(msg)
		if len(out) > MaxErrorMessage+len(suffix) {
			t.Fatalf("%d bytes out of %d", len(out), len(msg))
		}
		if out != msg && !strings.HasPrefix(msg, strings.TrimSuffix(out, suffix)) {
			t.Fatalf("truncation is not a prefix")
		}
		if utf8.ValidString(msg) && !utf8.ValidString(out) {
			t.Fatalf("truncation cut a rune")
		}
	})
}
