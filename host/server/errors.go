package server

import (
	"net/http"

	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
)

// writeError answers with Backstage's error body (see backstageerr). Causes
// are logged, never sent.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := backstageerr.As(err)
	if ae.Status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	} else {
		s.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", ae.Status, "error", err)
	}
	backstageerr.Write(w, r, ae)
}
