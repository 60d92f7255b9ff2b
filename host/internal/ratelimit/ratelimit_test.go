package ratelimit

import (
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

func TestClientIP(t *testing.T) {
	c, err := NewClientIP([]string{"10.0.0.0/8", "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		remote, xff, want string
	}{
		{"198.51.100.7:1234", "", "198.51.100.7"},
		{"198.51.100.7:1234", "203.0.113.9", "198.51.100.7"}, // untrusted peer: its header is ignored
		{"10.1.2.3:1234", "203.0.113.9", "203.0.113.9"},
		{"10.1.2.3:1234", "1.1.1.1, 203.0.113.9, 10.9.9.9", "203.0.113.9"}, // the client's own entry is left of the truth
		{"192.0.2.1:1234", "10.0.0.1", "10.0.0.1"},                         // only trusted hops: the leftmost
		{"10.1.2.3:1234", "garbage, 203.0.113.9", "203.0.113.9"},
		{"10.1.2.3:1234", "203.0.113.9, garbage", "10.1.2.3"},
		{"[::ffff:10.1.2.3]:1234", "2001:db8::1", "2001:db8::1"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := c.Of(r).String(); got != tc.want {
			t.Errorf("remote %s, X-Forwarded-For %q: client %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
	if _, err := NewClientIP([]string{"10.0.0.0/33"}); err == nil {
		t.Error("a bad CIDR was accepted")
	}
}

func TestPerClientLimitsAndStaysBounded(t *testing.T) {
	now := time.Unix(1e9, 0)
	p := NewPerClient(60, 5, 100, func() time.Time { return now })
	a := netip.MustParseAddr("198.51.100.7")
	for i := range 5 {
		if !p.Allow(a) {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	if p.Allow(a) {
		t.Fatal("request beyond the burst allowed")
	}
	if !p.Allow(netip.MustParseAddr("198.51.100.8")) {
		t.Fatal("another client was refused")
	}
	now = now.Add(time.Second)
	if !p.Allow(a) {
		t.Fatal("a client was refused after its bucket refilled a token")
	}
	// One IPv6 host cannot dodge its limit by changing its low 64 bits.
	for i := range 5 {
		p.Allow(netip.MustParseAddr("2001:db8::" + strconv.FormatInt(int64(i+1), 16)))
	}
	if p.Allow(netip.MustParseAddr("2001:db8::ff")) {
		t.Fatal("an IPv6 /64 got more than its burst")
	}
	for i := range 10000 {
		p.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := p.Len(); n > 100 {
		t.Fatalf("%d clients remembered, bound 100", n)
	}
}

func TestBudget(t *testing.T) {
	now := time.Unix(1e9, 0)
	b := NewBudget(1, 2, func() time.Time { return now })
	if !b.Allow() || !b.Allow() || b.Allow() {
		t.Fatal("budget of burst 2 misbehaves")
	}
	now = now.Add(time.Second)
	if !b.Allow() {
		t.Fatal("budget did not refill")
	}
}
