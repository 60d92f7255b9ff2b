package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
)

// webMessage is what the frame page posts to the app.
type webMessage struct {
	Type     string               `json:"type"`
	Response *authResponse        `json:"response,omitempty"`
	Error    *backstageerr.Detail `json:"error,omitempty"`
}

// safelyEncodeURIComponent matches JavaScript's encodeURIComponent, plus '
// escaped as %27 so the value can sit inside a single-quoted string.
func safelyEncodeURIComponent(s string) string {
	return uriComponentFixups.Replace(url.QueryEscape(s))
}

// uriComponentFixups turns url.QueryEscape's output into
// encodeURIComponent's: space is %20 (QueryEscape writes "+", and a literal
// "+" as %2B), and !()*~ stay as they are; ' becomes %27 (QueryEscape
// already escapes it; kept so the literal can never end the JavaScript
// string). The patterns do not overlap, so one pass equals the former
// sequence of replacements. Built once: a Replacer builds its lookup
// tables, which cost more than the replacing itself, on every sign-in.
var uriComponentFixups = strings.NewReplacer(
	"+", "%20",
	"%21", "!", "%28", "(", "%29", ")", "%2A", "*", "%7E", "~",
	"'", "%27",
)

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
