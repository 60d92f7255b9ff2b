package lifecycle

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/internal/ratelimit"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// ProviderID is the Backstage auth provider id the daemon serves; sessions
// record it.
const ProviderID = "spectrocloud"

// FlowLifetime is how long a sign-in may take between its begin and its
// completion (the nonce cookie's lifetime), and how long a used-once id is
// remembered.
const FlowLifetime = 10 * time.Minute

// Config is what the session lifecycle needs. The HTTP front ends
// (host/server, host/cliauth) build one from their own configuration.
type Config struct {
	// Envs maps the Backstage environment name to its settings.
	Envs map[string]*Env
	// Identity issues and verifies Backstage tokens.
	Identity *identity.Issuer
	// Sessions holds the server-side sessions.
	Sessions session.Store
	// FlowKey (32 bytes or more, secret, shared by replicas) derives each
	// sign-in's PKCE verifier and OpenID nonce, and authenticates states.
	FlowKey []byte
	// UsedOnce remembers completed sign-ins and redeemed command-line codes.
	// Nil means in this process's memory only (bounded, with spent
	// command-line codes kept apart from sign-in responses).
	UsedOnce OnceSet
	// IncludeOwnershipClaim puts ent into Backstage tokens.
	IncludeOwnershipClaim bool
	// ExchangeBudget bounds the calls to the provider's token endpoint, all
	// clients together; nil means no bound.
	ExchangeBudget *ratelimit.Budget
	// ExchangeRefused, when set, is called when ExchangeBudget refuses a
	// code exchange (the front end's sampled log line).
	ExchangeRefused func()
	// SessionEnded, when set, is told of sessions the lifecycle ended: n
	// sessions of env for reason (EndRefused, …). For metrics.
	SessionEnded func(env, reason string, n int)
	// ClientRejected, when set, is told each time env's provider rejects
	// the daemon's own client credentials on a refresh. For metrics.
	ClientRejected func(env string)
	// Logger defaults to a null logger.
	Logger hclog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Manager owns the session lifecycle: begin and complete a sign-in, renew
// and revalidate sessions (one renewal per session at a time, across
// replicas with the store's lease), end them, sign a user out everywhere.
// It knows nothing of HTTP: the front ends read cookies and tokens, call
// it, and write its answers.
type Manager struct {
	cfg  Config
	log  hclog.Logger
	now  func() time.Time
	used OnceSet
	// usedCodes holds spent command-line codes apart from used sign-in
	// responses when the sets are in memory (bounded); nil means used
	// holds both (a shared set, which forgets nothing early).
	usedCodes OnceSet
	flights   Flights
	backoff   Backoff
	// derivers holds HMACs keyed with the flow key, for Derive: Reset
	// brings one back to its keyed state, where hmac.New would redo the key
	// schedule (two SHA-256 blocks) on every one of a sign-in's derivations.
	derivers sync.Pool
}

// New checks cfg and names its environments.
func New(cfg Config) (*Manager, error) {
	if len(cfg.FlowKey) < 32 {
		return nil, errors.New("lifecycle: flow key must be at least 32 bytes")
	}
	if len(cfg.Envs) == 0 {
		return nil, errors.New("lifecycle: no provider environment configured")
	}
	if cfg.Sessions == nil {
		return nil, errors.New("lifecycle: a session store is required")
	}
	if cfg.Identity == nil {
		return nil, errors.New("lifecycle: an identity issuer is required")
	}
	for name, env := range cfg.Envs {
		env.name = name
		if env.SessionDuration <= 0 {
			return nil, fmt.Errorf("lifecycle: environment %s: session duration must be positive", name)
		}
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, now: cfg.Now, used: cfg.UsedOnce}
	if m.used == nil {
		m.used, m.usedCodes = &UsedNonces{}, &UsedNonces{}
	}
	if m.log == nil {
		m.log = hclog.NewNullLogger()
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m, nil
}

// Env returns the environment named name.
func (m *Manager) Env(name string) (*Env, bool) {
	e, ok := m.cfg.Envs[name]
	return e, ok
}

// Envs returns every environment by name (not to be modified).
func (m *Manager) Envs() map[string]*Env { return m.cfg.Envs }

// Store is the session store the lifecycle keeps its sessions in.
func (m *Manager) Store() session.Store { return m.cfg.Sessions }

// Identity is the Backstage token issuer.
func (m *Manager) Identity() *identity.Issuer { return m.cfg.Identity }

// Now is the lifecycle's clock.
func (m *Manager) Now() time.Time { return m.now() }

// Derive binds a secret to a sign-in's nonce: the PKCE verifier and the
// OpenID nonce of a sign-in are HMACs of the nonce, so no server-side state
// is kept between begin and complete, replicas agree, and neither value
// can be computed without the flow key. Front ends use it for their own
// MACs too (each with a purpose of its own).
func (m *Manager) Derive(purpose, value string) string {
	h, ok := m.derivers.Get().(hash.Hash)
	if !ok {
		h = hmac.New(sha256.New, m.cfg.FlowKey)
	}
	var sum [sha256.Size]byte
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write([]byte(value))
	out := base64.RawURLEncoding.EncodeToString(h.Sum(sum[:0]))
	h.Reset()
	m.derivers.Put(h)
	return out
}

// FlowKeyDerived is a key derived from the flow key for one purpose (the
// command line's code sealing key), so replicas agree on it.
func (m *Manager) FlowKeyDerived(purpose string) []byte {
	h := hmac.New(sha256.New, m.cfg.FlowKey)
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	return h.Sum(nil)
}

// Begin starts a sign-in in env: it makes the sign-in's nonce (which the
// front end binds to the browser, in a cookie), asks state for the
// upstream state that carries it, and returns the provider's authorization
// URL with the PKCE challenge and OpenID nonce derived from it.
func (m *Manager) Begin(env *Env, scope string, state func(nonce string) string) (nonce, authURL string, err error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("making a nonce: %w", err)
	}
	nonce = base64.RawURLEncoding.EncodeToString(b)
	authURL = env.Upstream.AuthCodeURL(upstream.AuthRequest{
		RedirectURL:  env.CallbackURL,
		State:        state(nonce),
		Nonce:        m.Derive("oidc-nonce", nonce),
		PKCEVerifier: m.Derive("pkce-verifier", nonce),
		Scopes:       strings.Fields(scope),
	})
	return nonce, authURL, nil
}

// Errors of Complete a front end tells apart.
var (
	// ErrExchangeBudget: the global budget of code exchanges is spent.
	ErrExchangeBudget = errors.New("too many sign-ins right now")
	// ErrStoringSession: the new session could not be stored.
	ErrStoringSession = errors.New("storing the session")
)

// Completion is a sign-in's answer from the provider, after the front end
// checked that it comes back to the browser that began it and claimed its
// nonce (ClaimOnce).
type Completion struct {
	// Nonce is the sign-in's nonce (Begin).
	Nonce string
	// Code is the authorization code.
	Code string
	// Scope is what was asked for, used when the provider does not say.
	Scope string
	// Kind is the session's kind.
	Kind session.Kind
	// Key is where the session is stored (the front end derived it from
	// the secret it hands out).
	Key session.Key
}

// Complete exchanges the code (PKCE verifier and ID token nonce derived
// from the sign-in's nonce; the ID token fully verified by the provider
// client), runs the resolver chain, issues the Backstage token and stores
// the new session under c.Key. Its errors are backstageerr errors:
// ErrExchangeBudget (429), a refusal by the provider (401) or the
// resolvers (403), a failure (5xx, ErrStoringSession among them).
func (m *Manager) Complete(ctx context.Context, env *Env, c Completion) (*session.Session, error) {
	if m.cfg.ExchangeBudget != nil && !m.cfg.ExchangeBudget.Allow() {
		if m.cfg.ExchangeRefused != nil {
			m.cfg.ExchangeRefused()
		}
		return nil, backstageerr.New(http.StatusTooManyRequests, backstageerr.NameError, "Too many sign-ins right now; try again shortly", ErrExchangeBudget)
	}
	tokens, err := env.Upstream.Exchange(ctx, c.Code, env.CallbackURL,
		m.Derive("pkce-verifier", c.Nonce), m.Derive("oidc-nonce", c.Nonce))
	if err != nil {
		return nil, backstageerr.Authentication("Could not complete the sign-in with SpectroCloud").WithCause(err)
	}
	if tokens.Scope == "" {
		tokens.Scope = c.Scope
	}
	sess, err := m.newSession(ctx, env, c.Key, tokens)
	if err != nil {
		return nil, err
	}
	sess.Kind = c.Kind
	if err := m.cfg.Sessions.Put(ctx, c.Key, sess); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStoringSession, err)
	}
	m.log.Info("signed in", "env", env.name, "kind", kindName(c.Kind), "user", sess.UserEntityRef, "sub", tokens.Profile.Subject)
	return sess, nil
}

func kindName(k session.Kind) string {
	if k == session.KindCLI {
		return "cli"
	}
	return "browser"
}

// NewHandle makes a session handle (for a cookie) and its store key.
func NewHandle() (string, session.Key, error) {
	handle, err := session.NewHandle()
	if err != nil {
		return "", session.Key{}, fmt.Errorf("making a session handle: %w", err)
	}
	key, err := session.KeyOf(handle)
	return handle, key, err
}
