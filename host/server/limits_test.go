package server_test

import (
	"net/http"
	"testing"

	"github.com/spectroauth/spectroauth/host/internal/ratelimit"
)

// /start and the callback are limited per client, the client read from
// X-Forwarded-For only behind a trusted proxy (the test's loopback).
func TestSignInRoutesAreRateLimitedPerClient(t *testing.T) {
	trusted, err := ratelimit.NewClientIP([]string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOptions{ClientIP: trusted, SignInLimit: ratelimit.NewPerClient(1, 3, 100, nil)})
	start := func(client string) int {
		b := newBrowser(t)
		res := b.Do(http.MethodGet, startURL(f, popupQuery()), true, "X-Forwarded-For", client)
		return res.StatusCode
	}
	for i := range 3 {
		if got := start("203.0.113.9"); got != http.StatusFound {
			t.Fatalf("start %d: %d", i, got)
		}
	}
	if got := start("203.0.113.9"); got != http.StatusTooManyRequests {
		t.Fatalf("start over the client's limit: %d, want 429", got)
	}
	if got := start("198.51.100.1"); got != http.StatusFound {
		t.Fatalf("another client: %d, want 302", got)
	}
	// The client's own X-Forwarded-For entry (left of the proxy's) is not believed.
	if got := start("198.51.100.99, 203.0.113.9"); got != http.StatusTooManyRequests {
		t.Fatalf("a spoofed X-Forwarded-For dodged the limit: %d", got)
	}
}

// Code exchanges share one budget: beyond it a sign-in is refused before
// the provider's token endpoint is called.
func TestCodeExchangeBudget(t *testing.T) {
	f := newFixture(t, fixtureOptions{ExchangeBudget: ratelimit.NewBudget(0.001, 1, nil)})
	signIn(t, f, newBrowser(t))
	f.OP.ResetCounters()
	msg, _ := frameMessage(t, newBrowser(t).Get(startURL(f, popupQuery())))
	if msg["error"] == nil {
		t.Fatal("a sign-in over the exchange budget succeeded")
	}
	if c := f.OP.Counters(); c.Token != 0 {
		t.Fatalf("token endpoint calls over the budget = %d, want 0", c.Token)
	}
}
