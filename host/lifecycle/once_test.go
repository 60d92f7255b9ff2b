package lifecycle

import (
	"strconv"
	"testing"
	"time"
)

func TestUsedNoncesRefuseReplayUntilExpiry(t *testing.T) {
	var u UsedNonces
	now := time.Now()
	if !u.claim("a", now) {
		t.Fatal("first claim refused")
	}
	if u.claim("a", now.Add(FlowLifetime-time.Second)) {
		t.Fatal("replay within the nonce's lifetime accepted")
	}
	if !u.claim("a", now.Add(FlowLifetime)) {
		t.Fatal("claim after the nonce cookie expired refused")
	}
}

// Anyone can make the daemon remember a nonce (a made-up state with a
// matching made-up cookie), so what it remembers is bounded, and
// remembering costs the same however much is remembered.
func TestUsedNoncesBounded(t *testing.T) {
	var u UsedNonces
	now := time.Now()
	for i := range 3 * maxUsedNonces {
		if !u.claim("n"+strconv.Itoa(i), now) {
			t.Fatalf("fresh nonce %d refused", i)
		}
	}
	if n := len(u.seen); n > maxUsedNonces {
		t.Fatalf("%d nonces remembered, more than %d", n, maxUsedNonces)
	}
	if n := len(u.order); n > maxUsedNonces {
		t.Fatalf("%d nonces queued, more than %d", n, maxUsedNonces)
	}
	// The newest are still refused.
	last := "n" + strconv.Itoa(3*maxUsedNonces-1)
	if u.claim(last, now) {
		t.Fatal("replay of the newest nonce accepted")
	}
	// Expired ones leave without a claim having to walk them all.
	if !u.claim("late", now.Add(FlowLifetime)) {
		t.Fatal("fresh nonce refused")
	}
	if n := len(u.seen); n != 1 {
		t.Fatalf("%d nonces remembered after all others expired, want 1", n)
	}
}

// However many sign-in responses are claimed (each needs a state the daemon
// made), a spent command-line code is never forgotten early.
func TestSpentCLICodeSurvivesFloodOfSignIns(t *testing.T) {
	s := &Manager{used: &UsedNonces{}, usedCodes: &UsedNonces{}, now: time.Now}
	ctx := t.Context()
	if fresh, _ := s.ClaimOnce(ctx, CLICodeOncePrefix+"code-1"); !fresh {
		t.Fatal("first redemption refused")
	}
	for i := range maxUsedNonces + 1000 {
		if _, err := s.ClaimOnce(ctx, "nonce-"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if fresh, _ := s.ClaimOnce(ctx, CLICodeOncePrefix+"code-1"); fresh {
		t.Fatal("a spent command-line code was accepted again after a flood of sign-in responses")
	}
}
