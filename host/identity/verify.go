package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Errors Verify wraps, for errors.Is.
var (
	// ErrInvalidToken: malformed, wrong type, bad signature, unknown key,
	// wrong issuer or audience, missing claims.
	ErrInvalidToken = errors.New("invalid token")
	// ErrExpiredToken: the token's exp has passed.
	ErrExpiredToken = errors.New("token expired")
)

// maxVerifyLength bounds what Verify parses; Issue never makes tokens
// longer than MaxTokenLength.
const maxVerifyLength = 2 * MaxTokenLength

// iatLeeway is how far in the future "iat" may lie (clock skew between
// replicas).
const iatLeeway = time.Minute

// VerifiedClaims are the claims of a token Verify accepted.
type VerifiedClaims struct {
	// Type is TypeUser or TypeLimitedUser.
	Type string
	// Subject is the user entity ref ("sub").
	Subject string
	// Ent are the ownership refs when the token carries them (user tokens
	// issued with IncludeEnt); nil otherwise: ask the UserInfoStore.
	Ent []string
	// IssuedAt and ExpiresAt are "iat" and "exp".
	IssuedAt  time.Time
	ExpiresAt time.Time
	// KeyID is the "kid" of the key that signed the token.
	KeyID string
	// SessionID is the "sid" claim of a user token: the daemon session the
	// token was issued for (the hex store key, never the cookie's handle).
	SessionID string
}

// tokenClaims is what Verify reads from a payload. Pointers tell missing
// claims from zero values.
type tokenClaims struct {
	Iss *string
	Sub *string
	Ent []string
	Aud json.RawMessage
	Iat *float64
	Exp *float64
	Sid string
}

// decodeClaims reads the claims by their exact names, as JSON.parse in
// Backstage's verifiers does. encoding/json matches struct fields ignoring
// case, and the last match wins: an extra claim "Sub" or "EXP" after the
// real ones would otherwise replace them here and nowhere else.
func decodeClaims(payload []byte) (tokenClaims, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(payload, &obj); err != nil {
		return tokenClaims{}, err
	}
	var c tokenClaims
	for name, dst := range map[string]any{"iss": &c.Iss, "sub": &c.Sub, "ent": &c.Ent, "iat": &c.Iat, "exp": &c.Exp, "sid": &c.Sid} {
		if raw, ok := obj[name]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				return tokenClaims{}, err
			}
		}
	}
	c.Aud = obj["aud"]
	return c, nil
}

// Verify checks a token this Issuer signed: a user token, or a limited user
// token (header.payload.uip, as Backstage rebuilds it). It checks the "typ"
// header, the ES256 signature against our keys, "iss" and "aud" (user
// tokens), "exp" and "iat", and requires "sub". It is for our own
// /v1/userinfo route.
func (i *Issuer) Verify(ctx context.Context, raw string) (VerifiedClaims, error) {
	typ, kid, payload, err := i.verifySignature(ctx, raw, TypeUser, TypeLimitedUser)
	if err != nil {
		return VerifiedClaims{}, err
	}
	now := i.now()
	c, err := decodeClaims(payload)
	if err != nil {
		return VerifiedClaims{}, invalid("payload is not a JSON object of the expected shape")
	}
	if c.Sub == nil || *c.Sub == "" {
		return VerifiedClaims{}, invalid("no sub")
	}
	if c.Iat == nil || c.Exp == nil || !isEpoch(*c.Iat) || !isEpoch(*c.Exp) {
		return VerifiedClaims{}, invalid("iat and exp must be numeric dates")
	}
	iat, exp := time.Unix(int64(*c.Iat), 0), time.Unix(int64(*c.Exp), 0)
	if typ == TypeUser {
		if c.Iss == nil || *c.Iss != i.issuer {
			return VerifiedClaims{}, invalid("wrong issuer")
		}
		if !audienceIs(c.Aud, Audience) {
			return VerifiedClaims{}, invalid("wrong audience")
		}
	}
	// As jose does: expired once exp <= now, in whole seconds.
	if *c.Exp <= float64(now.Unix()) {
		return VerifiedClaims{}, fmt.Errorf("identity: verifying token: %w", ErrExpiredToken)
	}
	if iat.After(now.Add(iatLeeway)) {
		return VerifiedClaims{}, invalid("issued in the future")
	}
	v := VerifiedClaims{Type: typ, Subject: *c.Sub, IssuedAt: iat, ExpiresAt: exp, KeyID: kid}
	if typ == TypeUser {
		v.Ent = c.Ent
		v.SessionID = c.Sid
	}
	return v, nil
}

// verifySignature checks that raw is a compact ES256 JWS of one of types,
// signed by one of our keys (re-reading the store for a kid another replica
// may have made), and returns its typ, kid and verified payload.
func (i *Issuer) verifySignature(ctx context.Context, raw string, types ...string) (typ, kid string, payload []byte, err error) {
	if len(raw) > maxVerifyLength || strings.Count(raw, ".") != 2 {
		return "", "", nil, invalid("not a compact JWS")
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return "", "", nil, invalid("not an ES256 compact JWS")
	}
	if len(jws.Signatures) != 1 {
		return "", "", nil, invalid("not a single-signature JWS")
	}
	h := jws.Signatures[0].Protected
	typ, _ = h.ExtraHeaders[jose.HeaderType].(string)
	if !slices.Contains(types, typ) {
		return "", "", nil, invalid("typ is not " + strings.Join(types, " or "))
	}
	if h.KeyID == "" {
		return "", "", nil, invalid("no kid")
	}

	now := i.now()
	vk, ok := i.set.Load().verify[h.KeyID]
	if !ok {
		// Perhaps another replica's new key. Only a token that claims a
		// plausible "iat" can make us read the store; the signature is
		// checked once the key is known.
		c, err := decodeClaims(jws.UnsafePayloadWithoutVerification())
		if err != nil || c.Iat == nil || !isEpoch(*c.Iat) {
			return "", "", nil, invalid("signed by an unknown key")
		}
		// "iat" is whole seconds: the token was made before iat+1s.
		i.reloadSince(ctx, time.Unix(int64(*c.Iat), 0).Add(time.Second+clockSkew))
		vk, ok = i.set.Load().verify[h.KeyID]
	}
	if !ok || now.Sub(vk.created) >= 3*i.lifetime {
		return "", "", nil, invalid("signed by an unknown key")
	}
	payload, err = jws.Verify(vk.pub)
	if err != nil {
		return "", "", nil, invalid("bad signature")
	}
	return typ, h.KeyID, payload, nil
}

func invalid(why string) error {
	return fmt.Errorf("identity: verifying token: %w: %s", ErrInvalidToken, why)
}

func isEpoch(f float64) bool {
	return !math.IsNaN(f) && !math.IsInf(f, 0) && f >= 0 && f < 1<<53
}

// audienceIs accepts "aud" as a string or an array holding want.
func audienceIs(raw json.RawMessage, want string) bool {
	if len(raw) == 0 {
		return false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s == want
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		for _, a := range list {
			if a == want {
				return true
			}
		}
	}
	return false
}
