// Package oidccluster is the strategy of the oidc-cluster plugin: it hands a
// cluster that trusts SpectroCloud as its OpenID Connect issuer the user's
// own SpectroCloud ID token, after checking it the way kube-apiserver's JWT
// authenticator will, so that a token the cluster would reject is refused
// here with a reason instead of failing later at the API server.
//
// It offers one strategy, "oidc". Its options (per cluster, or per source
// for discovered clusters):
//
//	clientId:      the cluster's oidc-client-id; the token's aud must hold it.
//	               Default: the cluster's spectrocloud.com/oidc-client-id
//	               annotation (which the palette-clusters source sets).
//	issuer:        the cluster's oidc-issuer-url; when set, iss must equal it.
//	               Default: the cluster's spectrocloud.com/oidc-issuer-url
//	               annotation; without either, any https issuer passes.
//	usernameClaim: the cluster's oidc-username-claim, which must be present
//	               (default email, as Palette configures clusters).
//	minValidity:   refuse a token with less time left (default 30s).
//
// It never hands out the Palette session token: only an ID token signed
// with a public-key algorithm, which is what a cluster can verify.
package oidccluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
)

// StrategyName is the strategy this plugin offers.
const StrategyName = "oidc"

// Annotations a cluster source may set to tell the strategy the cluster's
// OpenID Connect settings (palette-clusters reads them from the cluster's
// kubeconfig).
const (
	AnnotationClientID = "spectrocloud.com/oidc-client-id"
	AnnotationIssuer   = "spectrocloud.com/oidc-issuer-url"
)

// Defaults of the options.
const (
	DefaultUsernameClaim = "email"
	DefaultMinValidity   = 30 * time.Second
)

// maxJWT bounds the token the strategy parses.
const maxJWT = sdk.MaxTokenLength

// Strategy is the oidc strategy. The zero value is ready; Now is for tests.
type Strategy struct {
	// Now defaults to time.Now.
	Now func() time.Time
}

// Plugin describes the plugin for sdk.Serve.
func Plugin() sdk.Plugin {
	s := &Strategy{}
	return sdk.Plugin{Name: "oidc-cluster", ClusterStrategy: s, OptionsValidator: s,
		// The cluster verifies the ID token itself; it needs nothing else.
		StrategyTokens: map[string][]sdk.Token{StrategyName: {sdk.TokenID}}}
}

// What Plugin registers, checked by the compiler.
var (
	_ sdk.ClusterStrategy  = (*Strategy)(nil)
	_ sdk.OptionsValidator = (*Strategy)(nil)
)

var (
	_ sdk.ClusterStrategy  = (*Strategy)(nil)
	_ sdk.OptionsValidator = (*Strategy)(nil)
)

// Strategies implements sdk.ClusterStrategy.
func (s *Strategy) Strategies() []string { return []string{StrategyName} }

// options are the checked options of one request.
type options struct {
	clientID, issuer, usernameClaim string
	minValidity                     time.Duration
}

func parseOptions(o sdk.Options) (options, error) {
	var opts options
	if err := o.RejectUnknown("clientId", "issuer", "usernameClaim", "minValidity"); err != nil {
		return opts, err
	}
	var err error
	if opts.clientID, err = o.StringOr("clientId", ""); err != nil {
		return opts, err
	}
	if opts.issuer, err = o.StringOr("issuer", ""); err != nil {
		return opts, err
	}
	if opts.issuer != "" {
		if u, err := url.Parse(opts.issuer); err != nil || u.Scheme != "https" || u.Host == "" {
			return opts, sdk.ConfigErrorf("issuer", "must be an https URL, as kube-apiserver requires, not %q", opts.issuer)
		}
	}
	if opts.usernameClaim, err = o.StringOr("usernameClaim", DefaultUsernameClaim); err != nil {
		return opts, err
	}
	if opts.usernameClaim == "" {
		return opts, sdk.ConfigErrorf("usernameClaim", "must not be empty")
	}
	if opts.minValidity, err = o.Duration("minValidity", DefaultMinValidity); err != nil {
		return opts, err
	}
	if opts.minValidity < 0 {
		return opts, sdk.ConfigErrorf("minValidity", "must not be negative")
	}
	return opts, nil
}

// ValidateOptions implements sdk.OptionsValidator.
func (s *Strategy) ValidateOptions(_ context.Context, req sdk.ValidateOptionsRequest) error {
	_, err := parseOptions(req.Options)
	return err
}

// refuse is a token the cluster would reject: the user sees why.
func refuse(format string, a ...any) error {
	return sdk.InvalidInputf("Session.IDToken", format, a...)
}

// Credential implements sdk.ClusterStrategy.
func (s *Strategy) Credential(ctx context.Context, req sdk.CredentialRequest) (sdk.Credential, error) {
	if err := ctx.Err(); err != nil {
		return sdk.Credential{}, err
	}
	opts, err := parseOptions(req.Options)
	if err != nil {
		return sdk.Credential{}, err
	}
	clientID := opts.clientID
	if clientID == "" {
		clientID = req.Cluster.Annotations[AnnotationClientID]
	}
	if clientID == "" {
		return sdk.Credential{}, sdk.ConfigErrorf("clientId", "is required: the cluster %q has no %s annotation to take it from", req.Cluster.Name, AnnotationClientID)
	}
	issuer := opts.issuer
	if issuer == "" {
		issuer = req.Cluster.Annotations[AnnotationIssuer]
	}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}

	token := req.Session.IDToken
	if token == "" {
		return sdk.Credential{}, refuse("the session holds no SpectroCloud ID token; sign in again")
	}
	if token == req.Session.PaletteSessionToken {
		return sdk.Credential{}, refuse("the session's ID token is the Palette session token, which no cluster accepts")
	}
	header, claims, err := parseJWT(token)
	if err != nil {
		return sdk.Credential{}, refuse("not a JWT: %v", err)
	}
	if !asymmetric(header.Alg) {
		return sdk.Credential{}, refuse("signed with %q, which a cluster cannot verify with the issuer's public keys (a Palette session token?)", truncate(header.Alg))
	}
	iss := claims.String("iss")
	if u, err := url.Parse(iss); iss == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		return sdk.Credential{}, refuse("issuer %q is not an https URL, which kube-apiserver requires", truncate(iss))
	}
	if issuer != "" && iss != issuer {
		return sdk.Credential{}, refuse("issued by %q, but cluster %q trusts %q", truncate(iss), req.Cluster.Name, issuer)
	}
	if aud := claims.Strings("aud"); !slices.Contains(aud, clientID) {
		return sdk.Credential{}, refuse("its audience %q does not hold cluster %q's client id %q", truncateList(aud), req.Cluster.Name, clientID)
	}
	exp := claims.Time("exp")
	if exp.IsZero() {
		return sdk.Credential{}, refuse("it has no exp claim")
	}
	if left := exp.Sub(now); left <= opts.minValidity {
		if left <= 0 {
			return sdk.Credential{}, refuse("it expired at %s; sign in again", exp.Format(time.RFC3339))
		}
		return sdk.Credential{}, refuse("it expires in %s, less than the %s required; sign in again", left.Round(time.Second), opts.minValidity)
	}
	if nbf := claims.Time("nbf"); !nbf.IsZero() && nbf.After(now.Add(time.Minute)) {
		return sdk.Credential{}, refuse("it is not valid before %s", nbf.Format(time.RFC3339))
	}
	switch v := claims[opts.usernameClaim].(type) {
	case string:
		if v == "" {
			return sdk.Credential{}, refuse("its username claim %q is empty", opts.usernameClaim)
		}
	default:
		return sdk.Credential{}, refuse("it has no string %q claim, the cluster's username claim", opts.usernameClaim)
	}
	if opts.usernameClaim == "email" && claims.Has("email_verified") {
		if v, ok := claims["email_verified"].(bool); !ok || !v {
			return sdk.Credential{}, refuse("its email is not verified (email_verified is %v), which kube-apiserver rejects", claims["email_verified"])
		}
	}
	return sdk.Credential{Token: token, ExpiresAt: exp}, nil
}

type jwtHeader struct {
	Alg string `json:"alg"`
}

// parseJWT decodes a compact JWS without verifying it: the daemon verified
// the ID token when the user signed in; the cluster verifies it again.
func parseJWT(token string) (jwtHeader, sdk.Claims, error) {
	var h jwtHeader
	if len(token) > maxJWT {
		return h, nil, fmt.Errorf("%d bytes, more than %d", len(token), maxJWT)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[2] == "" {
		return h, nil, fmt.Errorf("%d segments, want 3 with a signature", len(parts))
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &h) != nil {
		return h, nil, fmt.Errorf("the header is not base64url JSON")
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return h, nil, fmt.Errorf("the payload is not base64url")
	}
	var claims sdk.Claims
	if err := json.Unmarshal(pb, &claims); err != nil || claims == nil {
		return h, nil, fmt.Errorf("the payload is not a JSON object")
	}
	return h, claims, nil
}

// asymmetric reports whether alg is a public-key JWS algorithm, which is
// all kube-apiserver verifies.
func asymmetric(alg string) bool {
	switch alg {
	case "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA":
		return true
	}
	return false
}

func truncate(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:80] + "…"
}

func truncateList(l []string) []string {
	if len(l) > 5 {
		l = l[:5]
	}
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = truncate(s)
	}
	return out
}
