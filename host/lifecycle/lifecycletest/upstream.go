// Package lifecycletest holds what tests of the session lifecycle's front
// ends share: a provider the test scripts, with no HTTP (the real one is
// tested against an OpenID provider in host/upstream and host/server).
package lifecycletest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"sync"
	"time"

	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// Upstream is a scripted provider: exchanges of GoodCode answer tokens for
// Sub, refreshes answer RefreshErr (new tokens when nil), and it counts
// what reaches it. Safe for concurrent use.
type Upstream struct {
	// Now is the clock the tokens' expiries follow.
	Now func() time.Time

	mu         sync.Mutex
	ttl        time.Duration
	sub        string
	refreshErr error
	authReqs   []upstream.AuthRequest
	exchanges  int
	refreshes  int
	revoked    int
}

var _ lifecycle.Upstream = (*Upstream)(nil)

// GoodCode is the one authorization code Exchange accepts.
const GoodCode = "good-code"

// NewUpstream is a provider whose ID tokens, for sub, live 72 hours on now.
func NewUpstream(now func() time.Time, sub string) *Upstream {
	return &Upstream{Now: now, ttl: 72 * time.Hour, sub: sub}
}

// SetSubject makes the next tokens name sub.
func (u *Upstream) SetSubject(sub string) { u.mu.Lock(); u.sub = sub; u.mu.Unlock() }

// SetRefreshErr makes the next refreshes answer err (nil: new tokens).
func (u *Upstream) SetRefreshErr(err error) { u.mu.Lock(); u.refreshErr = err; u.mu.Unlock() }

// Counts reports the exchanges, refreshes and revocations so far.
func (u *Upstream) Counts() (exchanges, refreshes, revoked int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.exchanges, u.refreshes, u.revoked
}

// AuthRequests returns the authorization requests made so far.
func (u *Upstream) AuthRequests() []upstream.AuthRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]upstream.AuthRequest(nil), u.authReqs...)
}

// tokens are fresh tokens for the current subject. Call with mu held.
func (u *Upstream) tokens() *upstream.Tokens {
	exp := u.Now().Add(u.ttl)
	claims := map[string]any{"sub": u.sub, "email": u.sub + "@example.com", "email_verified": true, "exp": float64(exp.Unix())}
	payload, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return &upstream.Tokens{
		IDToken: enc([]byte(`{"alg":"RS256"}`)) + "." + enc(payload) + ".sig", AccessToken: "at", RefreshToken: "rt",
		TokenType: "Bearer", IDTokenExpiry: exp, Claims: claims, Profile: upstream.ProfileFromClaims(claims, false),
	}
}

// AuthCodeURL records the request.
func (u *Upstream) AuthCodeURL(a upstream.AuthRequest) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.authReqs = append(u.authReqs, a)
	return "https://op.invalid/authorize"
}

// Exchange answers GoodCode (with a verifier and a nonce) with tokens, and
// anything else with invalid_grant.
func (u *Upstream) Exchange(_ context.Context, code, _, verifier, nonce string) (*upstream.Tokens, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.exchanges++
	if code != GoodCode || verifier == "" || nonce == "" {
		return nil, &upstream.TokenError{Op: "exchanging the code", StatusCode: 400, Code: "invalid_grant"}
	}
	return u.tokens(), nil
}

// Refresh answers the scripted error, or new tokens.
func (u *Upstream) Refresh(context.Context, *upstream.Tokens) (*upstream.Tokens, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.refreshes++
	if u.refreshErr != nil {
		return nil, u.refreshErr
	}
	return u.tokens(), nil
}

// Revoke counts the revocation.
func (u *Upstream) Revoke(context.Context, *upstream.Tokens) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.revoked++
	return nil
}

// CheckUserinfo accepts every access token.
func (u *Upstream) CheckUserinfo(context.Context, *upstream.Tokens) error { return nil }

// CheckAuthorizationResponseIssuer accepts every issuer.
func (u *Upstream) CheckAuthorizationResponseIssuer(string) error { return nil }
