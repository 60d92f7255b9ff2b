package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// A refusal in the provider's refresh answer ends the session while its ID
// token is still valid: 401, cookies cleared, upstream revoked, counted.
// Only an unavailable provider lets the current tokens be served.
func TestRefusedRefreshEndsSession(t *testing.T) {
	for _, refusal := range []error{
		fmt.Errorf("upstream: refreshing tokens: %w: go-oidc: failed to verify signature", upstream.ErrInvalidIDToken),
		fmt.Errorf("upstream: refreshing tokens: %w: the refreshed ID token names another subject than the session", upstream.ErrInvalidIDToken),
		&upstream.TokenError{Op: "refreshing tokens", StatusCode: http.StatusBadRequest, Code: "invalid_grant"},
	} {
		t.Run(refusal.Error(), func(t *testing.T) {
			f := newFakeFixture(t)
			b, handle := f.signIn()
			f.Advance(57 * time.Minute) // within the margin, the ID token still valid
			f.up.setBlock(func(context.Context) error { return refusal })
			res, err := f.refreshCtx(context.Background(), b)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != http.StatusUnauthorized || !clearsSessionCookie(res) {
				t.Fatalf("refresh refused by the provider: %d (cookie cleared %v), want 401 and the cookie cleared", res.StatusCode, clearsSessionCookie(res))
			}
			f.up.setBlock(nil)
			if got := f.refresh(f.browserWithHandle(handle)); got != http.StatusUnauthorized {
				t.Fatalf("the session outlived the refusal: %d", got)
			}
			f.up.mu.Lock()
			revoked := len(f.up.revoked)
			f.up.mu.Unlock()
			if revoked != 1 {
				t.Errorf("upstream revocations = %d, want 1", revoked)
			}
			if got := f.endedCount(lifecycle.EndRefused); got != 1 {
				t.Errorf("sessions ended as refused = %d, want 1", got)
			}
		})
	}
}

// An unavailable provider (5xx, transport, timeout) is no verdict: the
// current tokens are served while valid, and the provider is asked once
// per backoff, not on every /refresh.
func TestOutageServesCurrentTokens(t *testing.T) {
	for _, outage := range []error{
		&upstream.TokenError{Op: "refreshing tokens", StatusCode: http.StatusBadGateway},
		&url.Error{Op: "Post", URL: "https://op.invalid/token", Err: errors.New("connection refused")},
		fmt.Errorf("upstream: refreshing tokens: %w", context.DeadlineExceeded),
	} {
		t.Run(outage.Error(), func(t *testing.T) {
			f := newFakeFixture(t)
			b, _ := f.signIn()
			f.Advance(57 * time.Minute)
			f.up.setBlock(func(context.Context) error { return outage })
			before := f.up.providerCalls()
			for i := range 10 {
				if got := f.refresh(b); got != http.StatusOK {
					t.Fatalf("refresh %d during an outage with valid tokens: %d, want 200", i, got)
				}
			}
			if got := f.up.providerCalls() - before; got != 1 {
				t.Fatalf("provider calls during the outage = %d, want 1", got)
			}
			if got := f.endedCount(lifecycle.EndRefused); got != 0 {
				t.Fatalf("an outage ended %d sessions", got)
			}
		})
	}
}

// A token endpoint that rejects the daemon's own client credentials
// (invalid_client, unauthorized_client) says nothing about the user: the
// session is served its current tokens while valid, asked again after the
// backoff, and the rejection is counted and logged at ERROR.
func TestClientRejectedIsNoRefusal(t *testing.T) {
	for _, code := range []string{"invalid_client", "unauthorized_client"} {
		t.Run(code, func(t *testing.T) {
			var logs strings.Builder
			var rejected []string
			f := newFakeFixture(t, withServerConfig(func(c *server.Config) {
				c.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})
				c.ClientRejected = func(env string) { rejected = append(rejected, env) }
			}))
			b, handle := f.signIn()
			f.Advance(57 * time.Minute) // within the margin, the ID token still valid
			f.up.setBlock(func(context.Context) error {
				return &upstream.TokenError{Op: "refreshing tokens", StatusCode: http.StatusUnauthorized, Code: code}
			})
			before := f.up.providerCalls()
			for i := range 5 {
				if got := f.refresh(b); got != http.StatusOK {
					t.Fatalf("refresh %d with the client rejected: %d, want 200 (current tokens served)", i, got)
				}
			}
			if got := f.up.providerCalls() - before; got != 1 {
				t.Errorf("provider calls = %d, want 1 (then the outage backoff)", got)
			}
			if got := f.endedCount(lifecycle.EndRefused); got != 0 {
				t.Errorf("a rejected client ended %d sessions", got)
			}
			if len(rejected) != 1 || rejected[0] != "development" {
				t.Errorf("ClientRejected reports = %v, want [development]", rejected)
			}
			if !strings.Contains(logs.String(), "[ERROR]") || !strings.Contains(logs.String(), "clientSecret") {
				t.Errorf("no ERROR line naming the client credentials:\n%s", logs.String())
			}
			f.up.setBlock(nil)
			f.Advance(time.Minute) // past the backoff, the secret fixed
			if got := f.refresh(f.browserWithHandle(handle)); got != http.StatusOK {
				t.Fatalf("refresh once the client is accepted again: %d, want 200", got)
			}
		})
	}
}

// A user disabled upstream loses the session within revalidateInterval,
// however long the ID token lives; meanwhile /refresh costs no provider
// call, and each interval costs one.
func TestRevokedUpstreamLosesSessionWithinInterval(t *testing.T) {
	for _, tc := range []struct {
		name    string
		upOpts  func(*fakeUpstream)
		grantOK bool
	}{
		{"refresh grant", func(u *fakeUpstream) { u.idTTL = 72 * time.Hour }, true},
		{"userinfo without a refresh grant", func(u *fakeUpstream) { u.idTTL = 72 * time.Hour; u.noRefresh = true }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeFixture(t, tc.upOpts)
			b, _ := f.signIn()
			// An hour of refreshes every 30 s: four provider calls.
			for range 120 {
				f.Advance(30 * time.Second)
				if got := f.refresh(b); got != http.StatusOK {
					t.Fatalf("refresh: %d", got)
				}
			}
			if got := f.up.providerCalls(); got != 4 {
				t.Fatalf("provider calls in a session-hour = %d, want 4 (one per 15m interval)", got)
			}
			f.up.disableUser()
			answered := 0
			for range 30 { // 15 minutes
				f.Advance(30 * time.Second)
				if f.refresh(b) == http.StatusOK {
					answered++
				} else {
					break
				}
			}
			if answered >= 30 {
				t.Fatal("a user disabled upstream kept the session past revalidateInterval")
			}
			if got := f.endedCount(lifecycle.EndRefused); got != 1 {
				t.Errorf("sessions ended as refused = %d, want 1", got)
			}
			if got := f.up.providerCalls(); got != 5 {
				t.Errorf("provider calls = %d, want 5", got)
			}
		})
	}
}

// Without a refresh grant or userinfo, nothing can be asked: the session
// ends with its ID token, and revalidation costs no call per /refresh.
func TestSessionWithoutGrantEndsWithIDToken(t *testing.T) {
	f := newFakeFixture(t, func(u *fakeUpstream) { u.noRefresh, u.noUserinfo, u.idTTL = true, true, 40*time.Minute })
	b, _ := f.signIn()
	for range 39 {
		f.Advance(time.Minute)
		if got := f.refresh(b); got != http.StatusOK {
			t.Fatalf("refresh before the ID token expired: %d", got)
		}
	}
	f.Advance(2 * time.Minute)
	if got := f.refresh(b); got != http.StatusUnauthorized {
		t.Fatalf("refresh after the ID token expired: %d, want 401", got)
	}
}

// Against the real OpenID provider: a refresh token revoked at the provider
// ends the session at the next revalidation, within revalidateInterval,
// although the ID token would live for hours; the /refresh calls before it
// cost the provider nothing.
func TestRevokedAtProviderEndsSessionAfterInterval(t *testing.T) {
	f := newFixture(t, fixtureOptions{RefreshTokens: true, IDTokenTTL: 12 * time.Hour})
	b := newBrowser(t)
	token := signIn(t, f, b)["backstageIdentity"].(map[string]any)["token"].(string)
	f.OP.ResetCounters()
	for range 10 {
		f.Advance(time.Minute)
		if r := refresh(b, f); r.StatusCode != http.StatusOK {
			t.Fatalf("refresh: %d", r.StatusCode)
		}
	}
	if c := f.OP.Counters(); c.Refresh != 0 {
		t.Fatalf("provider refreshes within the interval = %d, want 0", c.Refresh)
	}

	// Revoke the session's refresh token at the provider.
	u, _ := url.Parse(f.URL("/api/auth/spectrocloud"))
	var handle string
	for _, c := range b.Client.Jar.Cookies(u) {
		if c.Name == "spectrocloud-refresh-token" {
			handle = c.Value
		}
	}
	key, err := session.KeyOf(handle)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := f.Sessions.Get(context.Background(), key)
	if err != nil || sess.Upstream.RefreshToken == "" {
		t.Fatalf("session: %v (refresh token present: %v)", err, sess != nil && sess.Upstream.RefreshToken != "")
	}
	req, _ := http.NewRequest(http.MethodPost, f.OP.Issuer()+"/revoke",
		strings.NewReader(url.Values{"token": {sess.Upstream.RefreshToken}, "token_type_hint": {"refresh_token"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("revoking at the provider: %v %v", err, res)
	}
	res.Body.Close()

	f.Advance(6 * time.Minute) // 16 minutes since sign-in: revalidation is due
	// Cluster credentials go through the same session: refused too.
	if _, err := f.Server.UserSession(context.Background(), token); !errors.Is(err, server.ErrSessionEnded) {
		t.Fatalf("user session (cluster credentials) after revocation upstream: %v, want ErrSessionEnded", err)
	}
	if r := refresh(b, f); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("refresh after revocation upstream and the interval: %d, want 401", r.StatusCode)
	}
	if c := f.OP.Counters(); c.Refresh != 1 {
		t.Errorf("provider refreshes = %d, want 1", c.Refresh)
	}
	if _, err := f.Sessions.Get(context.Background(), key); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("the session is still stored: %v", err)
	}
}
