package server

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestSafelyEncodeURIComponent pins the encoding to what JavaScript's
// encodeURIComponent gives, with ' as %27.
func TestSafelyEncodeURIComponent(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a b+c", "a%20b%2Bc"},
		{"!'()*~-_.", "!%27()*~-_."},
		{`{"type":"x"}`, "%7B%22type%22%3A%22x%22%7D"},
		{"https://app.example:3000/a?b=c&d=%", "https%3A%2F%2Fapp.example%3A3000%2Fa%3Fb%3Dc%26d%3D%25"},
		{"é\u2028</script>", "%C3%A9%E2%80%A8%3C%2Fscript%3E"},
	}
	for _, tt := range tests {
		if got := safelyEncodeURIComponent(tt.in); got != tt.want {
			t.Errorf("safelyEncodeURIComponent(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestSafelyEncodeURIComponentEveryByte: every byte, alone and among
// others, encodes as url.QueryEscape with encodeURIComponent's exceptions
// (space as %20, !()*~ kept, ' as %27), the former two-pass encoding; and
// one allocation does for a sign-in response's size.
func TestSafelyEncodeURIComponentEveryByte(t *testing.T) {
	former := strings.NewReplacer("+", "%20", "%21", "!", "%28", "(", "%29", ")", "%2A", "*", "%7E", "~", "'", "%27")
	var all strings.Builder
	for c := range 256 {
		s := string([]byte{byte(c)})
		all.WriteString(s + "x" + s)
		if got, want := safelyEncodeURIComponent(s), former.Replace(url.QueryEscape(s)); got != want {
			t.Errorf("byte %#x: %q, want %q", c, got, want)
		}
	}
	if got, want := safelyEncodeURIComponent(all.String()), former.Replace(url.QueryEscape(all.String())); got != want {
		t.Errorf("all bytes: %q, want %q", got, want)
	}
	long := strings.Repeat(`{"token":"eyJhbGciOiJFUzI1NiJ9.e30.sig","email":"a b@example.com"}`, 30)
	if n := testing.AllocsPerRun(100, func() { safelyEncodeURIComponent(long) }); n != 1 {
		t.Errorf("%v allocations to encode %d bytes, want 1", n, len(long))
	}
}

func BenchmarkWriteWebMessage(b *testing.B) {
	msg := webMessage{Type: "authorization_response", Response: &authResponse{}}
	b.ReportAllocs()
	for b.Loop() {
		writeWebMessage(httptest.NewRecorder(), "https://backstage.example.com", msg)
	}
}
