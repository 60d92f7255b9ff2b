// Package devprovider is a development OpenID Provider built on the
// certified zitadel/oidc op package. The daemon can serve it on a loopback
// address so that people can sign in without SpectroCloud, and tests use it
// as the real upstream provider.
//
// It signs ID tokens with RS256, requires PKCE (S256), serves discovery,
// JWKS, token, userinfo, revocation, introspection and end_session, and has
// no passwords: the login page lists the configured users. It is not for
// production.
//
// Mount a Provider at its issuer's path, for example
//
//	mux.Handle("/dev/oidc/", p) // issuer http://localhost:7007/dev/oidc
//
// The handler removes the issuer path itself; a handler already wrapped in
// http.StripPrefix works too.
package devprovider

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Paths relative to the issuer.
const (
	loginPath     = "/login"
	loggedOutPath = "/logged-out"
	discoveryPath = oidc.DiscoveryEndpoint // "/.well-known/openid-configuration"
	authorizePath = "/authorize"
	tokenPath     = "/oauth/token"
	userinfoPath  = "/userinfo"
	keysPath      = "/keys"
	revokePath    = "/revoke"
	introspectPth = "/oauth/introspect"
	endSessionPth = "/end_session"
)

// Provider is a running development OpenID Provider. It is an http.Handler
// to be mounted at the issuer's path, plus knobs for tests.
type Provider struct {
	cfg        Config
	issuerPath string
	op         *op.Provider
	st         *storage
	csrfKey    []byte

	selectedMu sync.RWMutex
	selected   string

	counters struct {
		discovery, authorize, token, refresh, jwks, userinfo, revocation, introspection, endSession atomic.Int64
	}
}

// Counters reports how many requests of each kind a Provider has served.
type Counters struct {
	Discovery int64
	Authorize int64
	// Token counts token endpoint requests other than refreshes (the code
	// exchange).
	Token int64
	// Refresh counts token endpoint requests with grant_type=refresh_token.
	Refresh       int64
	JWKS          int64
	Userinfo      int64
	Revocation    int64
	Introspection int64
	EndSession    int64
	// RefreshChainsRevoked counts refresh token chains (one per sign-in)
	// revoked because a rotated refresh token was replayed.
	RefreshChainsRevoked int64
}

// New builds a Provider. The Config is copied.
func New(cfg Config) (*Provider, error) {
	cfg.Clients = slices.Clone(cfg.Clients)
	cfg.Users = slices.Clone(cfg.Users)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.applyDefaults()
	key := cfg.Key
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, fmt.Errorf("devprovider: generating signing key: %w", err)
		}
	}
	u, _ := url.Parse(cfg.Issuer) // validated
	p := &Provider{
		cfg:        cfg,
		issuerPath: u.Path,
		st:         newStorage(&cfg, key),
		csrfKey:    make([]byte, 32),
		selected:   cfg.AutoApprove,
	}
	_, _ = rand.Read(p.csrfKey)

	opCfg := &op.Config{
		CodeMethodS256:           true,
		AuthMethodPost:           slices.ContainsFunc(cfg.Clients, func(c Client) bool { return c.AuthMethod == AuthMethodPost }),
		GrantTypeRefreshToken:    cfg.RefreshTokens,
		DefaultLogoutRedirectURI: cfg.Issuer + loggedOutPath,
		SupportedScopes:          []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, oidc.ScopeOfflineAccess, "groups"},
		SupportedClaims: append(slices.Clone(op.DefaultSupportedClaims),
			"picture", "groups"),
	}
	if _, err := rand.Read(opCfg.CryptoKey[:]); err != nil {
		return nil, fmt.Errorf("devprovider: generating token encryption key: %w", err)
	}
	var opts []op.Option
	if cfg.AllowInsecure {
		opts = append(opts, op.WithAllowInsecure())
	}
	o, err := op.NewProvider(opCfg, p.st, op.StaticIssuer(cfg.Issuer), opts...)
	if err != nil {
		return nil, fmt.Errorf("devprovider: building the OpenID Provider: %w", err)
	}
	p.op = o
	cfg.Logger.Warn("development OpenID provider enabled: not for production", "issuer", cfg.Issuer)
	return p, nil
}

// Issuer returns the issuer URL.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// ServeHTTP serves the provider's endpoints below the issuer path.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.issuerPath != "" {
		if rest, ok := strings.CutPrefix(r.URL.Path, p.issuerPath); ok && (rest == "" || rest[0] == '/') {
			r2 := new(http.Request)
			*r2 = *r
			u := *r.URL
			u.Path, u.RawPath = rest, ""
			if u.Path == "" {
				u.Path = "/"
			}
			r2.URL = &u
			r = r2
		}
	}
	ctx := op.ContextWithIssuer(r.Context(), p.cfg.Issuer)
	r = r.WithContext(ctx)

	switch r.URL.Path {
	case loginPath:
		p.serveLogin(w, r)
		return
	case loggedOutPath:
		serveLoggedOut(w)
		return
	case discoveryPath:
		p.counters.discovery.Add(1)
		if p.cfg.AuthorizationResponseIssuer {
			p.serveDiscovery(w, r)
			return
		}
	case keysPath:
		p.counters.jwks.Add(1)
	case userinfoPath:
		p.counters.userinfo.Add(1)
	case endSessionPth:
		p.counters.endSession.Add(1)
	case authorizePath:
		p.counters.authorize.Add(1)
	case tokenPath, revokePath, introspectPth:
		if !p.checkClientAuth(w, r) {
			return
		}
		switch {
		case r.URL.Path == revokePath:
			p.counters.revocation.Add(1)
		case r.URL.Path == introspectPth:
			p.counters.introspection.Add(1)
		case r.PostForm.Get("grant_type") == string(oidc.GrantTypeRefreshToken):
			p.counters.refresh.Add(1)
		default:
			p.counters.token.Add(1)
		}
	}
	if p.cfg.AuthorizationResponseIssuer && strings.HasPrefix(r.URL.Path, authorizePath) {
		w = &issResponseWriter{ResponseWriter: w, issuer: p.cfg.Issuer}
	}
	p.op.ServeHTTP(w, r)
}

// checkClientAuth enforces the client's registered token endpoint
// authentication method, which the op package does not: a
// client_secret_basic client must not put its secret in the body and a
// client_secret_post client must not use the Authorization header.
func (p *Provider) checkClientAuth(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "cannot parse form")
		return false
	}
	basicID, _, hasBasic := r.BasicAuth()
	if hasBasic {
		if id, err := url.QueryUnescape(basicID); err == nil {
			basicID = id
		}
	}
	clientID := r.PostForm.Get("client_id")
	if hasBasic {
		clientID = basicID
	}
	method, ok := p.st.clientAuthMethod(clientID)
	if !ok {
		return true // the op package answers invalid_client
	}
	switch {
	case method == AuthMethodBasic && r.PostForm.Has("client_secret"):
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "client is registered for client_secret_basic")
		return false
	case method == AuthMethodPost && hasBasic:
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "client is registered for client_secret_post")
		return false
	}
	return true
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// serveDiscovery adds RFC 9207's metadata to the op package's document.
func (p *Provider) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	doc := op.CreateDiscoveryConfig(r.Context(), p.op, p.st)
	raw, err := json.Marshal(doc)
	if err != nil {
		http.Error(w, "discovery unavailable", http.StatusInternalServerError)
		return
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		http.Error(w, "discovery unavailable", http.StatusInternalServerError)
		return
	}
	m["authorization_response_iss_parameter_supported"] = true
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(m)
}

// issResponseWriter adds iss to authorization response redirects (RFC 9207):
// every redirect leaving the provider from /authorize or its callback.
type issResponseWriter struct {
	http.ResponseWriter
	issuer string
	wrote  bool
}

func (w *issResponseWriter) WriteHeader(code int) {
	if !w.wrote && code >= 300 && code < 400 {
		if loc := w.Header().Get("Location"); loc != "" && !strings.HasPrefix(loc, w.issuer+"/") {
			if u, err := url.Parse(loc); err == nil {
				q := u.Query()
				q.Set("iss", w.issuer)
				u.RawQuery = q.Encode()
				w.Header().Set("Location", u.String())
			}
		}
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *issResponseWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// SetSelectedUser makes every following login complete at once as username
// (auto-approve). An empty username brings the login page back.
func (p *Provider) SetSelectedUser(username string) error {
	if username != "" {
		p.st.mu.Lock()
		_, ok := p.st.usersByName[username]
		p.st.mu.Unlock()
		if !ok {
			return fmt.Errorf("devprovider: unknown user %q", username)
		}
	}
	p.selectedMu.Lock()
	p.selected = username
	p.selectedMu.Unlock()
	return nil
}

func (p *Provider) selectedUser() string {
	p.selectedMu.RLock()
	defer p.selectedMu.RUnlock()
	return p.selected
}

// SigningKey returns the current private signing key as a JWK carrying its
// key ID and algorithm (RS256), so tests can sign tokens the provider's JWKS
// vouches for (expired, wrong audience, ...).
func (p *Provider) SigningKey() jose.JSONWebKey {
	k := p.st.currentKey()
	return jose.JSONWebKey{Key: k.key, KeyID: k.id, Algorithm: string(jose.RS256), Use: "sig"}
}

// SignClaims signs claims (any JSON-marshalable value) with the current
// signing key, as the provider signs its ID tokens.
func (p *Provider) SignClaims(claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devprovider: encoding claims: %w", err)
	}
	k := p.SigningKey()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("devprovider: building signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devprovider: signing: %w", err)
	}
	return jws.CompactSerialize()
}

// RotateKey switches to a freshly generated signing key with a new key ID
// and returns that ID. Earlier keys stay in the JWKS.
func (p *Provider) RotateKey() (string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", fmt.Errorf("devprovider: generating signing key: %w", err)
	}
	return p.st.addKey(key), nil
}

// Counters returns how many requests of each kind were served so far.
func (p *Provider) Counters() Counters {
	c := &p.counters
	return Counters{
		Discovery:     c.discovery.Load(),
		Authorize:     c.authorize.Load(),
		Token:         c.token.Load(),
		Refresh:       c.refresh.Load(),
		JWKS:          c.jwks.Load(),
		Userinfo:      c.userinfo.Load(),
		Revocation:    c.revocation.Load(),
		Introspection: c.introspection.Load(),
		EndSession:    c.endSession.Load(),

		RefreshChainsRevoked: p.st.chainsRevokedCount(),
	}
}

// ResetCounters sets every counter back to zero.
func (p *Provider) ResetCounters() {
	c := &p.counters
	for _, a := range []*atomic.Int64{&c.discovery, &c.authorize, &c.token, &c.refresh, &c.jwks,
		&c.userinfo, &c.revocation, &c.introspection, &c.endSession} {
		a.Store(0)
	}
}

// completeLogin finishes authRequestID as username and answers with the
// redirect back into the op package's authorization callback.
func (p *Provider) completeLogin(w http.ResponseWriter, r *http.Request, authRequestID, username string) {
	if err := p.st.completeLogin(authRequestID, username); err != nil {
		http.Error(w, "login failed: "+err.Error(), http.StatusBadRequest)
		return
	}
	p.cfg.Logger.Info("development login", "user", username)
	http.Redirect(w, r, op.AuthCallbackURL(p.op)(r.Context(), authRequestID), http.StatusSeeOther)
}
