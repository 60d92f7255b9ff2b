package server

import (
	"net/http"
	"sync"
	"time"

	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
)

// Defaults of the sign-in rate limits (config server.rateLimits).
const (
	DefaultSignInsPerClientPerMinute = 60
	DefaultSignInBurst               = 30
	DefaultCodeExchangesPerSecond    = 20
	// DefaultMaxLimitedClients bounds the clients a limiter remembers.
	DefaultMaxLimitedClients = 1 << 16
)

// limited refuses a client over its sign-in rate with 429 before h does
// any work. Refusals are logged at debug, and sampled at warn.
func (s *Server) limited(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if !s.cfg.SignInLimit.Allow(s.cfg.ClientIP.Of(r)) {
			s.refusedLog.warn(s, "sign-in requests refused: a client is over server.rateLimits.signInsPerClientPerMinute")
			w.Header().Set("Retry-After", "10")
			return backstageerr.New(http.StatusTooManyRequests, backstageerr.NameError, "Too many sign-in requests; try again shortly", nil)
		}
		return h(w, r)
	}
}

// sampler lets one log line through per minute and counts the rest.
type sampler struct {
	mu     sync.Mutex
	last   time.Time
	missed int
}

func (p *sampler) warn(s *Server, msg string) {
	now := s.now()
	p.mu.Lock()
	if now.Sub(p.last) < time.Minute {
		p.missed++
		p.mu.Unlock()
		return
	}
	missed := p.missed
	p.last, p.missed = now, 0
	p.mu.Unlock()
	s.log.Warn(msg, "refused_since_last_line", missed+1)
}
