// Package upstream is the OpenID Connect relying party for SpectroCloud
// (Palette) or any OpenID Provider: authorization URLs with PKCE (RFC 7636)
// and a nonce, the code exchange, full ID token validation (OpenID Connect
// Core 3.1.3.7), refresh (Core 12.2), revocation (RFC 7009) and the RFC 9207
// issuer check, following the OAuth 2.0 Security BCP (RFC 9700).
//
// All back-channel calls go through one client that has a timeout, never
// follows redirects and bounds response bodies. Errors and logs never carry
// tokens, codes or secrets.
package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/oauth2"
)

// Provider is a configured relying party. It is safe for concurrent use.
type Provider struct {
	cfg    Config
	log    hclog.Logger
	client *http.Client

	oauth    oauth2.Config
	oidcProv *oidc.Provider // userinfo
	verifier *oidc.IDTokenVerifier
	algs     []string

	userinfoURL, revocationURL, endSessionURL string
	requireIss                                bool
	scopes                                    []string
}

// metadata is the part of the discovery document the relying party reads.
type metadata struct {
	Issuer                   string   `json:"issuer"`
	AuthorizationEndpoint    string   `json:"authorization_endpoint"`
	TokenEndpoint            string   `json:"token_endpoint"`
	JWKSURI                  string   `json:"jwks_uri"`
	UserinfoEndpoint         string   `json:"userinfo_endpoint"`
	RevocationEndpoint       string   `json:"revocation_endpoint"`
	EndSessionEndpoint       string   `json:"end_session_endpoint"`
	IDTokenSigningAlgs       []string `json:"id_token_signing_alg_values_supported"`
	CodeChallengeMethods     []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	IssParameterSupported    bool     `json:"authorization_response_iss_parameter_supported"`
}

// New validates cfg and, unless endpoints are given by hand, fetches the
// provider's discovery document, whose issuer must equal cfg.Issuer exactly.
// ctx bounds the discovery request only; the JWKS is fetched on first use.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	cfg.Scopes = slices.Clone(cfg.Scopes)
	cfg.SigningAlgorithms = slices.Clone(cfg.SigningAlgorithms)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.TokenEndpointAuthMethod == "" {
		cfg.TokenEndpointAuthMethod = AuthMethodBasic
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	p := &Provider{
		cfg:    cfg,
		log:    cfg.Logger.Named("upstream"),
		client: newBackChannelClient(cfg.HTTPClient, cfg.Timeout, cfg.MaxResponseBytes),
	}
	p.scopes = cfg.Scopes
	if len(p.scopes) == 0 {
		p.scopes = slices.Clone(DefaultScopes)
	}
	if !slices.Contains(p.scopes, "openid") {
		p.scopes = append([]string{"openid"}, p.scopes...)
	}

	md := metadata{
		Issuer:                cfg.Issuer,
		AuthorizationEndpoint: cfg.AuthorizationURL,
		TokenEndpoint:         cfg.TokenURL,
		JWKSURI:               cfg.JWKSURL,
	}
	if cfg.manual() {
		algs := cfg.SigningAlgorithms
		if len(algs) == 0 {
			algs = []string{"RS256"}
		}
		p.algs, _ = allowedAlgorithms(algs, true) // validated
	} else {
		var err error
		if md, err = p.discover(ctx); err != nil {
			return nil, err
		}
		if len(md.IDTokenSigningAlgs) == 0 {
			p.algs = []string{"RS256"}
		} else {
			p.algs, _ = allowedAlgorithms(md.IDTokenSigningAlgs, false)
			if len(p.algs) == 0 {
				return nil, fmt.Errorf("upstream: %s advertises no acceptable ID token signing algorithm (got %s; none and HMAC are refused)", cfg.Issuer, bounded(strings.Join(md.IDTokenSigningAlgs, ", "), 200))
			}
		}
		if len(md.CodeChallengeMethods) > 0 && !slices.Contains(md.CodeChallengeMethods, "S256") {
			p.log.Warn("provider does not advertise PKCE S256; sending it anyway", "issuer", cfg.Issuer)
		}
		if len(md.TokenEndpointAuthMethods) > 0 && !slices.Contains(md.TokenEndpointAuthMethods, cfg.TokenEndpointAuthMethod) {
			p.log.Warn("provider does not advertise the configured token endpoint auth method", "issuer", cfg.Issuer, "method", cfg.TokenEndpointAuthMethod)
		}
	}
	p.userinfoURL = firstNonEmpty(cfg.UserinfoURL, md.UserinfoEndpoint)
	p.revocationURL = firstNonEmpty(cfg.RevocationURL, md.RevocationEndpoint)
	p.endSessionURL = firstNonEmpty(cfg.EndSessionURL, md.EndSessionEndpoint)
	p.requireIss = md.IssParameterSupported || cfg.RequireAuthorizationResponseIssuer

	style := oauth2.AuthStyleInHeader
	if cfg.TokenEndpointAuthMethod == AuthMethodPost {
		style = oauth2.AuthStyleInParams
	}
	p.oauth = oauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		Endpoint:     oauth2.Endpoint{AuthURL: md.AuthorizationEndpoint, TokenURL: md.TokenEndpoint, AuthStyle: style},
		Scopes:       p.scopes,
	}
	// The key set and userinfo use this client for their whole life; the
	// key set refetches the JWKS when it meets an unknown key ID.
	bg := oidc.ClientContext(context.Background(), p.client)
	p.oidcProv = (&oidc.ProviderConfig{
		IssuerURL:   cfg.Issuer,
		AuthURL:     md.AuthorizationEndpoint,
		TokenURL:    md.TokenEndpoint,
		JWKSURL:     md.JWKSURI,
		UserInfoURL: p.userinfoURL,
		Algorithms:  p.algs,
	}).NewProvider(bg)
	p.verifier = oidc.NewVerifier(cfg.Issuer, fetchAwareKeySet{oidc.NewRemoteKeySet(bg, md.JWKSURI)}, &oidc.Config{
		ClientID:             cfg.ClientID,
		SupportedSigningAlgs: p.algs,
	})
	p.log.Debug("provider ready", "issuer", cfg.Issuer, "discovery", !cfg.manual(), "algorithms", p.algs,
		"userinfo", p.userinfoURL != "", "revocation", p.revocationURL != "", "iss_required", p.requireIss)
	return p, nil
}

func (p *Provider) discover(ctx context.Context) (metadata, error) {
	var md metadata
	wellKnown := strings.TrimSuffix(p.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		return md, fmt.Errorf("upstream: fetching discovery document: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return md, fmt.Errorf("upstream: fetching discovery document from %s: %w", wellKnown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return md, fmt.Errorf("upstream: fetching discovery document from %s: HTTP %d", wellKnown, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			p.log.Warn("discovery document is not served as application/json", "content_type", bounded(ct, 100))
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		return md, fmt.Errorf("upstream: reading discovery document from %s: %w", wellKnown, err)
	}
	if md.Issuer != p.cfg.Issuer {
		return md, fmt.Errorf("upstream: %w: discovery document at %s names issuer %q, configured %q", ErrIssuerMismatch, wellKnown, bounded(md.Issuer, 200), p.cfg.Issuer)
	}
	for _, e := range []struct{ name, v string }{
		{"authorization_endpoint", md.AuthorizationEndpoint}, {"token_endpoint", md.TokenEndpoint}, {"jwks_uri", md.JWKSURI},
	} {
		if e.v == "" {
			return md, fmt.Errorf("upstream: discovery document of %s has no %s", p.cfg.Issuer, e.name)
		}
	}
	for _, e := range []struct{ name, v string }{
		{"authorization_endpoint", md.AuthorizationEndpoint}, {"token_endpoint", md.TokenEndpoint}, {"jwks_uri", md.JWKSURI},
		{"userinfo_endpoint", md.UserinfoEndpoint}, {"revocation_endpoint", md.RevocationEndpoint}, {"end_session_endpoint", md.EndSessionEndpoint},
	} {
		if e.v != "" {
			if err := checkEndpoint("discovered "+e.name, e.v, p.cfg.AllowInsecureIssuer); err != nil {
				return md, err
			}
		}
	}
	return md, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// Issuer returns the configured issuer.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// AuthRequest holds one sign-in's values, which the caller generates and
// keeps (bound to the browser) until the callback.
type AuthRequest struct {
	// RedirectURL is the registered redirect URI.
	RedirectURL string
	// State is the opaque state echoed in the authorization response.
	State string
	// Nonce goes into the ID token; Exchange needs it back.
	Nonce string
	// PKCEVerifier is the RFC 7636 code verifier (43 to 128 characters; see
	// oauth2.GenerateVerifier); its S256 challenge is sent.
	PKCEVerifier string
	// Scopes are requested on top of the configured ones.
	Scopes []string
}

// AuthCodeURL returns the provider's authorization URL for a. It panics
// when RedirectURL, State, Nonce or PKCEVerifier is empty: signing in
// without them would be insecure, and it is a programming error.
func (p *Provider) AuthCodeURL(a AuthRequest) string {
	if a.RedirectURL == "" || a.State == "" || a.Nonce == "" || a.PKCEVerifier == "" {
		panic("upstream: AuthCodeURL needs RedirectURL, State, Nonce and PKCEVerifier")
	}
	cfg := p.oauth
	cfg.RedirectURL = a.RedirectURL
	cfg.Scopes = mergeScopes(p.scopes, a.Scopes)
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(a.PKCEVerifier), oidc.Nonce(a.Nonce)}
	if p.cfg.Prompt != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", p.cfg.Prompt))
	}
	return cfg.AuthCodeURL(a.State, opts...)
}

// mergeScopes is the ordered union, "openid" first.
func mergeScopes(lists ...[]string) []string {
	out := []string{"openid"}
	for _, l := range lists {
		for _, s := range l {
			if s != "" && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// CheckAuthorizationResponseIssuer applies RFC 9207 to the iss parameter of
// an authorization response ("" when absent): when present it must equal
// the issuer; when absent, it is an error if the provider advertises
// authorization_response_iss_parameter_supported (or the configuration
// requires it). Call it before Exchange, for error responses too.
func (p *Provider) CheckAuthorizationResponseIssuer(iss string) error {
	if iss == "" {
		if p.requireIss {
			return fmt.Errorf("upstream: %w: the authorization response has no iss parameter, which %s promises (RFC 9207)", ErrIssuerMismatch, p.cfg.Issuer)
		}
		return nil
	}
	if iss != p.cfg.Issuer {
		return fmt.Errorf("upstream: %w: the authorization response comes from issuer %q, expected %q (RFC 9207)", ErrIssuerMismatch, bounded(iss, 200), p.cfg.Issuer)
	}
	return nil
}

// EndSessionURL returns the provider's end_session_endpoint, "" if none.
func (p *Provider) EndSessionURL() string { return p.endSessionURL }

// LogoutURL builds an RP-initiated logout URL (OpenID Connect RP-Initiated
// Logout 1.0) with client_id and, when given, id_token_hint,
// post_logout_redirect_uri and state. It returns "" when the provider has no
// end_session_endpoint.
func (p *Provider) LogoutURL(idTokenHint, postLogoutRedirectURI, state string) string {
	if p.endSessionURL == "" {
		return ""
	}
	u, err := url.Parse(p.endSessionURL)
	if err != nil {
		return ""
	}
	q := u.Query()
	q.Set("client_id", p.cfg.ClientID)
	for k, v := range map[string]string{"id_token_hint": idTokenHint, "post_logout_redirect_uri": postLogoutRedirectURI, "state": state} {
		if v != "" {
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// ctx returns ctx carrying the back-channel client for go-oidc and x/oauth2.
func (p *Provider) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, p.client)
}
