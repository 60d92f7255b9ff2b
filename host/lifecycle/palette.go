package lifecycle

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
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
