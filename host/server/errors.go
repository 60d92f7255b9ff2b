package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// apiError is one of Backstage's error kinds; its name and status are what
// Backstage's own backends send, so Backstage's clients react the same way.
type apiError struct {
	status  int
	name    string
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

func inputError(format string, a ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, name: "InputError", message: fmt.Sprintf(format, a...)}
}

func authenticationError(format string, a ...any) *apiError {
	return &apiError{status: http.StatusUnauthorized, name: "AuthenticationError", message: fmt.Sprintf(format, a...)}
}

func notAllowedError(format string, a ...any) *apiError {
	return &apiError{status: http.StatusForbidden, name: "NotAllowedError", message: fmt.Sprintf(format, a...)}
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
	return &apiError{status: http.StatusInternalServerError, name: "Error", message: "internal error", cause: err}
}

// errorBody is Backstage's error response shape.
type errorBody struct {
	Error    errorDetail     `json:"error"`
	Request  errorRequest    `json:"request"`
	Response errorStatusCode `json:"response"`
}

type errorDetail struct {
	Name    string `json:"name"`
	Message string `json:"message"`
}

type errorRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type errorStatusCode struct {
	StatusCode int `json:"statusCode"`
}

// writeError answers with Backstage's error body. Causes are logged, never
// sent: they may carry upstream detail a browser has no business seeing.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := asAPIError(err)
	if ae.status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	} else {
		s.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", ae.status, "error", err)
	}
	body := errorBody{
		Error:    errorDetail{Name: ae.name, Message: ae.message},
		Request:  errorRequest{Method: r.Method, URL: r.URL.Path},
		Response: errorStatusCode{StatusCode: ae.status},
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
