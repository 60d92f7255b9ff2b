// Package lifecycle owns the session lifecycle, apart from any HTTP front
// end (issue 11, "Where it lives"; Dex's server/ split is the model):
//
//   - begin and complete a sign-in (Manager.Begin, Manager.Complete: the
//     PKCE verifier and ID token nonce derived from the flow key, the code
//     exchange, the resolver chain, the Backstage token, the stored
//     session), with used-once sets (OnceSet, ClaimOnce);
//   - renew and revalidate (Policy decides when the provider is due;
//     Manager.Refresh, Manager.Renew, Manager.SessionOf: one renewal per
//     session at a time in the process (Flights) and across replicas (the
//     store's renewal lease, LockAndRead), the outage Backoff, refusal
//     versus outage);
//   - end (Manager.EndNamed, Manager.EndSession, upstream revocation) and
//     sign out everywhere (Manager.SignOutEverywhere, EndUserSessions);
//   - Palette session tokens (Manager.PaletteSession).
//
// Sessions stay behind session.Store (file, memory and PostgreSQL pass one
// conformance suite, host/session/sessiontest). host/server (Backstage's
// routes), host/cliauth (the command-line and device routes) and host/kube
// are thin HTTP front ends over a Manager.
package lifecycle

import (
	"sync"
	"time"

	"github.com/spectroauth/spectroauth/host/session"
)

// Policy decides when a session must go back to its provider.
type Policy struct {
	// RefreshMargin: the ID token is renewed when it has less left (and a
	// refresh grant can renew it).
	RefreshMargin time.Duration
	// RevalidateInterval: the provider is asked at least this often,
	// however long the ID token lives.
	RevalidateInterval time.Duration
}

// UpstreamDue reports whether the provider must be asked about sess at now:
// its last answer (LastChecked) is RevalidateInterval old, or the ID token
// is within RefreshMargin of expiry and a refresh grant can renew it
// (unless the last refresh answered without a new ID token and the access
// token still has more than the margin). Plain time comparisons.
func (p Policy) UpstreamDue(sess *session.Session, now time.Time) bool {
	u := sess.Upstream
	if p.RevalidateInterval > 0 && now.Sub(LastChecked(sess)) >= p.RevalidateInterval {
		return true
	}
	if u.RefreshToken == "" {
		// Nothing can renew the tokens: the session ends with its ID
		// token, and the provider is only asked to revalidate it.
		return false
	}
	exp := u.IDTokenExpiry
	if exp.IsZero() || exp.Sub(now) >= p.RefreshMargin {
		return false
	}
	if u.IDTokenNotRenewed && !u.AccessTokenExpiry.IsZero() && u.AccessTokenExpiry.Sub(now) >= p.RefreshMargin {
		return false
	}
	return true
}

// LastChecked is when the provider last vouched for sess: its last
// answered refresh or revalidation, else the sign-in.
func LastChecked(sess *session.Session) time.Time {
	if t := sess.Upstream.CheckedAt; !t.IsZero() {
		return t
	}
	return sess.CreatedAt
}

// BackstageStale reports whether sess's Backstage token must be re-issued
// at now: none, or less than half of lifetime left.
func BackstageStale(sess *session.Session, lifetime time.Duration, now time.Time) bool {
	b := sess.Backstage
	return b == nil || b.ExpiresAt.Sub(now) < lifetime/2
}

// OutageBackoff is how long a session waits before asking a provider that
// was unavailable again, so an outage costs one call per session per
// backoff rather than one per /refresh.
const OutageBackoff = 30 * time.Second

// Flights runs at most one renewal per session at a time; latecomers
// wait for and share its result.
type Flights struct {
	mu      sync.Mutex
	flights map[session.Key]*flight
}

type flight struct {
	done chan struct{}
	sess *session.Session
	err  error
}

// Do runs fn for key unless a run for key is under way, in which case it
// waits for that run and returns its result.
func (g *Flights) Do(key session.Key, fn func() (*session.Session, error)) (*session.Session, error) {
	g.mu.Lock()
	if g.flights == nil {
		g.flights = make(map[session.Key]*flight)
	}
	if f, ok := g.flights[key]; ok {
		g.mu.Unlock()
		<-f.done
		return f.sess, f.err
	}
	f := &flight{done: make(chan struct{})}
	g.flights[key] = f
	g.mu.Unlock()

	f.sess, f.err = fn()
	g.mu.Lock()
	delete(g.flights, key)
	g.mu.Unlock()
	close(f.done)
	return f.sess, f.err
}

// MaxBackoffs bounds the sessions remembered as waiting for an unavailable
// provider; beyond it a session is simply not held back.
const MaxBackoffs = 1 << 14

// Backoff remembers, per session, until when an unavailable provider is
// not asked again. Only sessions the daemon renews enter it.
type Backoff struct {
	mu    sync.Mutex
	until map[session.Key]time.Time
}

// Waiting reports whether key's provider calls are held back at now.
func (b *Backoff) Waiting(key session.Key, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.until[key]
	return ok && now.Before(t)
}

// Set holds key's provider calls back until t.
func (b *Backoff) Set(key session.Key, t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.until == nil {
		b.until = make(map[session.Key]time.Time)
	}
	if len(b.until) >= MaxBackoffs {
		now := t.Add(-OutageBackoff)
		for k, u := range b.until {
			if !now.Before(u) {
				delete(b.until, k)
			}
		}
		if len(b.until) >= MaxBackoffs {
			return
		}
	}
	b.until[key] = t
}

// Clear forgets key.
func (b *Backoff) Clear(key session.Key) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.until, key)
}
