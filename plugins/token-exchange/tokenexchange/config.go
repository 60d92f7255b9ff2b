// Package tokenexchange is the strategy of the token-exchange plugin: OAuth
// 2.0 Token Exchange (RFC 8693) at a security token service (STS) that
// clusters trust as their OpenID Connect issuer. The user's SpectroCloud ID
// token is the subject token; the STS answers with a token for the
// cluster's audience, which the cluster accepts.
//
// The plugin's config: block (once, for every cluster):
//
//	tokenEndpoint:      the STS token endpoint, https. Required.
//	clientAuth:         client_secret_basic (default), client_secret_post or none.
//	clientId:           the STS client id of the daemon. Required unless none.
//	clientSecret:       its secret, e.g. ${STS_CLIENT_SECRET}. Required unless none.
//	caData / caFile:    PEM certificates to trust for tokenEndpoint instead of
//	                    the system's (TLS is always verified).
//	timeout:            bound on one exchange (default 10s, at most 1m).
//	subjectTokenType:   default urn:ietf:params:oauth:token-type:id_token.
//	requestedTokenType: sent when set, e.g. urn:ietf:params:oauth:token-type:jwt.
//
// The strategy "exchange" takes per-cluster options:
//
//	audience: the cluster's audience at the STS. Required.
//	scope:    space-separated scopes to request.
//	resource: a resource URI to request.
//
// Only the ID token is sent, never the Palette session token. Answers are
// read up to 1 MiB. The STS's refusals become refusals the user reads
// (invalid_grant, access_denied, invalid_target); client errors name the
// configuration key to fix.
package tokenexchange

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
)

// Grant and token types of RFC 8693.
const (
	GrantType          = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeIDToken   = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT       = "urn:ietf:params:oauth:token-type:jwt"
	DefaultTimeout     = 10 * time.Second
	maxTimeout         = time.Minute
	authBasic          = "client_secret_basic"
	authPost           = "client_secret_post"
	authNone           = "none"
	maxResponseBody    = 1 << 20
	maxErrorQuoteBytes = 200
)

// Config is the checked config: block.
type Config struct {
	// TokenEndpoint is the STS's token endpoint (https).
	TokenEndpoint *url.URL
	// ClientAuth is client_secret_basic, client_secret_post or none.
	ClientAuth string
	// ClientID and ClientSecret authenticate the daemon at the STS; the
	// secret is never printed.
	ClientID     string
	ClientSecret string
	// RootCAs, when set, are the only CAs trusted for TokenEndpoint.
	RootCAs *x509.CertPool
	// Timeout bounds one exchange.
	Timeout time.Duration
	// SubjectTokenType is sent as subject_token_type.
	SubjectTokenType string
	// RequestedTokenType is sent as requested_token_type when set.
	RequestedTokenType string
}

// String describes the configuration without the secret.
func (c Config) String() string {
	secret := `""`
	if c.ClientSecret != "" {
		secret = "[redacted]"
	}
	ep := ""
	if c.TokenEndpoint != nil {
		ep = c.TokenEndpoint.String()
	}
	return fmt.Sprintf("Config{TokenEndpoint:%s ClientAuth:%s ClientID:%q ClientSecret:%s CustomCA:%t Timeout:%s}",
		ep, c.ClientAuth, c.ClientID, secret, c.RootCAs != nil, c.Timeout)
}

// GoString is String, so %#v hides the secret too.
func (c Config) GoString() string { return c.String() }

// ParseConfig checks a config: block. Errors are *sdk.ConfigError naming the key.
func ParseConfig(v sdk.Options) (Config, error) {
	var c Config
	if err := v.RejectUnknown("tokenEndpoint", "clientAuth", "clientId", "clientSecret", "caData", "caFile",
		"timeout", "subjectTokenType", "requestedTokenType"); err != nil {
		return c, err
	}
	raw, err := v.String("tokenEndpoint")
	if err != nil {
		return c, err
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return c, sdk.ConfigErrorf("tokenEndpoint", "must be an https URL without credentials or fragment, not %q", raw)
	}
	c.TokenEndpoint = u
	if c.ClientAuth, err = v.StringOr("clientAuth", authBasic); err != nil {
		return c, err
	}
	switch c.ClientAuth {
	case authBasic, authPost, authNone:
	default:
		return c, sdk.ConfigErrorf("clientAuth", "must be %s, %s or %s, not %q", authBasic, authPost, authNone, c.ClientAuth)
	}
	if c.ClientID, err = v.StringOr("clientId", ""); err != nil {
		return c, err
	}
	if c.ClientSecret, err = v.StringOr("clientSecret", ""); err != nil {
		return c, err
	}
	if c.ClientAuth != authNone {
		if c.ClientID == "" {
			return c, sdk.ConfigErrorf("clientId", "is required with clientAuth %s", c.ClientAuth)
		}
		if c.ClientSecret == "" {
			return c, sdk.ConfigErrorf("clientSecret", "is required with clientAuth %s (is the variable it comes from set?)", c.ClientAuth)
		}
		if strings.ContainsFunc(c.ClientSecret, func(r rune) bool { return r < ' ' || r > '~' }) {
			return c, sdk.ConfigErrorf("clientSecret", "has line breaks or characters other than printable ASCII")
		}
	}
	if c.RootCAs, err = v.CertPool("caData", "caFile"); err != nil {
		return c, err
	}
	if c.Timeout, err = v.Duration("timeout", DefaultTimeout); err != nil {
		return c, err
	}
	if c.Timeout <= 0 || c.Timeout > maxTimeout {
		return c, sdk.ConfigErrorf("timeout", "is %s, want more than 0 and at most %s", c.Timeout, maxTimeout)
	}
	if c.SubjectTokenType, err = v.StringOr("subjectTokenType", TokenTypeIDToken); err != nil {
		return c, err
	}
	if c.RequestedTokenType, err = v.StringOr("requestedTokenType", ""); err != nil {
		return c, err
	}
	switch c.SubjectTokenType {
	case TokenTypeIDToken, TokenTypeJWT, TokenTypeAccess:
	default:
		return c, sdk.ConfigErrorf("subjectTokenType", "is %q; the daemon can exchange the user's ID token (%s or %s) or access token (%s)",
			c.SubjectTokenType, TokenTypeIDToken, TokenTypeJWT, TokenTypeAccess)
	}
	for key, val := range map[string]string{"requestedTokenType": c.RequestedTokenType} {
		if val != "" && !strings.HasPrefix(val, "urn:") {
			return c, sdk.ConfigErrorf(key, "must be a token type URI such as %s, not %q", TokenTypeIDToken, val)
		}
	}
	return c, nil
}

func (c Config) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.RootCAs}
}

// clusterOptions are the checked options of one cluster.
type clusterOptions struct {
	audience, scope, resource string
}

func parseOptions(o sdk.Options) (clusterOptions, error) {
	var opts clusterOptions
	if err := o.RejectUnknown("audience", "scope", "resource"); err != nil {
		return opts, err
	}
	var err error
	if opts.audience, err = o.String("audience"); err != nil {
		return opts, err
	}
	if opts.scope, err = o.StringOr("scope", ""); err != nil {
		return opts, err
	}
	if opts.resource, err = o.StringOr("resource", ""); err != nil {
		return opts, err
	}
	if opts.resource != "" {
		if u, err := url.Parse(opts.resource); err != nil || !u.IsAbs() || u.Fragment != "" {
			return opts, sdk.ConfigErrorf("resource", "must be an absolute URI without fragment (RFC 8693 section 2.1), not %q", opts.resource)
		}
	}
	return opts, nil
}
