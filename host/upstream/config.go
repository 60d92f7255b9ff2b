package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Token endpoint client authentication methods.
const (
	// AuthMethodBasic sends the client credentials in the Authorization
	// header (the default).
	AuthMethodBasic = "client_secret_basic"
	// AuthMethodPost sends them in the form body.
	AuthMethodPost = "client_secret_post"
)

// DefaultTimeout bounds each back-channel request when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// DefaultScopes are requested when Config.Scopes is empty.
var DefaultScopes = []string{"openid", "profile", "email"}

// Config configures the OpenID Connect relying party for one provider.
type Config struct {
	// Issuer is the provider's issuer URL. With discovery, the document's
	// issuer must equal it exactly. ID tokens must carry it as iss.
	Issuer string

	// AuthorizationURL, TokenURL and JWKSURL switch discovery off: set all
	// three for a provider without a discovery document (SpectroCloud
	// Palette documents none). UserinfoURL, RevocationURL and EndSessionURL
	// are optional; with discovery they override the discovered values.
	AuthorizationURL, TokenURL, JWKSURL       string
	UserinfoURL, RevocationURL, EndSessionURL string

	// ClientID and ClientSecret are the registered client credentials.
	ClientID, ClientSecret string
	// Scopes default to DefaultScopes; "openid" is always requested.
	Scopes []string
	// Prompt, when set, is sent as the prompt parameter (e.g. "login").
	Prompt string
	// TokenEndpointAuthMethod is AuthMethodBasic (default) or AuthMethodPost.
	TokenEndpointAuthMethod string

	// SigningAlgorithms are the accepted ID token algorithms without
	// discovery (default RS256). With discovery, the provider's
	// id_token_signing_alg_values_supported is used instead (RS256 when it
	// advertises none). "none" and HMAC algorithms are never accepted.
	SigningAlgorithms []string

	// AllowInsecureIssuer permits http issuer and endpoint URLs, and only
	// for loopback hosts (localhost, 127.0.0.0/8, ::1).
	AllowInsecureIssuer bool
	// TrustEmailWithoutVerifiedClaim treats an email as verified when the
	// email_verified claim is absent (not when it is false).
	TrustEmailWithoutVerifiedClaim bool
	// RequireAuthorizationResponseIssuer requires RFC 9207's iss parameter
	// in authorization responses even when the provider does not advertise
	// authorization_response_iss_parameter_supported.
	RequireAuthorizationResponseIssuer bool
	// DisableUserinfo stops Exchange and Refresh from reading the userinfo
	// endpoint when the ID token carries no email.
	DisableUserinfo bool
	// DisablePaletteSessionTokenDetection treats an HS256 JWS in the token
	// response's refresh_token as a refresh token after all.
	DisablePaletteSessionTokenDetection bool

	// HTTPClient is the base for back-channel calls; only its Transport is
	// used (e.g. for TLS roots). The provider adds a timeout, refuses
	// redirects and bounds response bodies.
	HTTPClient *http.Client
	// Timeout bounds each back-channel request; default DefaultTimeout.
	Timeout time.Duration
	// MaxResponseBytes bounds each back-channel response body; default
	// DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Logger defaults to a null logger. Tokens, codes and secrets are never
	// logged.
	Logger hclog.Logger
}

func (c *Config) manual() bool {
	return c.AuthorizationURL != "" || c.TokenURL != "" || c.JWKSURL != ""
}

func (c *Config) validate() error {
	if c.Issuer == "" {
		return errors.New("upstream: issuer is required")
	}
	if err := checkEndpoint("issuer", c.Issuer, c.AllowInsecureIssuer); err != nil {
		return err
	}
	if u, _ := url.Parse(c.Issuer); u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("upstream: issuer %q must have no query or fragment", c.Issuer)
	}
	if c.ClientID == "" {
		return errors.New("upstream: client ID is required")
	}
	if c.ClientSecret == "" {
		return errors.New("upstream: client secret is required")
	}
	switch c.TokenEndpointAuthMethod {
	case "", AuthMethodBasic, AuthMethodPost:
	default:
		return fmt.Errorf("upstream: token endpoint auth method %q is not supported (use %s or %s)", c.TokenEndpointAuthMethod, AuthMethodBasic, AuthMethodPost)
	}
	if c.Timeout < 0 || c.MaxResponseBytes < 0 {
		return errors.New("upstream: timeout and response size limit must not be negative")
	}
	if c.manual() {
		for _, e := range []struct{ name, v string }{
			{"authorization URL", c.AuthorizationURL}, {"token URL", c.TokenURL}, {"JWKS URL", c.JWKSURL},
		} {
			if e.v == "" {
				return fmt.Errorf("upstream: without discovery the %s is required (set authorization, token and JWKS URLs together)", e.name)
			}
		}
	}
	for _, e := range []struct{ name, v string }{
		{"authorization URL", c.AuthorizationURL}, {"token URL", c.TokenURL}, {"JWKS URL", c.JWKSURL},
		{"userinfo URL", c.UserinfoURL}, {"revocation URL", c.RevocationURL}, {"end session URL", c.EndSessionURL},
	} {
		if e.v != "" {
			if err := checkEndpoint(e.name, e.v, c.AllowInsecureIssuer); err != nil {
				return err
			}
		}
	}
	if len(c.SigningAlgorithms) > 0 {
		if !c.manual() {
			return errors.New("upstream: signing algorithms are only configurable without discovery")
		}
		if _, err := allowedAlgorithms(c.SigningAlgorithms, true); err != nil {
			return err
		}
	}
	return nil
}

// checkEndpoint accepts https URLs, and http ones for loopback hosts when
// allowInsecure is set.
func checkEndpoint(name, raw string, allowInsecure bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("upstream: %s %q is not an absolute URL", name, bounded(raw, 200))
	}
	if u.User != nil {
		return fmt.Errorf("upstream: %s must not carry credentials", name)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if !allowInsecure {
			return fmt.Errorf("upstream: %s %q is http; only https is allowed unless allowInsecureIssuer is set (and then only for loopback hosts)", name, raw)
		}
		if !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("upstream: %s %q is http on a non-loopback host; http is only allowed for localhost, 127.0.0.0/8 and ::1", name, raw)
		}
		return nil
	default:
		return fmt.Errorf("upstream: %s %q must be an https URL", name, raw)
	}
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

// asymmetric are the ID token algorithms go-oidc verifies.
var asymmetric = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}

// allowedAlgorithms keeps the asymmetric algorithms of algs. Configured lists
// (strict) fail on anything else; advertised lists drop it ("none", HS256).
func allowedAlgorithms(algs []string, strict bool) ([]string, error) {
	var out []string
	for _, a := range algs {
		if slices.Contains(asymmetric, a) {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
			continue
		}
		if strict {
			return nil, fmt.Errorf("upstream: ID token signing algorithm %q is not accepted (only %s)", a, strings.Join(asymmetric, ", "))
		}
	}
	return out, nil
}
