package kube

import (
	"errors"
	"net/http"

	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
)

// refusalError is a Backstage error answer that also carries the audit
// reason of a refused credential. It wraps the answer, so backstageerr.As
// finds it.
type refusalError struct {
	reason string
	answer *backstageerr.Error
}

func (e *refusalError) Error() string { return e.answer.Error() }
func (e *refusalError) Unwrap() error { return e.answer }

func refusal(status int, name, reason, message string, cause error) *refusalError {
	return &refusalError{reason: reason, answer: backstageerr.New(status, name, message, cause)}
}

// auditReason is the audit reason of err: a refusal's own, or
// ReasonInternalError for any other error.
func auditReason(err error) string {
	var re *refusalError
	if errors.As(err, &re) {
		return re.reason
	}
	return ReasonInternalError
}

// writeError answers with Backstage's error body; causes go to the log only.
func (b *Broker) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := backstageerr.As(err)
	if ae.Status >= 500 {
		b.log.Error("kubernetes request failed", "method", r.Method, "path", r.URL.Path, "status", ae.Status, "error", err)
	} else {
		b.log.Debug("kubernetes request refused", "method", r.Method, "path", r.URL.Path, "status", ae.Status, "error", err)
	}
	if ae.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="spectroauth"`)
	}
	backstageerr.Write(w, r, ae)
}
