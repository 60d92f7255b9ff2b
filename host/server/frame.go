package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"

	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
)

// webMessage is what the frame page posts to the app.
type webMessage struct {
	Type     string               `json:"type"`
	Response *authResponse        `json:"response,omitempty"`
	Error    *backstageerr.Detail `json:"error,omitempty"`
}

// appendURIComponent appends s encoded as JavaScript's encodeURIComponent
// encodes UTF-8 (every byte but A-Z a-z 0-9 - _ . ! ~ * ( ) as %XX,
// upper-case hex), which escapes ' as %27: the value can sit inside a
// single-quoted string.
func appendURIComponent[T string | []byte](dst []byte, s T) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if uriComponentKeeps(c) {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&0xf])
	}
	return dst
}

// uriComponentLen is the length of s encoded by appendURIComponent.
func uriComponentLen[T string | []byte](s T) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if !uriComponentKeeps(s[i]) {
			n += 2
		}
	}
	return n
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

// The frame page around its two encoded values. The script, from
// frameScriptStart to frameScriptEnd, is what the CSP allows by hash.
const (
	framePageStart   = "<html><body><script>"
	frameScriptStart = `
    var authResponse = decodeURIComponent('`
	frameScriptMiddle = `');
    var origin = decodeURIComponent('`
	frameScriptEnd = `');
    var originInfo = {'type': 'config_info', 'targetOrigin': origin};
    (window.opener || window.parent).postMessage(originInfo, '*');
    (window.opener || window.parent).postMessage(JSON.parse(authResponse), origin);
    setTimeout(() => {
      window.close();
    }, 100); // same as the interval of the core-app-api lib/loginPopup.ts (to address race conditions)
  `
	framePageEnd = "</script></body></html>"
)

// writeWebMessage answers the popup with the page Backstage's frame handler
// sends: a script that tells the opener the target origin, posts the result
// to that origin only, and closes the window. The CSP allows exactly that
// script, by hash. The page, which holds the whole sign-in response, is
// built in one buffer of its exact size: every sign-in writes one.
func writeWebMessage(w http.ResponseWriter, targetOrigin string, msg webMessage) {
	data, err := json.Marshal(msg)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	size := len(framePageStart) + len(frameScriptStart) + uriComponentLen(data) + len(frameScriptMiddle) +
		uriComponentLen(targetOrigin) + len(frameScriptEnd) + len(framePageEnd)
	page := make([]byte, 0, size)
	page = append(page, framePageStart...)
	script := len(page)
	page = append(page, frameScriptStart...)
	page = appendURIComponent(page, data)
	page = append(page, frameScriptMiddle...)
	page = appendURIComponent(page, targetOrigin)
	page = append(page, frameScriptEnd...)
	sum := sha256.Sum256(page[script:])
	page = append(page, framePageEnd...)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Frame-Options", "sameorigin")
	h.Set("Content-Security-Policy", "script-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(page)
}
