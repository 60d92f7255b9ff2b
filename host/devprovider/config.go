package devprovider

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Token endpoint client authentication methods a Client may register.
const (
	// AuthMethodBasic is client_secret_basic: the secret travels in the
	// Authorization header (RFC 6749 section 2.3.1). It is the default.
	AuthMethodBasic = "client_secret_basic"
	// AuthMethodPost is client_secret_post: the secret travels in the form body.
	AuthMethodPost = "client_secret_post"
)

// Defaults applied by New when the corresponding Config field is zero.
const (
	DefaultIDTokenLifetime      = time.Hour
	DefaultAccessTokenLifetime  = 5 * time.Minute
	DefaultRefreshTokenLifetime = 24 * time.Hour
	// AuthRequestLifetime bounds how long a login may take between /authorize
	// and the code exchange.
	AuthRequestLifetime = 10 * time.Minute
	// MaxAuthRequests bounds the authorization requests held at once:
	// beyond it, expired ones are dropped, then new ones refused.
	MaxAuthRequests = 1000
)

// Config describes a development OpenID Provider.
type Config struct {
	// Issuer is the exact issuer URL, for example
	// http://localhost:7007/dev/oidc. A path is allowed; the caller mounts the
	// Provider at that path.
	Issuer string
	// Clients are the relying parties allowed to sign in. At least one.
	Clients []Client
	// Users are the people who can sign in. At least one.
	Users []User
	// RefreshTokens makes the provider issue refresh tokens to clients that
	// request the offline_access scope. Refresh tokens rotate on every use,
	// and re-using a rotated one revokes the whole chain, unless
	// StableRefreshTokens is set.
	RefreshTokens bool
	// StableRefreshTokens makes the refresh grant answer with the refresh
	// token it was given instead of a rotated one; the token stays valid
	// until it expires. SpectroCloud documents no rotation (its session
	// renewal keeps the same session), so tests that model it set this.
	StableRefreshTokens bool
	// RefreshReuseGrace, with rotation, keeps a rotated refresh token
	// usable for this long after its rotation (once more: using it
	// rotates again, and the token it was rotated to stays valid too), as
	// providers with a "reuse interval" do; after it, a replay revokes the
	// chain. Zero: a rotated token is spent at once. The cost, as with
	// those providers: within the grace, whoever holds the rotated token
	// (only with the client's credentials: the grant authenticates the
	// client it was issued to) gets a second valid chain, which lives until
	// a spent token of the family is replayed after its grace. Rotated
	// tokens are remembered until their expiration, then forgotten.
	RefreshReuseGrace time.Duration
	// IDTokenLifetime defaults to DefaultIDTokenLifetime.
	IDTokenLifetime time.Duration
	// AccessTokenLifetime defaults to DefaultAccessTokenLifetime.
	AccessTokenLifetime time.Duration
	// RefreshTokenLifetime defaults to DefaultRefreshTokenLifetime.
	RefreshTokenLifetime time.Duration
	// AllowInsecure permits an http (not https) issuer.
	AllowInsecure bool
	// AutoApprove, when set to a configured username, completes every login
	// as that user without showing the login page (for tests). It can be
	// changed later with SetSelectedUser.
	AutoApprove string
	// AuthorizationResponseIssuer makes the provider follow RFC 9207: it
	// advertises authorization_response_iss_parameter_supported and adds the
	// iss parameter to every authorization response redirect.
	AuthorizationResponseIssuer bool
	// MinimalIDToken keeps profile and email claims out of the ID token
	// whenever an access token is issued (OpenID Connect Core 5.4); clients
	// then read them from the userinfo endpoint. Groups and extra claims stay
	// in the ID token. By default all requested claims are in the ID token,
	// as with SpectroCloud Palette.
	MinimalIDToken bool
	// Key is the RSA signing key to start with (RS256). A fresh 2048-bit
	// key is generated when nil.
	Key *rsa.PrivateKey
	// Logger defaults to a null logger.
	Logger hclog.Logger
}

// Client is a registered relying party.
type Client struct {
	ID     string
	Secret string
	// RedirectURIs are matched exactly.
	RedirectURIs []string
	// PostLogoutRedirectURIs are the allowed post_logout_redirect_uri values
	// for end_session, matched exactly.
	PostLogoutRedirectURIs []string
	// AuthMethod is AuthMethodBasic (default) or AuthMethodPost. The provider
	// rejects token and revocation requests that authenticate otherwise.
	AuthMethod string
}

// User is a person who can sign in. Empty fields are left out of tokens.
type User struct {
	// ID is the stable subject (sub). Defaults to Username.
	ID string
	// Username identifies the user on the login page and in AutoApprove.
	Username      string
	Email         string
	EmailVerified *bool // nil leaves email_verified out
	GivenName     string
	FamilyName    string
	Name          string
	Picture       string
	// PreferredUsername defaults to Username.
	PreferredUsername string
	// Groups go into a "groups" claim of ID tokens and userinfo, whatever the
	// scopes, as SpectroCloud Palette does.
	Groups []string
	// ExtraClaims are added to ID tokens and userinfo. Registered and
	// standard claims the provider sets itself (iss, sub, aud, exp, nonce,
	// email, email_verified, name, ...) are ignored here, and so is "groups"
	// when Groups is set; use ExtraClaims for "groups" only to send an
	// unusual shape (a single string, say).
	ExtraClaims map[string]any
}

func (c *Config) validate() error {
	if c.Issuer == "" {
		return errors.New("devprovider: issuer is required")
	}
	u, err := url.Parse(c.Issuer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("devprovider: issuer %q is not an absolute http(s) URL", c.Issuer)
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(u.Path, "/") {
		return fmt.Errorf("devprovider: issuer %q must have no query, fragment or trailing slash", c.Issuer)
	}
	if !isLoopbackHost(u.Hostname()) {
		// It signs in anyone who reaches it as any configured user: its
		// issuer, and so every redirect to it, stays on this machine.
		return fmt.Errorf("devprovider: issuer %q must be on a loopback host (localhost, 127.0.0.0/8, [::1])", c.Issuer)
	}
	if u.Scheme == "http" && !c.AllowInsecure {
		return fmt.Errorf("devprovider: issuer %q is http; set AllowInsecure to allow it", c.Issuer)
	}
	if len(c.Clients) == 0 {
		return errors.New("devprovider: at least one client is required")
	}
	seenClients := map[string]bool{}
	for i, cl := range c.Clients {
		if cl.ID == "" {
			return fmt.Errorf("devprovider: clients[%d]: id is required", i)
		}
		if seenClients[cl.ID] {
			return fmt.Errorf("devprovider: clients[%d]: duplicate id %q", i, cl.ID)
		}
		seenClients[cl.ID] = true
		if cl.Secret == "" {
			return fmt.Errorf("devprovider: clients[%d] (%s): secret is required", i, cl.ID)
		}
		if len(cl.RedirectURIs) == 0 {
			return fmt.Errorf("devprovider: clients[%d] (%s): at least one redirect URI is required", i, cl.ID)
		}
		switch cl.AuthMethod {
		case "", AuthMethodBasic, AuthMethodPost:
		default:
			return fmt.Errorf("devprovider: clients[%d] (%s): unsupported auth method %q", i, cl.ID, cl.AuthMethod)
		}
	}
	if len(c.Users) == 0 {
		return errors.New("devprovider: at least one user is required")
	}
	seenIDs, seenNames := map[string]bool{}, map[string]bool{}
	for i, us := range c.Users {
		if us.Username == "" {
			return fmt.Errorf("devprovider: users[%d]: username is required", i)
		}
		id := us.ID
		if id == "" {
			id = us.Username
		}
		if seenIDs[id] {
			return fmt.Errorf("devprovider: users[%d]: duplicate id %q", i, id)
		}
		if seenNames[us.Username] {
			return fmt.Errorf("devprovider: users[%d]: duplicate username %q", i, us.Username)
		}
		seenIDs[id], seenNames[us.Username] = true, true
	}
	if c.AutoApprove != "" && !seenNames[c.AutoApprove] {
		return fmt.Errorf("devprovider: autoApprove names unknown user %q", c.AutoApprove)
	}
	for _, d := range []time.Duration{c.IDTokenLifetime, c.AccessTokenLifetime, c.RefreshTokenLifetime} {
		if d < 0 {
			return errors.New("devprovider: token lifetimes must not be negative")
		}
	}
	return nil
}

func (c *Config) applyDefaults() {
	if c.IDTokenLifetime == 0 {
		c.IDTokenLifetime = DefaultIDTokenLifetime
	}
	if c.AccessTokenLifetime == 0 {
		c.AccessTokenLifetime = DefaultAccessTokenLifetime
	}
	if c.RefreshTokenLifetime == 0 {
		c.RefreshTokenLifetime = DefaultRefreshTokenLifetime
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	for i := range c.Clients {
		if c.Clients[i].AuthMethod == "" {
			c.Clients[i].AuthMethod = AuthMethodBasic
		}
	}
	for i := range c.Users {
		if c.Users[i].ID == "" {
			c.Users[i].ID = c.Users[i].Username
		}
		if c.Users[i].PreferredUsername == "" {
			c.Users[i].PreferredUsername = c.Users[i].Username
		}
	}
}
