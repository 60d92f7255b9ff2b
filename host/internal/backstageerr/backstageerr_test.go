package backstageerr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestConstructors(t *testing.T) {
	for _, tc := range []struct {
		err    *Error
		status int
		name   string
	}{
		{Input("bad %s", "x"), http.StatusBadRequest, "InputError"},
		{Authentication("who %s", "x"), http.StatusUnauthorized, "AuthenticationError"},
		{NotAllowed("no %s", "x"), http.StatusForbidden, "NotAllowedError"},
		{NotFound("gone %s", "x"), http.StatusNotFound, "NotFoundError"},
	} {
		if tc.err.Status != tc.status || tc.err.Name != tc.name || !strings.HasSuffix(tc.err.Message, " x") || tc.err.Cause != nil {
			t.Errorf("%+v, want %d %s with a formatted message and no cause", tc.err, tc.status, tc.name)
		}
	}
}

func TestWithCause(t *testing.T) {
	base := NotAllowed("Refused")
	cause := errors.New("upstream detail")
	e := base.WithCause(cause)
	if base.Cause != nil {
		t.Error("WithCause changed its receiver")
	}
	if e.Status != http.StatusForbidden || e.Name != NameNotAllowed || !errors.Is(e, cause) {
		t.Errorf("%+v, want a 403 NotAllowedError wrapping the cause", e)
	}
	if e.Error() != "Refused: upstream detail" || base.Error() != "Refused" {
		t.Errorf("Error() = %q, %q", e.Error(), base.Error())
	}
}

func TestAs(t *testing.T) {
	nf := NotFound("Not found")
	if got := As(fmt.Errorf("wrapped: %w", nf)); got != nf {
		t.Errorf("As(wrapped) = %+v, want the wrapped *Error", got)
	}
	plain := errors.New("disk on fire")
	got := As(plain)
	if got.Status != http.StatusInternalServerError || got.Name != NameError || got.Message != "internal error" || got.Cause != plain {
		t.Errorf("As(plain) = %+v, want a 500 internal error caused by it", got)
	}
}

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		err     error
		status  int
		name    string
		message string
	}{
		{Authentication("Invalid token").WithCause(errors.New("secret detail")), 401, "AuthenticationError", "Invalid token"},
		{errors.New("secret detail"), 500, "Error", "internal error"},
	} {
		w := httptest.NewRecorder()
		Write(w, httptest.NewRequest("POST", "/api/x?q=1", nil), tc.err)
		if w.Code != tc.status {
			t.Errorf("status = %d, want %d", w.Code, tc.status)
		}
		if ct, cc := w.Header().Get("Content-Type"), w.Header().Get("Cache-Control"); ct != "application/json; charset=utf-8" || cc != "no-store" {
			t.Errorf("Content-Type %q, Cache-Control %q", ct, cc)
		}
		if strings.Contains(w.Body.String(), "secret detail") {
			t.Errorf("the cause was sent: %s", w.Body)
		}
		var got map[string]map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]map[string]any{
			"error":    {"name": tc.name, "message": tc.message},
			"request":  {"method": "POST", "url": "/api/x"},
			"response": {"statusCode": float64(tc.status)},
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("body = %v, want %v", got, want)
		}
	}
}

func TestWriteJSONUnencodable(t *testing.T) {
	w := httptest.NewRecorder()
	WriteJSON(w, http.StatusOK, func() {})
	if w.Code != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", w.Code)
	}
}
