// Package ratelimit bounds what one client, and all clients together, may
// ask of the daemon's unauthenticated routes (sign-in start and callback,
// the command-line and device routes): a token bucket per client address
// (golang.org/x/time/rate) in a bounded map, and the client address read
// from X-Forwarded-For only when the request comes from a trusted proxy.
//
// Use: one ClientIP per daemon (server.trustedProxies), one PerClient per
// group of routes, and Allow before any work:
//
//	if !limiter.Allow(clientIP.Of(r)) { answer 429 }
package ratelimit

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ClientIP finds a request's client address. Without trusted proxies it is
// the connection's peer. With them, X-Forwarded-For is read from the right
// while the address found is a trusted proxy: the first untrusted address
// is the client (a client cannot pick it by sending its own header, which
// ends up on the left).
type ClientIP struct {
	trusted []netip.Prefix
}

// NewClientIP parses the trusted proxies: CIDRs (10.0.0.0/8) or single
// addresses. Errors name the entry.
func NewClientIP(trustedProxies []string) (*ClientIP, error) {
	c := &ClientIP{}
	for _, s := range trustedProxies {
		p, err := ParseProxy(s)
		if err != nil {
			return nil, err
		}
		c.trusted = append(c.trusted, p)
	}
	return c, nil
}

// ParseProxy parses one trusted proxy entry: a CIDR or an address.
func ParseProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an IP address", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (c *ClientIP) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Of returns r's client address; the zero Addr when it cannot be told.
func (c *ClientIP) Of(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	peer = peer.Unmap()
	if c == nil || !c.isTrusted(peer) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			// A hop that is not an address: what lies left of it cannot be
			// trusted; the last proxy is the client as far as we know.
			return peer
		}
		a = a.Unmap()
		if !c.isTrusted(a) {
			return a
		}
		peer = a
	}
	return peer
}

// PerClient is a token bucket per client, in a map bounded to max clients:
// when it is full, idle clients are forgotten first, then arbitrary ones
// (a forgotten client starts again with a full bucket). IPv6 clients are
// limited per /64, the block one host usually holds.
type PerClient struct {
	limit rate.Limit
	burst int
	max   int
	now   func() time.Time

	mu      sync.Mutex
	clients map[netip.Addr]*rate.Limiter
}

// NewPerClient allows each client perMinute requests a minute on average,
// burst at once, remembering at most maxClients clients. now nil means
// time.Now.
func NewPerClient(perMinute float64, burst, maxClients int, now func() time.Time) *PerClient {
	if now == nil {
		now = time.Now
	}
	return &PerClient{
		limit: rate.Limit(perMinute / 60), burst: burst, max: max(maxClients, 1), now: now,
		clients: make(map[netip.Addr]*rate.Limiter),
	}
}

// Allow reports whether client may make a request now, and counts it.
func (p *PerClient) Allow(client netip.Addr) bool {
	key := client
	if client.Is6() {
		if pfx, err := client.Prefix(64); err == nil {
			key = pfx.Addr()
		}
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.clients[key]
	if !ok {
		if len(p.clients) >= p.max {
			p.evict(now)
		}
		l = rate.NewLimiter(p.limit, p.burst)
		p.clients[key] = l
	}
	return l.AllowN(now, 1)
}

// Len is how many clients are remembered.
func (p *PerClient) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.clients)
}

// evict forgets clients whose bucket is full again (idle), then, if none
// was, a tenth of the map, arbitrary ones.
func (p *PerClient) evict(now time.Time) {
	for k, l := range p.clients {
		if l.TokensAt(now) >= float64(p.burst) {
			delete(p.clients, k)
		}
	}
	for k := range p.clients {
		if len(p.clients) < p.max-p.max/10 {
			break
		}
		delete(p.clients, k)
	}
}

// Budget is one token bucket shared by every client: a bound on what all
// of them together may cost (calls to the provider's token endpoint).
type Budget struct {
	l   *rate.Limiter
	now func() time.Time
}

// NewBudget allows perSecond on average and burst at once.
func NewBudget(perSecond float64, burst int, now func() time.Time) *Budget {
	if now == nil {
		now = time.Now
	}
	return &Budget{l: rate.NewLimiter(rate.Limit(perSecond), burst), now: now}
}

// Allow reports whether one more call fits the budget now, and counts it.
func (b *Budget) Allow() bool { return b.l.AllowN(b.now(), 1) }
