package lifecycle

import (
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/session"
)

func TestPolicyUpstreamDue(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := Policy{RefreshMargin: 5 * time.Minute, RevalidateInterval: 15 * time.Minute}
	sess := func(mutate func(*session.Session)) *session.Session {
		s := &session.Session{CreatedAt: t0, Upstream: session.UpstreamTokens{
			RefreshToken: "rt", IDTokenExpiry: t0.Add(72 * time.Hour), AccessTokenExpiry: t0.Add(time.Hour),
		}}
		if mutate != nil {
			mutate(s)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		sess *session.Session
		at   time.Duration // after t0
		want bool
	}{
		{"fresh", sess(nil), time.Minute, false},
		{"just under the interval", sess(nil), 15*time.Minute - time.Second, false},
		{"revalidation due, long-lived ID token", sess(nil), 15 * time.Minute, true},
		{"checked recently", sess(func(s *session.Session) { s.Upstream.CheckedAt = t0.Add(10 * time.Minute) }), 20 * time.Minute, false},
		{"checked an interval ago", sess(func(s *session.Session) { s.Upstream.CheckedAt = t0.Add(10 * time.Minute) }), 25 * time.Minute, true},
		{"ID token within the margin", sess(func(s *session.Session) { s.Upstream.IDTokenExpiry = t0.Add(8 * time.Minute) }), 4 * time.Minute, true},
		{"no refresh grant, within the margin", sess(func(s *session.Session) {
			s.Upstream.RefreshToken, s.Upstream.IDTokenExpiry = "", t0.Add(8*time.Minute)
		}), 4 * time.Minute, false},
		{"no refresh grant, revalidation due", sess(func(s *session.Session) { s.Upstream.RefreshToken = "" }), 16 * time.Minute, true},
		{"refresh kept the ID token, access token fresh", sess(func(s *session.Session) {
			s.Upstream.IDTokenExpiry, s.Upstream.IDTokenNotRenewed, s.Upstream.CheckedAt = t0.Add(8*time.Minute), true, t0.Add(3*time.Minute)
		}), 4 * time.Minute, false},
	} {
		if got := p.UpstreamDue(tc.sess, t0.Add(tc.at)); got != tc.want {
			t.Errorf("%s: UpstreamDue = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Over a session-hour at the default interval, a caller that asks whenever
// UpstreamDue says so (and records the answer) asks four times, however
// often it checks.
func TestPolicyFourCallsPerSessionHour(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := Policy{RefreshMargin: 5 * time.Minute, RevalidateInterval: 15 * time.Minute}
	s := &session.Session{CreatedAt: t0, Upstream: session.UpstreamTokens{RefreshToken: "rt", IDTokenExpiry: t0.Add(72 * time.Hour)}}
	calls := 0
	for now := t0; now.Before(t0.Add(time.Hour)) || now.Equal(t0.Add(time.Hour)); now = now.Add(time.Second) {
		if p.UpstreamDue(s, now) {
			calls++
			s.Upstream.CheckedAt = now
		}
	}
	if calls != 4 {
		t.Fatalf("provider calls in a session-hour = %d, want 4", calls)
	}
}

func TestBackstageStale(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := &session.Session{Backstage: &session.BackstageToken{ExpiresAt: t0.Add(time.Hour)}}
	if BackstageStale(s, time.Hour, t0.Add(29*time.Minute)) || !BackstageStale(s, time.Hour, t0.Add(31*time.Minute)) {
		t.Fatal("the Backstage token is re-issued at half its lifetime")
	}
	if !BackstageStale(&session.Session{}, time.Hour, t0) {
		t.Fatal("a session without a Backstage token needs one")
	}
}

func TestBackoffBounded(t *testing.T) {
	var b Backoff
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range MaxBackoffs + 100 {
		b.Set(session.Key{byte(i), byte(i >> 8), byte(i >> 16)}, now.Add(OutageBackoff))
	}
	if !b.Waiting(session.Key{0}, now) || b.Waiting(session.Key{0}, now.Add(OutageBackoff)) {
		t.Fatal("backoff window wrong")
	}
	b.mu.Lock()
	n := len(b.until)
	b.mu.Unlock()
	if n > MaxBackoffs {
		t.Fatalf("%d sessions held back, bound %d", n, MaxBackoffs)
	}
}
