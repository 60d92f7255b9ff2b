package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
)

// encodeURIComponent is the frame page's former encoding, the oracle of
// these tests: url.QueryEscape with encodeURIComponent's exceptions (space
// as %20, !()*~ kept) and ' as %27.
func encodeURIComponent(s string) string {
	return strings.NewReplacer("+", "%20", "%21", "!", "%28", "(", "%29", ")", "%2A", "*", "%7E", "~", "'", "%27").
		Replace(url.QueryEscape(s))
}

// TestAppendURIComponent pins the encoding to what JavaScript's
// encodeURIComponent gives, with ' as %27.
func TestAppendURIComponent(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a b+c", "a%20b%2Bc"},
		{"!'()*~-_.", "!%27()*~-_."},
		{`{"type":"x"}`, "%7B%22type%22%3A%22x%22%7D"},
		{"https://app.example:3000/a?b=c&d=%", "https%3A%2F%2Fapp.example%3A3000%2Fa%3Fb%3Dc%26d%3D%25"},
		{"é\u2028</script>", "%C3%A9%E2%80%A8%3C%2Fscript%3E"},
	}
	for _, tt := range tests {
		if got := string(appendURIComponent([]byte("x"), tt.in)); got != "x"+tt.want {
			t.Errorf("appendURIComponent(%q) = %q, want %q", tt.in, got, "x"+tt.want)
		}
		if got := uriComponentLen(tt.in); got != len(tt.want) {
			t.Errorf("uriComponentLen(%q) = %d, want %d", tt.in, got, len(tt.want))
		}
	}
	// Every byte, alone and among others, as the former encoding.
	var all strings.Builder
	for c := range 256 {
		s := string([]byte{byte(c)})
		all.WriteString(s + "x" + s)
		if got, want := string(appendURIComponent(nil, []byte(s))), encodeURIComponent(s); got != want {
			t.Errorf("byte %#x: %q, want %q", c, got, want)
		}
	}
	if got, want := string(appendURIComponent(nil, all.String())), encodeURIComponent(all.String()); got != want {
		t.Errorf("all bytes: %q, want %q", got, want)
	}
}

// TestWriteWebMessagePage: the page and its CSP hash are byte for byte what
// the former string concatenation made, and building it takes the JSON
// encoding and one buffer, however long the response.
func TestWriteWebMessagePage(t *testing.T) {
	token := strings.Repeat("eyJhbGciOiJFUzI1NiJ9", 60)
	for _, tc := range []struct {
		name, origin string
		msg          webMessage
	}{
		{"response", "https://backstage.example.com:3000", webMessage{Type: "authorization_response", Response: &authResponse{}}},
		{"error", "http://localhost:3000", webMessage{Type: "authorization_response", Error: &backstageerr.Detail{Name: "Error", Message: "it's <b>bad</b> & 'quoted' é"}}},
		{"long", "https://a.example", webMessage{Type: token}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			writeWebMessage(rec, tc.origin, tc.msg)
			data, err := json.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			script := `
    var authResponse = decodeURIComponent('` + encodeURIComponent(string(data)) + `');
    var origin = decodeURIComponent('` + encodeURIComponent(tc.origin) + `');
    var originInfo = {'type': 'config_info', 'targetOrigin': origin};
    (window.opener || window.parent).postMessage(originInfo, '*');
    (window.opener || window.parent).postMessage(JSON.parse(authResponse), origin);
    setTimeout(() => {
      window.close();
    }, 100); // same as the interval of the core-app-api lib/loginPopup.ts (to address race conditions)
  `
			if got, want := rec.Body.String(), "<html><body><script>"+script+"</script></body></html>"; got != want {
				t.Errorf("page:\n%s\nwant:\n%s", got, want)
			}
			sum := sha256.Sum256([]byte(script))
			if got, want := rec.Header().Get("Content-Security-Policy"), "script-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'"; got != want {
				t.Errorf("CSP = %q, want %q", got, want)
			}
		})
	}
	if raceEnabled {
		return
	}
	msg := webMessage{Type: token}
	marshal := testing.AllocsPerRun(50, func() { _, _ = json.Marshal(msg) })
	rec := httptest.NewRecorder()
	page := testing.AllocsPerRun(50, func() {
		rec.Body.Reset()
		writeWebMessage(rec, "https://a.example", msg)
	})
	// Beyond the JSON: the page buffer, and the headers' small values (four
	// Sets, the CSP's hash and string, the recorder's copy of the header);
	// the former concatenation took six more, each the page's size.
	if page-marshal > 8 {
		t.Errorf("writeWebMessage allocates %v times, the JSON encoding %v: the page takes more than one buffer", page, marshal)
	}
}

func BenchmarkWriteWebMessage(b *testing.B) {
	msg := webMessage{Type: "authorization_response", Response: &authResponse{}}
	b.ReportAllocs()
	for b.Loop() {
		writeWebMessage(httptest.NewRecorder(), "https://backstage.example.com", msg)
	}
}
