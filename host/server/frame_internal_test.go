package server

import (
	"net/http/httptest"
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

func BenchmarkWriteWebMessage(b *testing.B) {
	msg := webMessage{Type: "authorization_response", Response: &authResponse{}}
	b.ReportAllocs()
	for b.Loop() {
		writeWebMessage(httptest.NewRecorder(), "https://backstage.example.com", msg)
	}
}
