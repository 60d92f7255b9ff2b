package server

import (
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

// Planted copies are cleared host-only and on every parent domain up to
// the registrable one, never on a public suffix.
func TestClearPlantedDomains(t *testing.T) {
	for _, tc := range []struct {
		callback string
		want     []string
	}{
		{"https://auth.a.example.co.uk/api/auth/spectrocloud/handler/frame", []string{"", "auth.a.example.co.uk", "a.example.co.uk", "example.co.uk"}},
		{"http://127.0.0.1:7007/api/auth/spectrocloud/handler/frame", []string{""}},
	} {
		j, err := newCookieJar("spectrocloud", tc.callback, "https://app.example.co.uk", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		j.clearPlanted(w, "")
		var domains []string
		for _, c := range w.Result().Cookies() {
			if c.Name == j.refreshName && c.Path == j.path && !slices.Contains(domains, c.Domain) {
				domains = append(domains, c.Domain)
			}
			if c.MaxAge >= 0 {
				t.Fatalf("%s is set, not cleared", c)
			}
		}
		if !slices.Equal(domains, tc.want) {
			t.Errorf("%s: cleared on domains %q, want %q", tc.callback, domains, tc.want)
		}
	}
}
