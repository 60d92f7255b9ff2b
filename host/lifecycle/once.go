package lifecycle

import (
	"context"
	"strings"
	"sync"
	"time"
)

// OnceSet remembers single-use values until they expire: the nonce of each
// completed sign-in and the id of each redeemed command-line code.
// Implementations must be safe for concurrent use, and atomic: of two
// concurrent claims of one id, one wins.
type OnceSet interface {
	// Claim records id until expires and reports whether it was fresh: not
	// recorded yet, or recorded with an expiry that is not after now.
	Claim(ctx context.Context, id string, now, expires time.Time) (bool, error)
}

// ClaimOnce claims id for as long as a nonce cookie lives. Command-line
// codes (ids "cli-code:…") go to a set of their own when the set is the
// in-memory one: its bound forgets the oldest entries early, and sign-in
// responses, however many, must never make it forget a spent code.
func (m *Manager) ClaimOnce(ctx context.Context, id string) (bool, error) {
	now := m.now()
	if m.usedCodes != nil && strings.HasPrefix(id, CLICodeOncePrefix) {
		return m.usedCodes.Claim(ctx, id, now, now.Add(FlowLifetime))
	}
	return m.used.Claim(ctx, id, now, now.Add(FlowLifetime))
}

// CLICodeOncePrefix starts the used-once id of a command-line code.
const CLICodeOncePrefix = "cli-code:"

// maxUsedNonces bounds how many used nonces are remembered. Anyone can make
// the daemon remember one (a made-up state with a matching made-up nonce
// cookie), so beyond it the oldest are forgotten early: a replay still needs
// the victim's nonce cookie and an authorization code the provider has not
// redeemed yet.
const maxUsedNonces = 1 << 16

// UsedNonces is the in-memory OnceSet: it remembers the nonces of completed
// sign-ins until their cookie would have expired, so a state is accepted
// once by this process.
type UsedNonces struct {
	mu   sync.Mutex
	seen map[string]time.Time
	// order holds the remembered nonces in claim order, which is expiry
	// order: expired ones leave from the front without a walk of them all.
	order []usedNonce
}

type usedNonce struct {
	nonce string
	exp   time.Time
}

// Claim implements OnceSet; it never fails.
func (u *UsedNonces) Claim(_ context.Context, id string, now, expires time.Time) (bool, error) {
	return u.claimUntil(id, now, expires), nil
}

// claim records nonce for FlowLifetime and reports whether it was fresh.
func (u *UsedNonces) claim(nonce string, now time.Time) bool {
	return u.claimUntil(nonce, now, now.Add(FlowLifetime))
}

// claimUntil records nonce until exp and reports whether it was fresh.
// Claims come with a constant lifetime, so the queue is in expiry order.
func (u *UsedNonces) claimUntil(nonce string, now, exp time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seen == nil {
		u.seen = make(map[string]time.Time)
	}
	for len(u.order) > 0 && !now.Before(u.order[0].exp) {
		u.dropOldest()
	}
	if exp, ok := u.seen[nonce]; ok && now.Before(exp) {
		return false
	}
	for len(u.order) >= maxUsedNonces {
		u.dropOldest()
	}
	u.seen[nonce] = exp
	u.order = append(u.order, usedNonce{nonce, exp})
	return true
}

func (u *UsedNonces) dropOldest() {
	head := u.order[0]
	u.order[0] = usedNonce{}
	u.order = u.order[1:]
	if exp, ok := u.seen[head.nonce]; ok && exp.Equal(head.exp) {
		delete(u.seen, head.nonce)
	}
}
