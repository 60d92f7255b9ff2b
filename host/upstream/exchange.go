package upstream

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// maxIssuedAtSkew is how far in the future an ID token's iat may lie
// (clock skew between us and the provider).
const maxIssuedAtSkew = 2 * time.Minute

// Exchange redeems an authorization code (with the PKCE verifier and the
// redirect URI of the authorization request) and verifies the ID token
// against expectedNonce. Call CheckAuthorizationResponseIssuer first.
func (p *Provider) Exchange(ctx context.Context, code, redirectURL, pkceVerifier, expectedNonce string) (*Tokens, error) {
	switch {
	case code == "":
		return nil, errors.New("upstream: exchanging the authorization code: no code")
	case redirectURL == "":
		return nil, errors.New("upstream: exchanging the authorization code: no redirect URI")
	case pkceVerifier == "":
		return nil, errors.New("upstream: exchanging the authorization code: no PKCE verifier")
	case expectedNonce == "":
		return nil, errors.New("upstream: exchanging the authorization code: no expected nonce")
	}
	const op = "exchanging the authorization code"
	tok, err := p.oauth.Exchange(p.ctx(ctx), code,
		oauth2.VerifierOption(pkceVerifier),
		oauth2.SetAuthURLParam("redirect_uri", redirectURL))
	if err != nil {
		return nil, p.tokenEndpointError(op, err)
	}
	t, err := p.tokensFromResponse(ctx, op, tok, idTokenCheck{nonce: expectedNonce}, nil)
	if err != nil {
		return nil, err
	}
	p.log.Debug("signed in upstream", "sub", t.Profile.Subject, "refresh_token", t.RefreshToken != "",
		"palette_session_token", t.PaletteSessionToken != "")
	return t, nil
}

// Refresh uses t's refresh token; t should be a Tokens value returned by
// Exchange or Refresh (possibly stored and loaded as JSON), whose Claims
// anchor the subject and audience. The result keeps t's ID token, expiry and
// claims when the provider returns no new ID token; a new one must be valid
// and name the same subject and audience (OpenID Connect Core 12.2). With
// rotation the new refresh token replaces the old one; the caller must store
// the result. Without a refresh token it returns ErrNoRefreshToken; when the
// provider refuses the refresh token, IsInvalidGrant(err) is true.
func (p *Provider) Refresh(ctx context.Context, t *Tokens) (*Tokens, error) {
	if t == nil || t.RefreshToken == "" {
		return nil, ErrNoRefreshToken
	}
	const op = "refreshing tokens"
	tok, err := p.oauth.TokenSource(p.ctx(ctx), &oauth2.Token{RefreshToken: t.RefreshToken}).Token()
	if err != nil {
		return nil, p.tokenEndpointError(op, err)
	}
	nt, err := p.tokensFromResponse(ctx, op, tok, idTokenCheck{}, t)
	if err != nil {
		return nil, err
	}
	p.log.Debug("refreshed upstream tokens", "sub", nt.Profile.Subject, "new_id_token", nt.IDToken != t.IDToken,
		"rotated", nt.RefreshToken != t.RefreshToken)
	return nt, nil
}

// tokensFromResponse turns a token response into Tokens. prev is the
// session being refreshed, nil on the code exchange.
func (p *Provider) tokensFromResponse(ctx context.Context, op string, tok *oauth2.Token, chk idTokenCheck, prev *Tokens) (*Tokens, error) {
	if tt := tok.TokenType; tt != "" && !strings.EqualFold(tt, "bearer") {
		return nil, fmt.Errorf("upstream: %s: unsupported token type %q", op, bounded(tt, 40))
	}
	t := &Tokens{
		AccessToken:       tok.AccessToken,
		TokenType:         tok.Type(),
		AccessTokenExpiry: tok.Expiry,
	}
	if s, ok := tok.Extra("scope").(string); ok {
		t.Scope = s
	}
	refresh := tok.RefreshToken
	if !p.cfg.DisablePaletteSessionTokenDetection && isPaletteSessionToken(refresh) {
		// Palette hands its HS256 REST session token out as refresh_token.
		// It is not a refresh token.
		t.PaletteSessionToken, refresh = refresh, ""
	}
	t.RefreshToken = refresh

	rawID, _ := tok.Extra("id_token").(string)
	if prev != nil {
		if t.RefreshToken == "" {
			// No new refresh token: the old one stays valid (RFC 6749 6).
			t.RefreshToken = prev.RefreshToken
		}
		if t.PaletteSessionToken == "" {
			t.PaletteSessionToken = prev.PaletteSessionToken
		}
		if t.Scope == "" {
			t.Scope = prev.Scope
		}
		if rawID == "" {
			t.IDToken, t.IDTokenExpiry = prev.IDToken, prev.IDTokenExpiry
			t.Claims, t.Profile = prev.Claims, prev.Profile
			t.fromIDToken = prev.fromIDToken
			return t, nil
		}
		chk.original = prev
	} else if rawID == "" {
		return nil, fmt.Errorf("upstream: %s: the token response has no ID token (was the openid scope granted?)", op)
	}
	chk.accessToken = t.AccessToken
	idt, claims, err := p.verifyIDToken(ctx, rawID, chk)
	if err != nil {
		return nil, fmt.Errorf("upstream: %s: %w", op, err)
	}
	t.IDToken, t.IDTokenExpiry = rawID, idt.Expiry
	fromIDToken := len(claims)
	if _, hasEmail := claims["email"]; !hasEmail && t.AccessToken != "" && p.userinfoURL != "" && !p.cfg.DisableUserinfo {
		p.mergeUserinfo(ctx, t, idt.Subject, claims)
	}
	t.Claims = claims
	if len(claims) == fromIDToken {
		t.fromIDToken = claimsSource{idToken: rawID, claims: claims, n: len(claims)}
	}
	t.Profile = ProfileFromClaims(claims, p.cfg.TrustEmailWithoutVerifiedClaim)
	return t, nil
}

// idTokenCheck is what an ID token must match besides the provider's keys,
// issuer, audience and expiry.
type idTokenCheck struct {
	nonce       string  // expected nonce; "" on refresh
	accessToken string  // checked against at_hash when both are present
	original    *Tokens // on refresh: the session's tokens
}

// verifyIDToken validates raw per OpenID Connect Core 3.1.3.7 (and 12.2 on
// refresh). go-oidc checks the signature against the provider's JWKS (with
// the accepted algorithms only; it refetches on an unknown key ID), iss,
// aud and exp; the rest is checked here.
func (p *Provider) verifyIDToken(ctx context.Context, raw string, chk idTokenCheck) (*oidc.IDToken, map[string]any, error) {
	ctx, fetch := withKeyFetchRecorder(ctx)
	idt, err := p.verifier.Verify(ctx, raw)
	if err != nil && fetch.err != nil {
		// Not a verdict on the token: its key could not be fetched.
		return nil, nil, fmt.Errorf("upstream: verifying the ID token: %w: %s", ErrKeysUnavailable, bounded(fetch.err.Error(), 300))
	}
	if err != nil {
		// go-oidc may quote a JWKS error response body: keep it short.
		return nil, nil, fmt.Errorf("%w: %s", ErrInvalidIDToken, bounded(err.Error(), 300))
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return nil, nil, fmt.Errorf("%w: decoding claims: %v", ErrInvalidIDToken, err)
	}
	fail := func(format string, args ...any) (*oidc.IDToken, map[string]any, error) {
		return nil, nil, fmt.Errorf("%w: "+format, append([]any{ErrInvalidIDToken}, args...)...)
	}
	if idt.Subject == "" {
		return fail("no sub claim")
	}
	azp, hasAzp := claims["azp"]
	if len(idt.Audience) > 1 && !hasAzp {
		return fail("several audiences but no azp claim")
	}
	if hasAzp {
		if s, _ := azp.(string); s != p.cfg.ClientID {
			return fail("azp %q is not this client", bounded(fmt.Sprint(azp), 100))
		}
	}
	if idt.IssuedAt.IsZero() {
		return fail("no iat claim")
	}
	if idt.IssuedAt.After(time.Now().Add(maxIssuedAtSkew)) {
		return fail("iat %s lies in the future", idt.IssuedAt.UTC().Format(time.RFC3339))
	}
	if chk.nonce != "" && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(chk.nonce)) != 1 {
		return fail("nonce does not match this sign-in")
	}
	if idt.AccessTokenHash != "" && chk.accessToken != "" {
		if err := idt.VerifyAccessToken(chk.accessToken); err != nil {
			return fail("at_hash does not match the access token: %v", err)
		}
	}
	if o := chk.original; o != nil {
		sub, _ := o.Claims["sub"].(string)
		if sub == "" {
			sub = o.Profile.Subject
		}
		if sub == "" || sub != idt.Subject {
			return fail("the refreshed ID token names another subject than the session")
		}
		if aud, ok := o.Claims["aud"]; ok && !sameAudience(aud, idt.Audience) {
			return fail("the refreshed ID token has another audience")
		}
		if prevAuth, ok := o.Claims["auth_time"].(float64); ok {
			if auth, ok := claims["auth_time"].(float64); ok && int64(auth) != int64(prevAuth) {
				return fail("the refreshed ID token has another auth_time")
			}
		}
		if prevNonce, _ := o.Claims["nonce"].(string); idt.Nonce != "" && prevNonce != "" &&
			subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(prevNonce)) != 1 {
			return fail("the refreshed ID token has another nonce")
		}
	}
	return idt, claims, nil
}

func sameAudience(prev any, now []string) bool {
	var was []string
	switch a := prev.(type) {
	case string:
		was = []string{a}
	case []any:
		for _, v := range a {
			s, ok := v.(string)
			if !ok {
				return false
			}
			was = append(was, s)
		}
	case []string:
		was = a
	default:
		return false
	}
	if len(was) != len(now) {
		return false
	}
	for _, a := range now {
		if !slices.Contains(was, a) {
			return false
		}
	}
	return true
}

// isPaletteSessionToken reports whether tok is a JWS signed with HS256, as
// SpectroCloud Palette's session token is. Keycloak-style HMAC refresh
// tokens (typ "Refresh" or "Offline") are left alone.
func isPaletteSessionToken(tok string) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	seg := func(s string) map[string]any {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		if err != nil {
			return nil
		}
		var m map[string]any
		if json.Unmarshal(b, &m) != nil {
			return nil
		}
		return m
	}
	h := seg(parts[0])
	if h == nil || h["alg"] != "HS256" {
		return false
	}
	if body := seg(parts[1]); body != nil {
		if typ, _ := body["typ"].(string); strings.EqualFold(typ, "Refresh") || strings.EqualFold(typ, "Offline") {
			return false
		}
	}
	return true
}

// mergeUserinfo adds userinfo claims the ID token lacks. Failures only log:
// the ID token alone is a valid sign-in. A response for another subject is
// discarded (OpenID Connect Core 5.3.2).
func (p *Provider) mergeUserinfo(ctx context.Context, t *Tokens, sub string, claims map[string]any) {
	ui, err := p.oidcProv.UserInfo(p.ctx(ctx), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: t.AccessToken, TokenType: "Bearer"}))
	if err != nil {
		p.log.Warn("reading userinfo failed; using the ID token alone", "error", bounded(err.Error(), 300))
		return
	}
	if ui.Subject != sub {
		p.log.Warn("userinfo answered for another subject; ignored")
		return
	}
	var uc map[string]any
	if err := ui.Claims(&uc); err != nil {
		p.log.Warn("decoding userinfo failed; using the ID token alone", "error", err)
		return
	}
	for k, v := range uc {
		if _, ok := claims[k]; ok || protectedClaims[k] {
			continue
		}
		claims[k] = v
	}
}

// protectedClaims never come from userinfo.
var protectedClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true, "nbf": true, "jti": true,
	"nonce": true, "azp": true, "at_hash": true, "c_hash": true, "auth_time": true, "acr": true,
	"amr": true, "sid": true,
}

// tokenEndpointError rewrites x/oauth2's errors, whose text can carry the
// raw response body, into TokenError or a bare description.
func (p *Provider) tokenEndpointError(op string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		te := &TokenError{Op: op, Code: bounded(re.ErrorCode, 64), Description: bounded(re.ErrorDescription, 200)}
		if re.Response != nil {
			te.StatusCode = re.Response.StatusCode
		}
		return te
	}
	if errors.Is(err, ErrResponseTooLarge) || errors.Is(err, ErrRedirectNotFollowed) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("upstream: %s: %w", op, err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("upstream: %s: %w", op, err)
	}
	// x/oauth2 parse errors ("oauth2: cannot parse json: ...") hold no body,
	// but keep the text short in case a future version adds one.
	return fmt.Errorf("upstream: %s: %s", op, bounded(err.Error(), 200))
}

// Revoke revokes t's refresh token and access token (RFC 7009). It does
// nothing when the provider has no revocation endpoint. The Palette session
// token is not revocable this way.
func (p *Provider) Revoke(ctx context.Context, t *Tokens) error {
	if p.revocationURL == "" || t == nil {
		return nil
	}
	var errs []error
	if t.RefreshToken != "" {
		errs = append(errs, p.revoke(ctx, t.RefreshToken, "refresh_token"))
	}
	if t.AccessToken != "" {
		errs = append(errs, p.revoke(ctx, t.AccessToken, "access_token"))
	}
	return errors.Join(errs...)
}

func (p *Provider) revoke(ctx context.Context, token, hint string) error {
	op := "revoking the " + strings.ReplaceAll(hint, "_", " ")
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	if p.cfg.TokenEndpointAuthMethod == AuthMethodPost {
		form.Set("client_id", p.cfg.ClientID)
		form.Set("client_secret", p.cfg.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.revocationURL, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("upstream: %s: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if p.cfg.TokenEndpointAuthMethod != AuthMethodPost {
		req.SetBasicAuth(url.QueryEscape(p.cfg.ClientID), url.QueryEscape(p.cfg.ClientSecret))
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("upstream: %s: %w", op, err)
	}
	defer resp.Body.Close()
	body, readErr := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	te := &TokenError{Op: op, StatusCode: resp.StatusCode}
	if readErr == nil {
		var e struct {
			Code        string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &e) == nil {
			te.Code, te.Description = bounded(e.Code, 64), bounded(e.Description, 200)
		}
	}
	if te.Code == "unsupported_token_type" {
		p.log.Debug("provider cannot revoke this token type", "hint", hint)
		return nil
	}
	return te
}

// ErrNoUserinfo: the provider has no userinfo endpoint (or it is disabled),
// so a session without a refresh token cannot be revalidated; it ends when
// its ID token expires.
var ErrNoUserinfo = errors.New("upstream: the provider has no userinfo endpoint to revalidate with")

// CheckUserinfo asks the provider whether t's access token is still good,
// by reading userinfo (OpenID Connect Core 5.3): how a session without a
// refresh grant is revalidated. A 401 or 403, or an answer for another
// subject, is a refusal (a TokenError with that status, or
// ErrInvalidIDToken); failures to reach the provider satisfy Unavailable.
func (p *Provider) CheckUserinfo(ctx context.Context, t *Tokens) error {
	if p.userinfoURL == "" || p.cfg.DisableUserinfo {
		return ErrNoUserinfo
	}
	const op = "revalidating with userinfo"
	if t == nil || t.AccessToken == "" {
		return &TokenError{Op: op, Code: "invalid_token", Description: "the session holds no access token"}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.userinfoURL, nil)
	if err != nil {
		return fmt.Errorf("upstream: %s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+t.AccessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("upstream: %s: %w", op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return &TokenError{Op: op, StatusCode: resp.StatusCode}
	}
	var ui struct {
		Subject string `json:"sub"`
	}
	// A signed (JWT) userinfo answer is not decoded: reaching the endpoint
	// with a 200 is the verdict that matters here.
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ui); err != nil {
			return fmt.Errorf("upstream: %s: decoding the answer: %w", op, err)
		}
		sub, _ := t.Claims["sub"].(string)
		if sub == "" {
			sub = t.Profile.Subject
		}
		if ui.Subject != sub {
			return fmt.Errorf("upstream: %s: %w: userinfo names another subject than the session", op, ErrInvalidIDToken)
		}
	}
	return nil
}
