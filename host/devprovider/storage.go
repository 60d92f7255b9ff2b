package devprovider

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage is the provider's in-memory op.Storage. Everything lives in maps
// under one mutex; a development provider never holds many entries.
type storage struct {
	cfg *Config // read-only after New

	mu            sync.Mutex
	clients       map[string]*client
	users         map[string]*User // by ID
	usersByName   map[string]*User
	authRequests  map[string]*authRequest
	codes         map[string]string // code -> auth request ID
	accessTokens  map[string]*accessToken
	refreshTokens map[string]*refreshToken
	// rotated remembers refresh tokens replaced by rotation, so that
	// replaying one revokes its family (RFC 9700 section 4.14.2), until
	// the rotated token would have expired: an expired token is refused
	// anyway, so it is forgotten (pruneLocked).
	rotated map[string]rotatedToken
	// pruneAt is the number of tokens held (access, refresh live or spent
	// within a grace, rotated) past which the next token issued drops the
	// expired ones; it follows what is left, so pruning costs O(1)
	// amortised.
	pruneAt int
	// chainsRevoked counts the families revoked because a rotated token
	// was replayed (Counters.RefreshChainsRevoked).
	chainsRevoked int64
	keys          []*signingKey // last is current
}

var (
	_ op.Storage                   = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest = (*storage)(nil)
)

func newStorage(cfg *Config, key *rsa.PrivateKey) *storage {
	s := &storage{
		cfg:           cfg,
		clients:       map[string]*client{},
		users:         map[string]*User{},
		usersByName:   map[string]*User{},
		authRequests:  map[string]*authRequest{},
		codes:         map[string]string{},
		accessTokens:  map[string]*accessToken{},
		refreshTokens: map[string]*refreshToken{},
		rotated:       map[string]rotatedToken{},
		pruneAt:       minPruneAt,
	}
	for i := range cfg.Clients {
		s.clients[cfg.Clients[i].ID] = &client{Client: cfg.Clients[i], cfg: cfg}
	}
	for i := range cfg.Users {
		u := &cfg.Users[i]
		s.users[u.ID] = u
		s.usersByName[u.Username] = u
	}
	s.keys = []*signingKey{{id: randomID(), key: key}}
	return s
}

func randomID() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// ---- keys ----

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return &p.k.key.PublicKey }

func (s *storage) currentKey() *signingKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[len(s.keys)-1]
}

func (s *storage) addKey(key *rsa.PrivateKey) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := &signingKey{id: randomID(), key: key}
	s.keys = append(s.keys, k)
	return k.id
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.currentKey(), nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

// KeySet publishes every key ever used, so tokens signed before a rotation
// stay verifiable.
func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]op.Key, 0, len(s.keys))
	for i := len(s.keys) - 1; i >= 0; i-- {
		keys = append(keys, publicKey{s.keys[i]})
	}
	return keys, nil
}

// ---- clients ----

type client struct {
	Client
	cfg *Config
}

var _ op.Client = (*client)(nil)

func (c *client) GetID() string                       { return c.ID }
func (c *client) RedirectURIs() []string              { return c.Client.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string    { return c.Client.PostLogoutRedirectURIs }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethod(c.Client.AuthMethod) }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	if c.cfg.RefreshTokens {
		return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
	}
	return []oidc.GrantType{oidc.GrantTypeCode}
}
func (c *client) LoginURL(id string) string {
	return c.cfg.Issuer + loginPath + "?authRequestID=" + id
}
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration      { return c.cfg.IDTokenLifetime }

// DevMode lets http redirect URIs through (Backstage runs on http locally).
func (c *client) DevMode() bool { return true }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// IsScopeAllowed accepts the non-standard "groups" scope; groups are
// released regardless, but clients (Backstage) may ask for it.
func (c *client) IsScopeAllowed(scope string) bool { return scope == "groups" }
func (c *client) IDTokenUserinfoClaimsAssertion() bool {
	return !c.cfg.MinimalIDToken
}
func (c *client) ClockSkew() time.Duration { return 0 }

func (s *storage) GetClientByClientID(_ context.Context, clientID string) (op.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[clientID]
	if !ok {
		return nil, errors.New("client not found")
	}
	return c, nil
}

func (s *storage) clientAuthMethod(clientID string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[clientID]
	if !ok {
		return "", false
	}
	return c.Client.AuthMethod, true
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, clientID, clientSecret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[clientID]
	if !ok {
		return errors.New("client not found")
	}
	if subtle.ConstantTimeCompare([]byte(c.Secret), []byte(clientSecret)) != 1 {
		return errors.New("invalid client secret")
	}
	return nil
}

// ---- authorization requests and codes ----

type authRequest struct {
	id            string
	created       time.Time
	clientID      string
	redirectURI   string
	state         string
	nonce         string
	scopes        []string
	responseType  oidc.ResponseType
	responseMode  oidc.ResponseMode
	codeChallenge *oidc.CodeChallenge

	userID   string
	done     bool
	authTime time.Time
}

var _ op.AuthRequest = (*authRequest)(nil)

func (a *authRequest) GetID() string         { return a.id }
func (a *authRequest) GetACR() string        { return "" }
func (a *authRequest) GetAMR() []string      { return []string{"user"} } // no password: the user was picked
func (a *authRequest) GetAudience() []string { return []string{a.clientID} }
func (a *authRequest) GetAuthTime() time.Time {
	return a.authTime
}
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.codeChallenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.userID }
func (a *authRequest) Done() bool                            { return a.done }

// CreateAuthRequest stores a validated authorization request. PKCE with S256
// is required (RFC 9700 section 2.1.1), and prompt=none cannot succeed
// because the provider keeps no browser session.
func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if slices.Contains(req.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired()
	}
	if req.CodeChallenge == "" {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE is required: send code_challenge with code_challenge_method=S256")
	}
	if req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge_method must be S256")
	}
	a := &authRequest{
		id:           randomID(),
		created:      time.Now(),
		clientID:     req.ClientID,
		redirectURI:  req.RedirectURI,
		state:        req.State,
		nonce:        req.Nonce,
		scopes:       slices.Clone(req.Scopes),
		responseType: req.ResponseType,
		responseMode: req.ResponseMode,
		codeChallenge: &oidc.CodeChallenge{
			Challenge: req.CodeChallenge,
			Method:    req.CodeChallengeMethod,
		},
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.authRequests) >= MaxAuthRequests {
		s.dropExpiredLocked(a.created)
		if len(s.authRequests) >= MaxAuthRequests {
			return nil, oidc.ErrServerError().WithDescription("too many sign-ins in progress; try again in a few minutes")
		}
	}
	s.authRequests[a.id] = a
	return a, nil
}

// dropExpiredLocked forgets authorization requests older than
// AuthRequestLifetime, their codes, and expired access tokens.
func (s *storage) dropExpiredLocked(now time.Time) {
	for id, a := range s.authRequests {
		if now.Sub(a.created) > AuthRequestLifetime {
			delete(s.authRequests, id)
		}
	}
	for code, id := range s.codes {
		if _, ok := s.authRequests[id]; !ok {
			delete(s.codes, code)
		}
	}
	for id, t := range s.accessTokens {
		if now.After(t.expiration) {
			delete(s.accessTokens, id)
		}
	}
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authRequestLocked(id)
}

func (s *storage) authRequestLocked(id string) (*authRequest, error) {
	a, ok := s.authRequests[id]
	if !ok || time.Since(a.created) > AuthRequestLifetime {
		return nil, errors.New("authorization request not found or expired")
	}
	return a, nil
}

func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.codes[code]
	if !ok {
		return nil, errors.New("code invalid or already used")
	}
	return s.authRequestLocked(id)
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest runs after the code was exchanged, which makes every
// code single use.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authRequests, id)
	for code, reqID := range s.codes {
		if reqID == id {
			delete(s.codes, code)
		}
	}
	return nil
}

// completeLogin marks an authorization request as authenticated as user.
func (s *storage) completeLogin(authRequestID, username string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.authRequestLocked(authRequestID)
	if err != nil {
		return err
	}
	u, ok := s.usersByName[username]
	if !ok {
		return fmt.Errorf("unknown user %q", username)
	}
	a.userID, a.done, a.authTime = u.ID, true, time.Now()
	return nil
}

// ---- access and refresh tokens ----

type accessToken struct {
	id             string
	clientID       string
	subject        string
	audience       []string
	scopes         []string
	expiration     time.Time
	refreshTokenID string
}

type refreshToken struct {
	token         string
	family        string
	clientID      string
	userID        string
	audience      []string
	scopes        []string
	authTime      time.Time
	amr           []string
	expiration    time.Time
	accessTokenID string
	// graceUntil, on a token already rotated, is until when it is still
	// accepted (Config.RefreshReuseGrace).
	graceUntil time.Time
}

// rotatedToken is what is remembered of a refresh token replaced by
// rotation: its family, to revoke on a replay, until its expiration.
type rotatedToken struct {
	family     string
	expiration time.Time
}

// minPruneAt is the least number of tokens held before issuing one looks
// for expired ones to forget.
const minPruneAt = 1024

type refreshTokenRequest struct{ rt *refreshToken }

var _ op.RefreshTokenRequest = (*refreshTokenRequest)(nil)

func (r *refreshTokenRequest) GetAMR() []string            { return r.rt.amr }
func (r *refreshTokenRequest) GetAudience() []string       { return r.rt.audience }
func (r *refreshTokenRequest) GetAuthTime() time.Time      { return r.rt.authTime }
func (r *refreshTokenRequest) GetClientID() string         { return r.rt.clientID }
func (r *refreshTokenRequest) GetScopes() []string         { return r.rt.scopes }
func (r *refreshTokenRequest) GetSubject() string          { return r.rt.userID }
func (r *refreshTokenRequest) SetCurrentScopes(s []string) { r.rt.scopes = s }

func clientIDOf(req op.TokenRequest) string {
	switch r := req.(type) {
	case *authRequest:
		return r.clientID
	case *refreshTokenRequest:
		return r.rt.clientID
	case interface{ GetClientID() string }:
		return r.GetClientID()
	}
	return ""
}

func (s *storage) newAccessTokenLocked(req op.TokenRequest, refreshTokenID string) *accessToken {
	at := &accessToken{
		id:             randomID(),
		clientID:       clientIDOf(req),
		subject:        req.GetSubject(),
		audience:       slices.Clone(req.GetAudience()),
		scopes:         slices.Clone(req.GetScopes()),
		expiration:     time.Now().Add(s.cfg.AccessTokenLifetime),
		refreshTokenID: refreshTokenID,
	}
	s.accessTokens[at.id] = at
	return at
}

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := s.newAccessTokenLocked(req, "")
	s.maybePruneLocked()
	return at.id, at.expiration, nil
}

// CreateAccessAndRefreshTokens issues a refresh token on the code flow and
// rotates it on every refresh (unless Config.StableRefreshTokens).
func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	newRT := &refreshToken{token: randomID(), expiration: time.Now().Add(s.cfg.RefreshTokenLifetime)}
	switch r := req.(type) {
	case *authRequest:
		if current != "" {
			return "", "", time.Time{}, errors.New("unexpected refresh token on code exchange")
		}
		newRT.family = randomID()
		newRT.clientID, newRT.userID, newRT.authTime, newRT.amr = r.clientID, r.userID, r.authTime, r.GetAMR()
		newRT.audience, newRT.scopes = r.GetAudience(), slices.Clone(r.scopes)
	case *refreshTokenRequest:
		old, ok := s.refreshTokens[current]
		if !ok {
			return "", "", time.Time{}, errors.New("refresh token invalid")
		}
		delete(s.refreshTokens, current)
		delete(s.accessTokens, old.accessTokenID)
		*newRT = *old
		newRT.graceUntil = time.Time{}
		if s.cfg.StableRefreshTokens {
			newRT.token = current
		} else {
			s.rotated[current] = rotatedToken{family: old.family, expiration: old.expiration}
			if s.cfg.RefreshReuseGrace > 0 && old.graceUntil.IsZero() {
				// Still accepted for a while; its access token is gone.
				spent := *old
				spent.accessTokenID, spent.graceUntil = "", time.Now().Add(s.cfg.RefreshReuseGrace)
				s.refreshTokens[current] = &spent
			}
			newRT.token = randomID()
			newRT.expiration = time.Now().Add(s.cfg.RefreshTokenLifetime)
		}
		newRT.scopes = slices.Clone(r.GetScopes())
	default:
		return "", "", time.Time{}, fmt.Errorf("refresh tokens are not issued for %T", req)
	}
	at := s.newAccessTokenLocked(req, newRT.token)
	newRT.accessTokenID = at.id
	s.refreshTokens[newRT.token] = newRT
	s.maybePruneLocked()
	return at.id, newRT.token, at.expiration, nil
}

// remembered is how many tokens the provider holds.
func (s *storage) remembered() int {
	return len(s.accessTokens) + len(s.refreshTokens) + len(s.rotated)
}

// maybePruneLocked prunes once the provider holds pruneAt tokens.
func (s *storage) maybePruneLocked() {
	if s.remembered() >= s.pruneAt {
		s.pruneLocked(time.Now())
	}
}

// pruneLocked forgets what can no longer be used: expired access tokens,
// expired refresh tokens (with their access tokens), tokens spent whose
// grace is over, and rotated tokens past their expiration. A spent token
// past its grace is still in rotated, so replaying it still revokes its
// family.
func (s *storage) pruneLocked(now time.Time) {
	for id, at := range s.accessTokens {
		if now.After(at.expiration) {
			delete(s.accessTokens, id)
		}
	}
	for tok, rt := range s.refreshTokens {
		if now.After(rt.expiration) || (!rt.graceUntil.IsZero() && !now.Before(rt.graceUntil)) {
			delete(s.accessTokens, rt.accessTokenID)
			delete(s.refreshTokens, tok)
		}
	}
	for tok, r := range s.rotated {
		if now.After(r.expiration) {
			delete(s.rotated, tok)
		}
	}
	s.pruneAt = max(minPruneAt, 2*s.remembered())
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refreshTokens[token]
	inGrace := ok && !rt.graceUntil.IsZero() && time.Now().Before(rt.graceUntil)
	if r, replayed := s.rotated[token]; replayed && !inGrace {
		s.revokeFamilyLocked(r.family)
		s.cfg.Logger.Warn("rotated refresh token replayed; revoked its chain")
		return nil, errors.New("refresh token was already used")
	}
	if !ok {
		return nil, errors.New("refresh token invalid")
	}
	if time.Now().After(rt.expiration) {
		delete(s.refreshTokens, token)
		return nil, errors.New("refresh token expired")
	}
	// Hand out a copy: SetCurrentScopes must not narrow the stored token.
	cp := *rt
	cp.scopes = slices.Clone(rt.scopes)
	return &refreshTokenRequest{rt: &cp}, nil
}

func (s *storage) revokeFamilyLocked(family string) {
	revoked := false
	for tok, rt := range s.refreshTokens {
		if rt.family == family {
			delete(s.accessTokens, rt.accessTokenID)
			delete(s.refreshTokens, tok)
			revoked = true
		}
	}
	if revoked {
		s.chainsRevoked++
	}
}

// TerminateSession ends every token of userID issued to clientID (end_session).
func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, at := range s.accessTokens {
		if at.subject == userID && at.clientID == clientID {
			delete(s.accessTokens, id)
		}
	}
	for tok, rt := range s.refreshTokens {
		if rt.userID == userID && rt.clientID == clientID {
			delete(s.refreshTokens, tok)
		}
	}
	return nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, _ string, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refreshTokens[token]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.userID, rt.token, nil
}

// RevokeToken revokes an access token (by ID) or a refresh token together
// with its access token (RFC 7009). Unknown tokens are not an error.
func (s *storage) RevokeToken(_ context.Context, tokenOrID, _ string, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.accessTokens[tokenOrID]; ok {
		if at.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.accessTokens, tokenOrID)
		return nil
	}
	if rt, ok := s.refreshTokens[tokenOrID]; ok {
		if rt.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.accessTokens, rt.accessTokenID)
		delete(s.refreshTokens, tokenOrID)
	}
	return nil
}

// ---- claims ----

// SetUserinfoFromScopes is deprecated in op; SetUserinfoFromRequest does the work.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's claims.
func (s *storage) SetUserinfoFromRequest(_ context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	return s.setUserinfo(ui, req.GetSubject(), scopes)
}

// SetUserinfoFromToken answers the userinfo endpoint.
func (s *storage) SetUserinfoFromToken(_ context.Context, ui *oidc.UserInfo, tokenID, _, _ string) error {
	s.mu.Lock()
	at, ok := s.accessTokens[tokenID]
	s.mu.Unlock()
	if !ok || time.Now().After(at.expiration) {
		return errors.New("access token invalid or expired")
	}
	return s.setUserinfo(ui, at.subject, at.scopes)
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, _, clientID string) error {
	s.mu.Lock()
	at, ok := s.accessTokens[tokenID]
	s.mu.Unlock()
	if !ok || time.Now().After(at.expiration) || !slices.Contains(at.audience, clientID) {
		return errors.New("token inactive")
	}
	ui := new(oidc.UserInfo)
	if err := s.setUserinfo(ui, at.subject, at.scopes); err != nil {
		return err
	}
	resp.SetUserInfo(ui)
	resp.Scope = at.scopes
	resp.ClientID = at.clientID
	resp.Expiration = oidc.FromTime(at.expiration)
	return nil
}

func (s *storage) setUserinfo(ui *oidc.UserInfo, userID string, scopes []string) error {
	s.mu.Lock()
	u, ok := s.users[userID]
	s.mu.Unlock()
	if !ok {
		return errors.New("user not found")
	}
	ui.Subject = u.ID
	for _, scope := range scopes {
		switch scope {
		case oidc.ScopeEmail:
			ui.Email = u.Email
			if u.EmailVerified != nil {
				ui.EmailVerified = oidc.Bool(*u.EmailVerified)
				if !*u.EmailVerified {
					// The typed field drops false (omitempty); say it explicitly.
					ui.AppendClaims("email_verified", false)
				}
			}
		case oidc.ScopeProfile:
			ui.Name = u.Name
			ui.GivenName = u.GivenName
			ui.FamilyName = u.FamilyName
			ui.Picture = u.Picture
			ui.PreferredUsername = u.PreferredUsername
		}
	}
	if len(u.Groups) > 0 {
		ui.AppendClaims("groups", slices.Clone(u.Groups))
	}
	for k, v := range u.ExtraClaims {
		if reservedClaims[k] || (k == "groups" && len(u.Groups) > 0) {
			continue
		}
		ui.AppendClaims(k, v)
	}
	return nil
}

// reservedClaims are set by the provider from the token request and the User
// fields; ExtraClaims cannot set them (whatever the scopes).
var reservedClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true, "nbf": true, "jti": true,
	"auth_time": true, "nonce": true, "acr": true, "amr": true, "azp": true, "at_hash": true,
	"c_hash": true, "sid": true, "client_id": true, "scope": true,
	"email": true, "email_verified": true, "name": true, "given_name": true, "family_name": true,
	"picture": true, "preferred_username": true,
}

// GetPrivateClaimsFromScopes is only used for JWT access tokens, which this
// provider does not issue.
func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetKeyByIDAndClientID: JWT client authentication is not supported.
func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("private_key_jwt is not supported")
}

// ValidateJWTProfileScopes: the JWT profile grant is not supported.
func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("the JWT profile grant is not supported")
}

func (s *storage) Health(context.Context) error { return nil }

func (s *storage) chainsRevokedCount() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chainsRevoked
}
