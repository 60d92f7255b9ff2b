package tokenexchange

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
)

// StrategyName is the strategy this plugin offers.
const StrategyName = "exchange"

// Strategy is the exchange strategy. Configure it before use.
type Strategy struct {
	cfg    Config
	client *http.Client
	// Now defaults to time.Now.
	Now func() time.Time
}

// Plugin describes the plugin for sdk.Serve.
func Plugin() sdk.Plugin {
	s := &Strategy{}
	return sdk.Plugin{Name: "token-exchange", ClusterStrategy: s, Configurer: s, OptionsValidator: s,
		// It exchanges the ID or the access token, as the configuration's
		// subjectTokenType says (known only after Describe); never the
		// Palette session token.
		StrategyTokens: map[string][]sdk.Token{StrategyName: {sdk.TokenID, sdk.TokenAccess}}}
}

// What Plugin registers, checked by the compiler.
var (
	_ sdk.ClusterStrategy  = (*Strategy)(nil)
	_ sdk.Configurer       = (*Strategy)(nil)
	_ sdk.OptionsValidator = (*Strategy)(nil)
)

var (
	_ sdk.ClusterStrategy  = (*Strategy)(nil)
	_ sdk.Configurer       = (*Strategy)(nil)
	_ sdk.OptionsValidator = (*Strategy)(nil)
)

// Configure implements sdk.Configurer.
func (s *Strategy) Configure(_ context.Context, cfg sdk.Config) error {
	c, err := ParseConfig(cfg.Values)
	if err != nil {
		return err
	}
	s.cfg = c
	s.client = &http.Client{
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			TLSClientConfig:     c.tlsConfig(),
			TLSHandshakeTimeout: c.Timeout,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		},
		// A token endpoint does not redirect; following one would resend
		// the subject token and the client secret elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return nil
}

// Strategies implements sdk.ClusterStrategy.
func (s *Strategy) Strategies() []string { return []string{StrategyName} }

// ValidateOptions implements sdk.OptionsValidator.
func (s *Strategy) ValidateOptions(_ context.Context, req sdk.ValidateOptionsRequest) error {
	_, err := parseOptions(req.Options)
	return err
}

// tokenResponse is RFC 8693 section 2.2.1.
type tokenResponse struct {
	AccessToken     string          `json:"access_token"`
	IssuedTokenType string          `json:"issued_token_type"`
	TokenType       string          `json:"token_type"`
	ExpiresIn       json.RawMessage `json:"expires_in"`
}

// errorResponse is RFC 6749 section 5.2.
type errorResponse struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// Credential implements sdk.ClusterStrategy.
func (s *Strategy) Credential(ctx context.Context, req sdk.CredentialRequest) (sdk.Credential, error) {
	if s.client == nil {
		return sdk.Credential{}, sdk.ConfigErrorf("", "the plugin is not configured")
	}
	opts, err := parseOptions(req.Options)
	if err != nil {
		return sdk.Credential{}, err
	}
	// subjectTokenType says which of the user's SpectroCloud tokens the STS
	// exchanges: the access token, or the ID token (a JWT). Never the
	// Palette session token.
	subject, field, what := req.Session.IDToken, "Session.IDToken", "ID token"
	if s.cfg.SubjectTokenType == TokenTypeAccess {
		subject, field, what = req.Session.AccessToken, "Session.AccessToken", "access token"
	}
	if subject == "" {
		return sdk.Credential{}, sdk.InvalidInputf(field, "the session holds no SpectroCloud %s; sign in again", what)
	}
	if s.cfg.SubjectTokenType != TokenTypeAccess {
		if parts := strings.Split(subject, "."); len(parts) != 3 || len(subject) > sdk.MaxTokenLength {
			return sdk.Credential{}, sdk.InvalidInputf(field, "not a JWT ID token")
		}
	}
	if err := ctx.Err(); err != nil {
		return sdk.Credential{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()

	form := url.Values{
		"grant_type":         {GrantType},
		"subject_token":      {subject},
		"subject_token_type": {s.cfg.SubjectTokenType},
		"audience":           {opts.audience},
	}
	if opts.scope != "" {
		form.Set("scope", opts.scope)
	}
	if opts.resource != "" {
		form.Set("resource", opts.resource)
	}
	if s.cfg.RequestedTokenType != "" {
		form.Set("requested_token_type", s.cfg.RequestedTokenType)
	}
	switch s.cfg.ClientAuth {
	case authPost:
		form.Set("client_id", s.cfg.ClientID)
		form.Set("client_secret", s.cfg.ClientSecret)
	case authNone:
		if s.cfg.ClientID != "" {
			form.Set("client_id", s.cfg.ClientID)
		}
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.TokenEndpoint.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return sdk.Credential{}, fmt.Errorf("building the token exchange request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hreq.Header.Set("Accept", "application/json")
	if s.cfg.ClientAuth == authBasic {
		// RFC 6749 section 2.3.1: both parts form-encoded first.
		hreq.SetBasicAuth(url.QueryEscape(s.cfg.ClientID), url.QueryEscape(s.cfg.ClientSecret))
	}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	res, err := s.client.Do(hreq)
	if err != nil {
		return sdk.Credential{}, fmt.Errorf("token exchange at %s: %w", s.cfg.TokenEndpoint.Host, unwrapURLError(err))
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBody+1))
	if err != nil {
		return sdk.Credential{}, fmt.Errorf("reading the token exchange answer from %s: %w", s.cfg.TokenEndpoint.Host, unwrapURLError(err))
	}
	if len(body) > maxResponseBody {
		return sdk.Credential{}, fmt.Errorf("the token exchange answer from %s is larger than %d bytes", s.cfg.TokenEndpoint.Host, maxResponseBody)
	}
	if res.StatusCode != http.StatusOK {
		return sdk.Credential{}, s.stsError(res, body, opts)
	}
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt != "application/json" {
		return sdk.Credential{}, fmt.Errorf("the token exchange answer from %s is %q, not application/json", s.cfg.TokenEndpoint.Host, quote(mt))
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return sdk.Credential{}, fmt.Errorf("the token exchange answer from %s is not JSON: %w", s.cfg.TokenEndpoint.Host, err)
	}
	if tr.AccessToken == "" {
		return sdk.Credential{}, fmt.Errorf("the token exchange answer from %s has no access_token", s.cfg.TokenEndpoint.Host)
	}
	if tt := strings.ToLower(tr.TokenType); tt != "bearer" && tt != "n_a" {
		return sdk.Credential{}, fmt.Errorf("the STS at %s issued a token of type %q; only bearer tokens work with Kubernetes", s.cfg.TokenEndpoint.Host, quote(tr.TokenType))
	}
	cred := sdk.Credential{Token: tr.AccessToken, ExpiresAt: expiry(tr, now)}
	if err := cred.Validate(); err != nil {
		return sdk.Credential{}, fmt.Errorf("the STS at %s issued an unusable token: %w", s.cfg.TokenEndpoint.Host, err)
	}
	return cred, nil
}

// stsError turns an error answer into the error the daemon reports: a
// refusal the user reads, a configuration error the operator fixes, or a
// failure.
func (s *Strategy) stsError(res *http.Response, body []byte, opts clusterOptions) error {
	host := s.cfg.TokenEndpoint.Host
	var er errorResponse
	if json.Unmarshal(body, &er) != nil || er.Error == "" {
		return fmt.Errorf("the STS at %s answered %s", host, res.Status)
	}
	what := quote(er.Error)
	if er.Description != "" {
		what += ": " + quote(er.Description)
	}
	switch er.Error {
	case "invalid_grant":
		return sdk.InvalidInputf("Session.IDToken", "the STS refused your SpectroCloud ID token (%s)", what)
	case "access_denied", "invalid_target", "unauthorized_target":
		return fmt.Errorf("the STS refused a token for audience %q (%s): %w", opts.audience, what, sdk.ErrNotFound)
	case "invalid_client":
		return sdk.ConfigErrorf("clientSecret", "the STS at %s refused the client credentials (%s)", host, what)
	case "unauthorized_client", "unsupported_grant_type":
		return sdk.ConfigErrorf("clientId", "the STS at %s does not allow this client to exchange tokens (%s)", host, what)
	case "invalid_scope":
		return sdk.ConfigErrorf("scope", "the STS at %s refused the scope (%s)", host, what)
	}
	return fmt.Errorf("the STS at %s answered %s (%s)", host, res.Status, what)
}

// expiry is expires_in from now, else the issued JWT's exp, else unknown.
func expiry(tr tokenResponse, now time.Time) time.Time {
	if len(tr.ExpiresIn) > 0 {
		var n json.Number
		if json.Unmarshal(tr.ExpiresIn, &n) == nil {
			if secs, err := n.Int64(); err == nil && secs > 0 && secs < 1<<31 {
				return now.Add(time.Duration(secs) * time.Second)
			}
		}
		var str string
		if json.Unmarshal(tr.ExpiresIn, &str) == nil {
			var secs int64
			if _, err := fmt.Sscan(str, &secs); err == nil && secs > 0 && secs < 1<<31 {
				return now.Add(time.Duration(secs) * time.Second)
			}
		}
	}
	parts := strings.Split(tr.AccessToken, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var claims sdk.Claims
	if json.Unmarshal(raw, &claims) != nil {
		return time.Time{}
	}
	return claims.Time("exp")
}

// quote keeps an STS-supplied string short and printable.
func quote(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > maxErrorQuoteBytes {
		s = s[:maxErrorQuoteBytes] + "…"
	}
	return s
}

// unwrapURLError drops *url.Error's wrapping, whose message repeats the URL,
// and keeps context errors recognisable.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
