package kube

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// apiError is an answer in Backstage's error shape; reason is the audit
// reason of a refused credential.
type apiError struct {
	status  int
	name    string
	reason  string
	message string
	cause   error
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return e.message + ": " + e.cause.Error()
	}
	return e.message
}

func (e *apiError) Unwrap() error { return e.cause }

func refusal(status int, name, reason, message string, cause error) *apiError {
	return &apiError{status: status, name: name, reason: reason, message: message, cause: cause}
}

func notFoundError(format string, a ...any) *apiError {
	return &apiError{status: http.StatusNotFound, name: "NotFoundError", message: fmt.Sprintf(format, a...)}
}

// asAPIError classifies err; anything unclassified is a 500 whose details
// stay in the log.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return &apiError{status: http.StatusInternalServerError, name: "Error", reason: "internal-error", message: "internal error", cause: err}
}

// errorBody is Backstage's error response shape.
type errorBody struct {
	Error struct {
		Name    string `json:"name"`
		Message string `json:"message"`
	} `json:"error"`
	Request struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	} `json:"request"`
	Response struct {
		StatusCode int `json:"statusCode"`
	} `json:"response"`
}

// writeError answers with Backstage's error body; causes go to the log only.
func (b *Broker) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := asAPIError(err)
	if ae.status >= 500 {
		b.log.Error("kubernetes request failed", "method", r.Method, "path", r.URL.Path, "status", ae.status, "error", err)
	} else {
		b.log.Debug("kubernetes request refused", "method", r.Method, "path", r.URL.Path, "status", ae.status, "error", err)
	}
	var body errorBody
	body.Error.Name, body.Error.Message = ae.name, ae.message
	body.Request.Method, body.Request.URL = r.Method, r.URL.Path
	body.Response.StatusCode = ae.status
	if ae.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="spectroauth"`)
	}
	writeJSON(w, ae.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
