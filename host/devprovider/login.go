package devprovider

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"sync"
)

// loginPage lists the users as buttons. Each form carries the
// authorization request ID and a token bound to it with an HMAC key only the
// provider knows, so another site cannot complete a login (CSRF). Parsed on
// first use, not at every start of the daemon.
var loginPage = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Development OpenID provider — not for production</title>
<style>
body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}
.warn{background:#fde68a;border:2px solid #b45309;padding:.75rem 1rem;font-weight:bold}
button{display:block;width:100%;text-align:left;margin:.5rem 0;padding:.75rem;font-size:1rem;cursor:pointer}
small{color:#555}
</style></head><body>
<p class="warn" role="alert">Development OpenID provider — not for production. Anyone who can reach this page can sign in as any user below, without a password.</p>
<h1>Sign in as</h1>
<form method="post" action="{{.Action}}">
<input type="hidden" name="authRequestID" value="{{.AuthRequestID}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
{{range .Users}}<button type="submit" name="username" value="{{.Username}}"><strong>{{if .Name}}{{.Name}}{{else}}{{.Username}}{{end}}</strong>
<small>{{.Username}}{{if .Email}} · {{.Email}}{{end}}{{if .Groups}} · groups: {{range $i, $g := .Groups}}{{if $i}}, {{end}}{{$g}}{{end}}{{end}}</small></button>
{{end}}</form>
</body></html>
`))
})

var loggedOutPage = []byte(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signed out — development OpenID provider</title></head>
<body><p>You are signed out of the development OpenID provider (not for production).</p></body></html>
`)

func setPageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// Not no-referrer: under it Chromium sends "Origin: null" with the login
	// form's POST, which the origin check below must refuse.
	h.Set("Referrer-Policy", "same-origin")
	// No form-action: after the POST the browser is redirected to the
	// relying party, and browsers apply form-action to that redirect too.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
}

func serveLoggedOut(w http.ResponseWriter) {
	setPageHeaders(w)
	_, _ = w.Write(loggedOutPage)
}

func (p *Provider) csrfToken(authRequestID string) string {
	m := hmac.New(sha256.New, p.csrfKey)
	m.Write([]byte("devprovider-login\x00" + authRequestID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (p *Provider) serveLogin(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		id := r.URL.Query().Get("authRequestID")
		if _, err := p.st.AuthRequestByID(r.Context(), id); err != nil {
			http.Error(w, "unknown or expired authorization request; start the sign-in again", http.StatusBadRequest)
			return
		}
		if u := p.selectedUser(); u != "" {
			p.completeLogin(w, r, id, u)
			return
		}
		setPageHeaders(w)
		_ = loginPage().Execute(w, map[string]any{
			"Action":        p.cfg.Issuer + loginPath,
			"AuthRequestID": id,
			"CSRF":          p.csrfToken(id),
			"Users":         p.cfg.Users,
		})
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "cannot parse form", http.StatusBadRequest)
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" && origin != p.issuerOrigin() {
			http.Error(w, "cross-origin login refused", http.StatusForbidden)
			return
		}
		id := r.PostForm.Get("authRequestID")
		got := r.PostForm.Get("csrf")
		if id == "" || !hmac.Equal([]byte(got), []byte(p.csrfToken(id))) {
			http.Error(w, "invalid login form; start the sign-in again", http.StatusForbidden)
			return
		}
		p.completeLogin(w, r, id, r.PostForm.Get("username"))
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (p *Provider) issuerOrigin() string {
	u, _ := url.Parse(p.cfg.Issuer) // validated in New
	return u.Scheme + "://" + u.Host
}
