package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
)

// webMessage is what the frame page posts to the app.
type webMessage struct {
	Type     string               `json:"type"`
	Response *authResponse        `json:"response,omitempty"`
	Error    *backstageerr.Detail `json:"error,omitempty"`
}

// safelyEncodeURIComponent matches JavaScript's encodeURIComponent on UTF-8
// (every byte but A-Z a-z 0-9 - _ . ! ~ * ( ) as %XX, upper-case hex), and
// so escapes ' as %27: the value can sit inside a single-quoted string. One
// pass and one allocation: it encodes the whole sign-in response, Backstage
// token included, on every sign-in.
func safelyEncodeURIComponent(s string) string {
	escapes := 0
	for i := 0; i < len(s); i++ {
		if !uriComponentKeeps(s[i]) {
			escapes++
		}
	}
	if escapes == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 2*escapes)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if uriComponentKeeps(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// uriComponentKeeps reports whether encodeURIComponent leaves c as it is.
func uriComponentKeeps(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', '!', '~', '*', '(', ')':
		return true
	}
	return false
}

// writeWebMessage answers the popup with the page Backstage's frame handler
// sends: a script that tells the opener the target origin, posts the result
// to that origin only, and closes the window. The CSP allows exactly that
// script, by hash.
func writeWebMessage(w http.ResponseWriter, targetOrigin string, msg webMessage) {
	data, err := json.Marshal(msg)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	script := `
    var authResponse = decodeURIComponent('` + safelyEncodeURIComponent(string(data)) + `');
    var origin = decodeURIComponent('` + safelyEncodeURIComponent(targetOrigin) + `');
    var originInfo = {'type': 'config_info', 'targetOrigin': origin};
    (window.opener || window.parent).postMessage(originInfo, '*');
    (window.opener || window.parent).postMessage(JSON.parse(authResponse), origin);
    setTimeout(() => {
      window.close();
    }, 100); // same as the interval of the core-app-api lib/loginPopup.ts (to address race conditions)
  `
	sum := sha256.Sum256([]byte(script))
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Frame-Options", "sameorigin")
	h.Set("Content-Security-Policy", "script-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("<html><body><script>" + script + "</script></body></html>"))
}
