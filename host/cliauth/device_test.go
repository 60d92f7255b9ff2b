package cliauth_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/cliauth"
	"github.com/spectroauth/spectroauth/host/internal/authtest"
)

var userCodeFormat = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)

func deviceAuthorization(t *testing.T, f *authtest.Fixture) map[string]any {
	t.Helper()
	res, err := http.PostForm(f.URL("/api/auth/spectrocloud/cli/device_authorization"), url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("device_authorization: %d %v %v", res.StatusCode, m, err)
	}
	return m
}

func devicePoll(t *testing.T, f *authtest.Fixture, deviceCode string) (int, map[string]any) {
	t.Helper()
	return authtest.TokenRequest(t, f, url.Values{"grant_type": {cliauth.DeviceGrantType}, "device_code": {deviceCode}})
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// enterCode opens the verification page in b and posts code.
func enterCode(t *testing.T, f *authtest.Fixture, b *authtest.Browser, code, decision string) *http.Response {
	t.Helper()
	page := b.Get(f.URL("/api/auth/spectrocloud/cli/device"))
	if h := page.Header; h.Get("X-Frame-Options") != "DENY" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("Cache-Control") != "no-store" {
		t.Errorf("verification page headers: %v", h)
	}
	body, _ := io.ReadAll(page.Body)
	m := csrfField.FindSubmatch(body)
	if m == nil {
		t.Fatalf("verification page has no CSRF field: %s", body)
	}
	return b.Post(f.URL("/api/auth/spectrocloud/cli/device"), url.Values{"csrf": {string(m[1])}, "user_code": {code}, "decision": {decision}}, false)
}

// The device authorization grant, driven headlessly: the program asks,
// polls (pending, slow_down), the user enters the code and signs in in
// another browser, the next poll gets the command line's tokens, once.
func TestDeviceFlow(t *testing.T) {
	f := authtest.NewFixture(t, authtest.Options{RefreshTokens: true})
	da := deviceAuthorization(t, f)
	deviceCode, userCode := da["device_code"].(string), da["user_code"].(string)
	if !userCodeFormat.MatchString(userCode) || da["interval"].(float64) != 5 || da["expires_in"].(float64) != 600 ||
		da["verification_uri"] != f.URL("/api/auth/spectrocloud/cli/device") || !strings.Contains(da["verification_uri_complete"].(string), "user_code=") {
		t.Fatalf("device authorization = %v", da)
	}
	if status, body := devicePoll(t, f, deviceCode); status != http.StatusBadRequest || body["error"] != "authorization_pending" {
		t.Fatalf("first poll: %d %v", status, body)
	}
	if status, body := devicePoll(t, f, deviceCode); body["error"] != "slow_down" {
		t.Fatalf("a poll within the interval: %d %v", status, body)
	}
	f.Advance(11 * time.Second) // the interval is now 10 s
	if _, body := devicePoll(t, f, deviceCode); body["error"] != "authorization_pending" {
		t.Fatalf("poll after waiting: %v", body)
	}

	// Typed carelessly: lower case, no dash.
	res := enterCode(t, f, authtest.NewBrowser(t), strings.ToLower(strings.ReplaceAll(userCode, "-", "")), "allow")
	page, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || !strings.Contains(string(page), "signed in as user:default/alice") {
		t.Fatalf("sign-in with the user code: %d %s", res.StatusCode, page)
	}
	f.Advance(11 * time.Second)
	status, tok := devicePoll(t, f, deviceCode)
	if status != http.StatusOK || !strings.HasPrefix(tok["refresh_token"].(string), "scli1.") || tok["user"] != "user:default/alice" {
		t.Fatalf("poll after sign-in: %d %v", status, tok)
	}
	if _, err := f.CLI.Session(context.Background(), tok["access_token"].(string)); err != nil {
		t.Errorf("CLISession(device flow token): %v", err)
	}
	f.Advance(11 * time.Second)
	if status, body := devicePoll(t, f, deviceCode); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("the device code redeemed twice: %d %v", status, body)
	}
	// The user code started one sign-in; it starts no other.
	if res := enterCode(t, f, authtest.NewBrowser(t), userCode, "allow"); res.StatusCode != http.StatusBadRequest {
		t.Errorf("a used user code: %d", res.StatusCode)
	}
}

func TestDeviceFlowRefusals(t *testing.T) {
	f := authtest.NewFixture(t, authtest.Options{})

	t.Run("denied", func(t *testing.T) {
		da := deviceAuthorization(t, f)
		if res := enterCode(t, f, authtest.NewBrowser(t), da["user_code"].(string), "deny"); res.StatusCode != http.StatusOK {
			t.Fatalf("deny: %d", res.StatusCode)
		}
		if _, body := devicePoll(t, f, da["device_code"].(string)); body["error"] != "access_denied" {
			t.Errorf("poll after deny: %v", body)
		}
	})
	t.Run("expired", func(t *testing.T) {
		da := deviceAuthorization(t, f)
		f.Advance(cliauth.DeviceCodeLifetime + time.Second)
		if _, body := devicePoll(t, f, da["device_code"].(string)); body["error"] != "expired_token" {
			t.Errorf("poll after expiry: %v", body)
		}
		if res := enterCode(t, f, authtest.NewBrowser(t), da["user_code"].(string), "allow"); res.StatusCode != http.StatusBadRequest {
			t.Errorf("an expired user code: %d", res.StatusCode)
		}
	})
	t.Run("unknown device code", func(t *testing.T) {
		if status, body := devicePoll(t, f, "made-up"); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("%d %v", status, body)
		}
	})
	t.Run("CSRF", func(t *testing.T) {
		da := deviceAuthorization(t, f)
		b := authtest.NewBrowser(t)
		_ = b.Get(f.URL("/api/auth/spectrocloud/cli/device"))
		for name, fields := range map[string]url.Values{
			"no token":    {"user_code": {da["user_code"].(string)}, "decision": {"allow"}},
			"wrong token": {"csrf": {strings.Repeat("A", 43)}, "user_code": {da["user_code"].(string)}, "decision": {"allow"}},
		} {
			if res := b.Post(f.URL("/api/auth/spectrocloud/cli/device"), fields, true); res.StatusCode != http.StatusForbidden {
				t.Errorf("%s: %d", name, res.StatusCode)
			}
		}
		// Another browser (no cookie) with a token lifted from the page.
		page := authtest.NewBrowser(t).Get(f.URL("/api/auth/spectrocloud/cli/device"))
		body, _ := io.ReadAll(page.Body)
		m := csrfField.FindSubmatch(body)
		if res := authtest.NewBrowser(t).Post(f.URL("/api/auth/spectrocloud/cli/device"), url.Values{"csrf": {string(m[1])}, "user_code": {da["user_code"].(string)}}, true); res.StatusCode != http.StatusForbidden {
			t.Errorf("another browser's token: %d", res.StatusCode)
		}
		// The code still works for its user.
		if res := enterCode(t, f, authtest.NewBrowser(t), da["user_code"].(string), "deny"); res.StatusCode != http.StatusOK {
			t.Errorf("the code after CSRF refusals: %d", res.StatusCode)
		}
	})
	t.Run("attempt limit", func(t *testing.T) {
		f.Advance(11 * time.Minute) // earlier subtests' wrong codes leave the window
		da := deviceAuthorization(t, f)
		b := authtest.NewBrowser(t)
		for i := range 10 {
			if res := enterCode(t, f, b, "BBBB-BBB"+string("BCDFGHJKLM"[i]), "allow"); res.StatusCode != http.StatusBadRequest {
				t.Fatalf("wrong code %d: %d", i, res.StatusCode)
			}
		}
		// The guesser is locked out, even with the right code, and cannot
		// probe codes by denying them either.
		for _, decision := range []string{"allow", "deny"} {
			if res := enterCode(t, f, b, da["user_code"].(string), decision); res.StatusCode != http.StatusTooManyRequests {
				t.Errorf("%s after 10 wrong codes: %d, want 429", decision, res.StatusCode)
			}
		}
	})
}
