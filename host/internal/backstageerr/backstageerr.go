// Package backstageerr answers HTTP requests the way Backstage's own backends
// answer errors, so Backstage's clients react to the daemon's refusals as they
// do to Backstage's:
//
//	{"error":    {"name": "NotAllowedError", "message": "…"},
//	 "request":  {"method": "GET", "url": "/api/auth/…"},
//	 "response": {"statusCode": 403}}
//
// An *Error carries the status, Backstage's name for the kind of error, the
// message sent to the caller and an optional cause. The cause is for the log
// only: it may carry upstream detail a browser has no business seeing, so
// Write never sends it. Anything that is not an *Error is a 500 "internal
// error" (see As).
package backstageerr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Backstage's names of the error kinds the daemon answers.
const (
	NameInput              = "InputError"              // 400
	NameAuthentication     = "AuthenticationError"     // 401
	NameNotAllowed         = "NotAllowedError"         // 403
	NameNotFound           = "NotFoundError"           // 404
	NameServiceUnavailable = "ServiceUnavailableError" // 503
	NameError              = "Error"                   // any other failure
)

// Error is an answer in Backstage's error shape.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Name is Backstage's name of the error kind, e.g. NameNotAllowed.
	Name string
	// Message is what the caller reads.
	Message string
	// Cause is logged, never sent. It may be nil.
	Cause error
}

// New returns an Error; cause may be nil.
func New(status int, name, message string, cause error) *Error {
	return &Error{Status: status, Name: name, Message: message, Cause: cause}
}

// Input is a 400 InputError: the request is malformed.
func Input(format string, a ...any) *Error {
	return New(http.StatusBadRequest, NameInput, fmt.Sprintf(format, a...), nil)
}

// Authentication is a 401 AuthenticationError: the caller is not (or no
// longer) signed in.
func Authentication(format string, a ...any) *Error {
	return New(http.StatusUnauthorized, NameAuthentication, fmt.Sprintf(format, a...), nil)
}

// NotAllowed is a 403 NotAllowedError: the caller may not do this.
func NotAllowed(format string, a ...any) *Error {
	return New(http.StatusForbidden, NameNotAllowed, fmt.Sprintf(format, a...), nil)
}

// NotFound is a 404 NotFoundError.
func NotFound(format string, a ...any) *Error {
	return New(http.StatusNotFound, NameNotFound, fmt.Sprintf(format, a...), nil)
}

// WithCause returns a copy of e whose cause is err.
func (e *Error) WithCause(err error) *Error {
	c := *e
	c.Cause = err
	return &c
}

// Error is the message, followed by the cause when there is one.
func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Message + ": " + e.Cause.Error()
	}
	return e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// As classifies err: the first *Error in its chain, or else a 500 "internal
// error" whose cause is err, so that its details stay in the log.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return New(http.StatusInternalServerError, NameError, "internal error", err)
}

// Body is Backstage's error response shape.
type Body struct {
	Error    Detail   `json:"error"`
	Request  Request  `json:"request"`
	Response Response `json:"response"`
}

// Detail is the "error" member of Body: what went wrong, for people. The
// sign-in popup's failure message carries it too.
type Detail struct {
	Name    string `json:"name"`
	Message string `json:"message"`
}

// Request is the "request" member of Body: the request that failed.
type Request struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

// Response is the "response" member of Body.
type Response struct {
	StatusCode int `json:"statusCode"`
}

// Write answers r with err (classified by As) in Backstage's error body. The
// cause is not sent; logging it is the caller's job.
func Write(w http.ResponseWriter, r *http.Request, err error) {
	e := As(err)
	WriteJSON(w, e.Status, Body{
		Error:    Detail{Name: e.Name, Message: e.Message},
		Request:  Request{Method: r.Method, URL: r.URL.Path},
		Response: Response{StatusCode: e.Status},
	})
}

// WriteJSON answers with v as JSON, never cached. If v cannot be encoded the
// answer is a plain 500.
func WriteJSON(w http.ResponseWriter, status int, v any) {
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
