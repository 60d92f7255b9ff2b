package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

var (
	// ErrNoRefreshToken: the session holds no refresh token (SpectroCloud
	// may not issue one). Keep the session until the ID token expires, then
	// require a new sign-in.
	ErrNoRefreshToken = errors.New("upstream: no refresh token for this session")
	// ErrInvalidIDToken wraps every reason an ID token is refused.
	ErrInvalidIDToken = errors.New("ID token refused")
	// ErrIssuerMismatch: a discovery document or an authorization response
	// (RFC 9207) names another issuer than the configured one.
	ErrIssuerMismatch = errors.New("issuer mismatch")
	// ErrKeysUnavailable: the provider's signing keys could not be fetched
	// to check an ID token signed with a key not seen before. The token is
	// not refused, only unchecked: the provider is unavailable, try again.
	ErrKeysUnavailable = errors.New("the provider's signing keys could not be fetched")
	// ErrResponseTooLarge: a back-channel response exceeded the size limit.
	ErrResponseTooLarge = errors.New("response body too large")
	// ErrRedirectNotFollowed: a back-channel endpoint answered with a
	// redirect, which is never followed.
	ErrRedirectNotFollowed = errors.New("back-channel redirect not followed")
)

// TokenError is an OAuth 2.0 error answered by the token or revocation
// endpoint (RFC 6749 section 5.2). Code "invalid_grant" on a refresh means
// the refresh token is no longer valid: the user must sign in again.
type TokenError struct {
	// Op says what was being done, e.g. "refreshing tokens".
	Op string
	// StatusCode is the HTTP status, 0 when unknown.
	StatusCode int
	// Code is the OAuth error code, e.g. "invalid_grant".
	Code string
	// Description is the provider's error_description, bounded.
	Description string
}

// Error describes the failure without any token, code or secret.
func (e *TokenError) Error() string {
	s := fmt.Sprintf("upstream: %s: provider answered", e.Op)
	if e.StatusCode != 0 {
		s += fmt.Sprintf(" HTTP %d", e.StatusCode)
	}
	if e.Code != "" {
		s += fmt.Sprintf(" %q", e.Code)
	}
	if e.Description != "" {
		s += fmt.Sprintf(" (%q)", e.Description)
	}
	return s
}

// IsInvalidGrant reports whether err is a TokenError with code invalid_grant.
func IsInvalidGrant(err error) bool {
	var te *TokenError
	return errors.As(err, &te) && te.Code == "invalid_grant"
}

// bounded keeps provider-supplied text short and printable for errors and logs.
func bounded(s string, n int) string {
	out := make([]rune, 0, min(len(s), n))
	for _, r := range s {
		if len(out) == n {
			return string(out) + "…"
		}
		if r < 0x20 || r == 0x7f {
			r = '?'
		}
		out = append(out, r)
	}
	return string(out)
}

// redactURL keeps scheme, host and path: queries may hold codes or tokens.
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// Unavailable reports whether err is the provider's failure rather than a
// verdict on the tokens: the provider could not be reached, timed out,
// answered 5xx or 429 (rate limited), answered a redirect or an oversized
// body, or its signing keys could not be fetched. Only such failures let a
// session keep serving the tokens it holds; any other failed refresh
// (invalid_grant, another OAuth error, an ID token that fails verification
// or names another subject) is a refusal that ends the session.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var te *TokenError
	if errors.As(err, &te) {
		return te.StatusCode >= 500 || te.StatusCode == http.StatusTooManyRequests
	}
	var ue *url.Error
	return errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrResponseTooLarge) ||
		errors.Is(err, ErrRedirectNotFollowed) || errors.Is(err, ErrKeysUnavailable)
}

// ClientRejected reports whether err is the provider refusing the daemon
// itself rather than the user's tokens: the token endpoint answered
// invalid_client (the client id or secret is wrong, or the client was
// deleted) or unauthorized_client (the client may not use the grant). It
// is the operator's configuration to fix, not a verdict on any session, so
// sessions treat it like an outage (keep serving their current tokens
// while valid) and the daemon logs it as an error and counts it.
func ClientRejected(err error) bool {
	var te *TokenError
	return errors.As(err, &te) && (te.Code == "invalid_client" || te.Code == "unauthorized_client")
}
