// Package demo serves the small page at / that `make run` points newcomers
// to: sign in with SpectroCloud through the popup, exactly as a Backstage app
// does, and see the profile, the Backstage identity and the ID token claims.
package demo

import (
	"embed"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the page and its script.
func Handler() http.Handler {
	mux := http.NewServeMux()
	serve := func(name, contentType string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			b, err := static.ReadFile("static/" + name)
			if err != nil {
				http.NotFound(w, nil)
				return
			}
			h := w.Header()
			h.Set("Content-Type", contentType)
			h.Set("Content-Security-Policy", "default-src 'self'; img-src * data:; style-src 'self'; frame-ancestors 'none'")
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Cache-Control", "no-cache")
			_, _ = w.Write(b)
		}
	}
	mux.HandleFunc("GET /{$}", serve("index.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET /demo.js", serve("demo.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET /demo.css", serve("demo.css", "text/css; charset=utf-8"))
	return mux
}
