// Package identity issues and verifies Backstage identity tokens exactly as
// Backstage's own auth backend does, so unmodified Backstage backends accept
// them.
//
// A user token is an ES256 JWS with header
// {"typ":"vnd.backstage.user","alg":"ES256","kid":"<uuid>"} and payload
// {iss, sub, ent?, aud:"backstage", iat, exp, uip, ...extra}. The uip claim
// is the signature segment of a second, "limited" JWS whose header
// {"typ":"vnd.backstage.limited-user","alg":"ES256","kid":...} and payload
// {"sub":...,"iat":...,"exp":...} Backstage verifiers rebuild with
// JavaScript's JSON.stringify; this package serialises both exactly that way
// and signs those bytes.
//
// Signing keys are ES256 key pairs kept in a KeyStore. A new pair is made
// once the current one is older than the token lifetime, and public keys
// stay in the JWKS until they are three lifetimes old. The Issuer keeps the
// loaded keys in an immutable snapshot behind an atomic pointer, so issuing,
// verifying and serving the JWKS take no lock.
//
// A UserInfoStore keeps, per user entity ref, the claims the /v1/userinfo
// route answers with ({"claims":{"sub":...,"ent":[...]}}), since tokens
// normally leave "ent" out.
package identity
