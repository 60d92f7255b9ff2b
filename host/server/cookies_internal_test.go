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
		j, err := newCookieJar("spectrocloud", tc.callback, "https://app.example.co.uk", time.Hour, false)
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

// With HostPrefixedCookies the cookies are __Host- names on Path=/, Secure,
// host-only: what browsers require of them, so no other host can set one.
func TestHostPrefixedCookies(t *testing.T) {
	if _, err := newCookieJar("spectrocloud", "http://auth.example.com/api/auth/spectrocloud/handler/frame", "https://app.example.com", time.Hour, true); err == nil {
		t.Fatal("__Host- cookies accepted over http")
	}
	j, err := newCookieJar("spectrocloud", "https://auth.example.com/api/auth/spectrocloud/handler/frame", "https://app.example.com", time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	j.setNonce(w, "n", "")
	j.setSession(w, "handle", "openid", "")
	names := map[string]bool{}
	for _, c := range w.Result().Cookies() {
		names[c.Name] = true
		if c.Path != "/" || !c.Secure || c.Domain != "" || !c.HttpOnly {
			t.Errorf("%s: path %q secure %v domain %q", c.Name, c.Path, c.Secure, c.Domain)
		}
	}
	for _, n := range []string{"__Host-spectrocloud-nonce", "__Host-spectrocloud-refresh-token", "__Host-spectrocloud-granted-scope"} {
		if !names[n] {
			t.Errorf("no cookie %s among %v", n, names)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", "__Host-spectrocloud-refresh-token=h; spectrocloud-refresh-token=planted")
	if handles, dup := j.sessionHandles(r); dup || len(handles) != 1 || handles[0] != "h" {
		t.Errorf("sessionHandles = %v, %v", handles, dup)
	}
}
