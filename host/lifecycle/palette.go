package lifecycle

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spectroauth/spectroauth/host/session"
)

// PaletteSessionLifetime is how long SpectroCloud documents a Palette
// session token to live: a renewal whose answer does not say otherwise
// (the token's exp) gives it this long.
const PaletteSessionLifetime = 15 * time.Minute

// PaletteRenewalMargin: a Palette session token about to be used is renewed
// first when it has less than this left.
const PaletteRenewalMargin = 2 * time.Minute

// ErrPaletteTokenRefused: Palette refused to renew the session's Palette
// session token (it has expired or its session was ended). The token is
// dropped from the session; only a new sign-in brings one back.
var ErrPaletteTokenRefused = errors.New("palette refused to renew the session token")

// PaletteRenewal renews a Palette session token with Palette's refresh
// operation (GET /v1/auth/refresh/{token}), returning the new token and
// when it expires (zero when unknown). A refusal wraps
// ErrPaletteTokenRefused.
type PaletteRenewal func(ctx context.Context, token string) (renewed string, expiresAt time.Time, err error)

// PaletteTokenExpiry is when u's Palette session token runs out: what its
// last renewal recorded, else the token's own exp claim (read, not
// verified: it only decides when to renew). ok is false when neither says.
func PaletteTokenExpiry(u session.UpstreamTokens) (exp time.Time, ok bool) {
	if !u.PaletteSessionTokenExpiry.IsZero() {
		return u.PaletteSessionTokenExpiry, true
	}
	return JWTExpiry(u.PaletteSessionToken)
}

// PaletteTokenDue reports whether u's Palette session token must be renewed
// before use at now: it has less than margin left, or its expiry is
// unknown. A session without one has nothing to renew.
func PaletteTokenDue(u session.UpstreamTokens, margin time.Duration, now time.Time) bool {
	if u.PaletteSessionToken == "" {
		return false
	}
	exp, ok := PaletteTokenExpiry(u)
	return !ok || exp.Sub(now) < margin
}

// JWTExpiry reads the exp claim of a compact JWS without verifying it.
func JWTExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == nil {
		return time.Time{}, false
	}
	secs, err := claims.Exp.Int64()
	if err != nil || secs <= 0 {
		return time.Time{}, false
	}
	return time.Unix(secs, 0), true
}

// PaletteSession returns us with a Palette session token that has at least
// PaletteRenewalMargin left, renewing it first with renew when it
// has less (or its expiry is unknown). The renewal runs under the session's
// flight and renewal lock, like an upstream refresh, and is stored before
// it is served. A session without a Palette session token is returned as
// it is. When Palette refuses the renewal the token is dropped from the
// session and the error wraps ErrPaletteTokenRefused. Nothing
// revokes the token when the session ends: Palette's API documents no
// logout for it, so it is dropped with the session and dies within its 15
// minutes.
func (m *Manager) PaletteSession(ctx context.Context, us *UserSession, renew PaletteRenewal) (*UserSession, error) {
	// A renewal of the session already in flight (an upstream refresh)
	// answers for this caller too: look again at what it stored, once.
	for range 2 {
		if !PaletteTokenDue(us.Session.Upstream, PaletteRenewalMargin, m.now()) {
			return us, nil
		}
		sess, err := m.flights.Do(us.Key, func() (*session.Session, error) {
			return m.renewPalette(context.WithoutCancel(ctx), us.Key, renew)
		})
		if err != nil {
			return nil, err
		}
		next := *us
		next.Session = sess.Clone()
		if us.Tokens != nil {
			t := *us.Tokens
			t.PaletteSessionToken = sess.Upstream.PaletteSessionToken
			next.Tokens = &t
		}
		us = &next
	}
	return us, nil
}

// renewPalette renews the stored session's Palette session token when it is
// still due, under the session's renewal lock when replicas share the store.
func (m *Manager) renewPalette(ctx context.Context, key session.Key, renew PaletteRenewal) (*session.Session, error) {
	sess, unlock, err := m.LockAndRead(ctx, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	now := m.now()
	if !PaletteTokenDue(sess.Upstream, PaletteRenewalMargin, now) {
		return sess, nil
	}
	token, exp, err := renew(ctx, sess.Upstream.PaletteSessionToken)
	refused := errors.Is(err, ErrPaletteTokenRefused)
	switch {
	case refused:
		m.log.Warn("palette refused to renew the session's palette session token; it is dropped", "env", sess.Env, "user", sess.UserEntityRef, "session", key.String())
		token, exp = "", time.Time{}
	case err != nil:
		return nil, fmt.Errorf("renewing the palette session token: %w", err)
	case token == "":
		return nil, errors.New("renewing the palette session token: palette answered no token")
	case exp.IsZero():
		exp = now.Add(PaletteSessionLifetime)
	}
	sess.Upstream.PaletteSessionToken, sess.Upstream.PaletteSessionTokenExpiry = token, exp
	if err := m.cfg.Sessions.Replace(ctx, key, sess); errors.Is(err, session.ErrNotFound) {
		return nil, fmt.Errorf("%w: it ended while its palette session token was renewed", ErrSessionEnded)
	} else if err != nil {
		return nil, fmt.Errorf("storing the renewed palette session token: %w", err)
	}
	if refused {
		return nil, fmt.Errorf("renewing the palette session token: %w", err)
	}
	return sess, nil
}
