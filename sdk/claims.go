package sdk

import (
	"encoding/json"
	"math"
	"slices"
	"time"
)

// reservedClaims are the claims the daemon sets in the tokens it issues, or
// that carry a meaning in JWTs (delegation, the authorized party, the
// session), which Identity.Extra therefore may not set. The daemon checks
// the same list (IsReservedClaim) when it issues a token.
var reservedClaims = []string{
	// Backstage's identity token, as the daemon issues it.
	"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "ent", "uip", "typ",
	// Meanings a consumer of the token may act on: the session it belongs
	// to, the authorized party, and delegation (RFC 8693's "act", and
	// "obo" for on-behalf-of).
	"sid", "azp", "act", "obo",
}

// ReservedClaims returns the claims Identity.Extra may not set, because the
// daemon sets them or because a consumer of the token would act on them:
// iss, sub, aud, exp, nbf, iat, jti, ent, uip, typ, sid, azp, act and obo.
// The list is the one the daemon enforces too. The result is a copy.
func ReservedClaims() []string { return slices.Clone(reservedClaims) }

// IsReservedClaim reports whether name is one of ReservedClaims.
func IsReservedClaim(name string) bool { return slices.Contains(reservedClaims, name) }

// Claims are the claims of a JWT (for a resolver, the verified upstream ID
// token), decoded from JSON: every number is a float64. The getters return
// the zero value for a claim that is absent or of another type.
type Claims map[string]any

// Has reports whether the claim is present.
func (c Claims) Has(name string) bool {
	_, ok := c[name]
	return ok
}

// String returns a string claim.
func (c Claims) String(name string) string {
	s, _ := c[name].(string)
	return s
}

// Strings returns a claim that is a list of strings, such as "groups" or
// "aud". A single string is returned as a list of one; other elements are
// skipped.
func (c Claims) Strings(name string) []string {
	switch v := c[name].(type) {
	case string:
		return []string{v}
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// Bool returns a boolean claim. The strings "true" and "false" count too, as
// some providers send email_verified that way.
func (c Claims) Bool(name string) bool {
	switch v := c[name].(type) {
	case bool:
		return v
	case string:
		return v == "true"
	}
	return false
}

// Time returns a NumericDate claim (seconds since the epoch), such as "exp".
func (c Claims) Time(name string) time.Time {
	var f float64
	switch v := c[name].(type) {
	case float64:
		f = v
	case int64:
		f = float64(v)
	case int:
		f = float64(v)
	case json.Number:
		var err error
		if f, err = v.Float64(); err != nil {
			return time.Time{}
		}
	default:
		return time.Time{}
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}
