package identity

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TypeCLIAccess is the "typ" of the daemon's command-line access tokens:
// what spectroauthd kube-credential presents to the Kubernetes credential
// broker. Backstage verifiers accept only their own types, so such a token
// is worthless to any Backstage backend, and a Backstage user token is
// never one of these.
const TypeCLIAccess = "vnd.spectroauth.cli+jwt"

// MaxAccessLifetime bounds an access token's lifetime.
const MaxAccessLifetime = 15 * time.Minute

// AccessClaims are what IssueAccess signs: a short-lived token for one
// audience, bound to one daemon session.
type AccessClaims struct {
	// Type is the "typ" header, e.g. TypeCLIAccess. It must not be a
	// Backstage token type.
	Type string
	// Subject is the user entity ref.
	Subject string
	// Audience is the one "aud": the URL of the routes that accept it.
	Audience string
	// SessionID is the "sid": the hex store key of the session.
	SessionID string
	// Lifetime is at most MaxAccessLifetime.
	Lifetime time.Duration
}

// VerifiedAccess are the claims of an access token VerifyAccess accepted.
type VerifiedAccess struct {
	Subject   string
	SessionID string
	ID        string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// accessPayload is an access token's payload.
type accessPayload struct {
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Aud string `json:"aud"`
	Sid string `json:"sid"`
	Jti string `json:"jti"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
}

// IssueAccess signs an access token with the issuer's current key (the
// keys the JWKS publishes).
func (i *Issuer) IssueAccess(ctx context.Context, c AccessClaims) (Token, error) {
	switch {
	case c.Type == "" || c.Type == TypeUser || c.Type == TypeLimitedUser:
		return Token{}, fmt.Errorf("identity: issuing access token: type %q is not an access token type", c.Type)
	case c.Subject == "" || c.Audience == "" || c.SessionID == "":
		return Token{}, errors.New("identity: issuing access token: subject, audience and session id are required")
	case c.Lifetime <= 0 || c.Lifetime > MaxAccessLifetime:
		return Token{}, fmt.Errorf("identity: issuing access token: lifetime %s is not in (0, %s]", c.Lifetime, MaxAccessLifetime)
	}
	now := i.now()
	s := i.set.Load()
	if s.signer == nil || !now.Before(s.rotateAt) {
		var err error
		if s, err = i.rotate(ctx, now); err != nil {
			return Token{}, err
		}
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return Token{}, fmt.Errorf("identity: issuing access token: %w", err)
	}
	p := accessPayload{
		Iss: i.issuer, Sub: c.Subject, Aud: c.Audience, Sid: c.SessionID, Jti: hex.EncodeToString(jti[:]),
		Iat: now.Unix(), Exp: now.Add(c.Lifetime).Unix(),
	}
	body, err := json.Marshal(p)
	if err != nil {
		return Token{}, fmt.Errorf("identity: issuing access token: %w", err)
	}
	key := s.signer
	buf := appendB64(nil, headerJSON(c.Type, key.id))
	buf = append(buf, '.')
	buf = appendB64(buf, body)
	sig, err := key.signer.SignPayload(buf, jose.ES256)
	if err != nil {
		return Token{}, fmt.Errorf("identity: signing access token with key %s: %w", key.id, err)
	}
	buf = append(buf, '.')
	buf = appendB64(buf, sig)
	return Token{Raw: string(buf), IssuedAt: time.Unix(p.Iat, 0), ExpiresAt: time.Unix(p.Exp, 0)}, nil
}

// VerifyAccess checks an access token of type typ for audience aud: the
// signature against our keys, "iss", "aud", "exp", "iat", "sub" and "sid".
// Any other type, Backstage's included, is ErrInvalidToken.
func (i *Issuer) VerifyAccess(ctx context.Context, raw, typ, aud string) (VerifiedAccess, error) {
	_, _, payload, err := i.verifySignature(ctx, raw, typ)
	if err != nil {
		return VerifiedAccess{}, err
	}
	var p accessPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return VerifiedAccess{}, invalid("payload is not a JSON object of the expected shape")
	}
	now := i.now()
	switch {
	case p.Iss != i.issuer:
		return VerifiedAccess{}, invalid("wrong issuer")
	case p.Aud != aud:
		return VerifiedAccess{}, invalid("wrong audience")
	case p.Sub == "" || p.Sid == "":
		return VerifiedAccess{}, invalid("no sub or sid")
	case p.Exp <= now.Unix():
		return VerifiedAccess{}, fmt.Errorf("identity: verifying access token: %w", ErrExpiredToken)
	case time.Unix(p.Iat, 0).After(now.Add(iatLeeway)):
		return VerifiedAccess{}, invalid("issued in the future")
	case p.Exp-p.Iat > int64(MaxAccessLifetime/time.Second):
		return VerifiedAccess{}, invalid("lifetime too long for an access token")
	}
	return VerifiedAccess{Subject: p.Sub, SessionID: p.Sid, ID: p.Jti, IssuedAt: time.Unix(p.Iat, 0), ExpiresAt: time.Unix(p.Exp, 0)}, nil
}

// TokenType returns the "typ" header of a compact JWS without verifying
// anything, "" when it has none: for choosing which verifier to run and
// what to tell a caller who sent the wrong kind of token.
func TokenType(raw string) string {
	if len(raw) > maxVerifyLength {
		return ""
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(jws.Signatures) != 1 {
		return ""
	}
	typ, _ := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string)
	return typ
}
