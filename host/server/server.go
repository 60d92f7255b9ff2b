// Package server speaks Backstage's auth protocol over HTTP: the provider
// routes (start, handler/frame, refresh, logout) for the spectrocloud
// provider, the identity routes (JWKS, OpenID configuration, user info) and
// the health checks, exactly as Backstage's own auth backend answers them.
package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/internal/ratelimit"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// ProviderID is the Backstage auth provider id the daemon serves.
const ProviderID = "spectrocloud"

// requiredScopes are always requested: the sign-in needs an ID token with a profile.
var requiredScopes = []string{"openid", "profile", "email"}

// Upstream is the SpectroCloud OpenID Connect client of one environment
// (*upstream.Provider).
type Upstream interface {
	AuthCodeURL(upstream.AuthRequest) string
	Exchange(ctx context.Context, code, redirectURL, pkceVerifier, expectedNonce string) (*upstream.Tokens, error)
	Refresh(ctx context.Context, t *upstream.Tokens) (*upstream.Tokens, error)
	Revoke(ctx context.Context, t *upstream.Tokens) error
	// CheckUserinfo revalidates a session without a refresh grant; it
	// answers upstream.ErrNoUserinfo when the provider has no userinfo.
	CheckUserinfo(ctx context.Context, t *upstream.Tokens) error
	CheckAuthorizationResponseIssuer(iss string) error
}

// Env is one Backstage environment of the provider.
type Env struct {
	// Upstream is the environment's SpectroCloud client.
	Upstream Upstream
	// SignIn resolves the Backstage identity.
	SignIn signin.Resolver
	// Scopes are requested on top of what the app asks for.
	Scopes []string
	// CallbackURL is the redirect URI registered with SpectroCloud.
	CallbackURL string
	// RefreshMargin: upstream tokens are refreshed when they have less left.
	RefreshMargin time.Duration
	// SessionDuration bounds a session and the refresh cookie.
	SessionDuration time.Duration
	// RevalidateInterval: each session asks the provider at least this
	// often (its refresh grant, or userinfo without one), however long its
	// ID token lives; zero means DefaultRevalidateInterval.
	RevalidateInterval time.Duration
	// LogoutURL, when https or localhost, is returned from /logout so the app
	// navigates there (e.g. the provider's end-session page).
	LogoutURL string
	// TrustEmailWithoutVerifiedClaim accepts email when email_verified is absent.
	TrustEmailWithoutVerifiedClaim bool

	name    string
	cookies *cookieJar
}

// DefaultRevalidateInterval is Env.RevalidateInterval's default: at most
// four provider calls per session-hour.
const DefaultRevalidateInterval = 15 * time.Minute

func (e *Env) revalidateInterval() time.Duration {
	if e.RevalidateInterval > 0 {
		return e.RevalidateInterval
	}
	return DefaultRevalidateInterval
}

// policy is the environment's renewal policy.
func (e *Env) policy() lifecycle.Policy {
	return lifecycle.Policy{RefreshMargin: e.RefreshMargin, RevalidateInterval: e.revalidateInterval()}
}

// Config is everything the HTTP layer needs.
type Config struct {
	// BaseURL is the daemon's external URL (no trailing slash).
	BaseURL string
	// AppBaseURL is the Backstage app's URL; its origin is always allowed.
	AppBaseURL string
	// ExtraAllowedOrigins are glob patterns of further allowed origins.
	ExtraAllowedOrigins []string
	// Envs maps the Backstage environment name to its settings.
	Envs map[string]*Env
	// Identity issues and verifies Backstage tokens.
	Identity *identity.Issuer
	// UserInfo serves /v1/userinfo.
	UserInfo identity.UserInfoStore
	// Sessions holds the server-side sessions.
	Sessions session.Store
	// FlowKey (32 bytes or more, secret, shared by replicas) derives each
	// sign-in's PKCE verifier and OpenID nonce from the browser-bound nonce.
	FlowKey []byte
	// UsedOnce remembers completed sign-ins and redeemed command-line codes,
	// so each is accepted once. Nil means in this process's memory only;
	// replicas share one (host/storage/postgres), so a response replayed to
	// another replica is refused too.
	UsedOnce OnceSet
	// HostPrefixedCookies names the cookies __Host-spectrocloud-…, with
	// Path=/: browsers then refuse such a cookie from any other host, so a
	// sibling subdomain cannot plant one. Only for a daemon on a host of its
	// own (https://auth.example.com, not Backstage's host): Path=/ sends the
	// session cookie to every route of the host.
	HostPrefixedCookies bool
	// IncludeOwnershipClaim puts ent into Backstage tokens.
	IncludeOwnershipClaim bool
	// Ready reports whether the daemon can serve sign-ins (for /readyz).
	Ready func() error
	// SignInDone, when set, is told how each sign-in that reached the
	// callback ended: client is "browser" or "cli", outcome is "signed-in",
	// "refused" (the provider, a resolver or a check said no) or "failed"
	// (the daemon or a dependency failed). For metrics.
	SignInDone func(env, client, outcome string)
	// SessionEnded, when set, is told of sessions the daemon ended: n
	// sessions of env for reason (EndRefused, EndResolverRefused,
	// EndSignedOut, EndSignedOutEverywhere, EndDuplicateCookies). For
	// metrics.
	SessionEnded func(env, reason string, n int)
	// ClientRejected, when set, is told each time env's provider rejects
	// the daemon's own client credentials on a refresh (invalid_client,
	// unauthorized_client): a misconfiguration, which ends no session. For
	// metrics.
	ClientRejected func(env string)
	// ClientIP finds a request's client address for the rate limits (with
	// server.trustedProxies); nil means the connection's peer.
	ClientIP *ratelimit.ClientIP
	// SignInLimit bounds each client's requests to /start and the callback
	// (and the command-line routes); nil means DefaultSignInLimit.
	SignInLimit *ratelimit.PerClient
	// ExchangeBudget bounds the calls to the provider's token endpoint, all
	// clients together; nil means DefaultExchangeBudget.
	ExchangeBudget *ratelimit.Budget
	// DeviceInterval is the polling interval of the command line's device
	// sign-in; default DefaultDeviceInterval.
	DeviceInterval time.Duration
	// Logger defaults to a null logger.
	Logger hclog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Server is the HTTP side of the daemon.
type Server struct {
	cfg      Config
	authBase string // {BaseURL}/api/auth
	origins  *originPolicy
	log      hclog.Logger
	now      func() time.Time
	mux      *http.ServeMux
	used     OnceSet
	// usedCodes holds spent command-line codes apart from used sign-in
	// responses, when the sets are in memory (bounded); nil means used
	// holds both (a shared set, which forgets nothing early).
	usedCodes OnceSet
	flights   lifecycle.Flights
	backoff   lifecycle.Backoff
	// refusedLog samples the log lines of rate-limit refusals.
	refusedLog sampler
	oidcConf   []byte
	cli        cliState
	device     *deviceGrants
}

// New checks cfg and builds the routes.
func New(cfg Config) (*Server, error) {
	if len(cfg.FlowKey) < 32 {
		return nil, errors.New("server: flow key must be at least 32 bytes")
	}
	if len(cfg.Envs) == 0 {
		return nil, errors.New("server: no provider environment configured")
	}
	if cfg.Sessions == nil {
		return nil, errors.New("server: a session store is required")
	}
	s, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	for name, env := range cfg.Envs {
		env.name = name
		if env.CallbackURL == "" {
			env.CallbackURL = s.authBase + "/" + ProviderID + "/handler/frame"
		}
		if env.SessionDuration <= 0 {
			return nil, fmt.Errorf("server: environment %s: session duration must be positive", name)
		}
		if env.cookies, err = newCookieJar(ProviderID, env.CallbackURL, s.origins.app, env.SessionDuration, cfg.HostPrefixedCookies); err != nil {
			return nil, fmt.Errorf("server: environment %s: callback URL: %w", name, err)
		}
	}
	s.routes()
	return s, nil
}

// NewIdentityHandler serves only what Backstage backends need to verify the
// daemon's tokens (JWKS, OpenID configuration, user info) and the health
// checks; everything else answers 503. The daemon serves it while plugins
// and provider discovery are still starting, so a restart never leaves
// backends unable to verify tokens. Envs, Sessions and FlowKey are not used.
func NewIdentityHandler(cfg Config) (http.Handler, error) {
	s, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	s.identityRoutes()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "1")
		backstageerr.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting"})
	})
	return s, nil
}

// newServer builds what every route needs.
func newServer(cfg Config) (*Server, error) {
	if cfg.Identity == nil || cfg.UserInfo == nil {
		return nil, errors.New("server: identity issuer and user info store are required")
	}
	s := &Server{
		cfg:      cfg,
		authBase: strings.TrimSuffix(cfg.BaseURL, "/") + "/api/auth",
		log:      cfg.Logger,
		now:      cfg.Now,
		mux:      http.NewServeMux(),
		used:     cfg.UsedOnce,
	}
	if s.used == nil {
		s.used, s.usedCodes = &usedNonces{}, &usedNonces{}
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cfg.SignInLimit == nil {
		s.cfg.SignInLimit = ratelimit.NewPerClient(DefaultSignInsPerClientPerMinute, DefaultSignInBurst, DefaultMaxLimitedClients, s.now)
	}
	if s.cfg.ExchangeBudget == nil {
		s.cfg.ExchangeBudget = ratelimit.NewBudget(DefaultCodeExchangesPerSecond, 5*DefaultCodeExchangesPerSecond, s.now)
	}
	var err error
	if s.origins, err = newOriginPolicy(cfg.AppBaseURL, cfg.ExtraAllowedOrigins); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if s.oidcConf, err = s.openIDConfiguration(); err != nil {
		return nil, err
	}
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Handle mounts h on the server's mux (demo page, development provider, kube routes).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

func (s *Server) routes() {
	p := "/api/auth/{provider}/"
	s.mux.Handle("GET "+p+"start", s.api(s.limited(s.start)))
	s.mux.Handle("GET "+p+"handler/frame", s.api(s.limited(s.frame)))
	s.mux.Handle("POST "+p+"handler/frame", s.api(s.limited(s.frame)))
	s.mux.Handle("GET "+p+"refresh", s.cors(s.api(s.refresh)))
	s.mux.Handle("POST "+p+"refresh", s.cors(s.api(s.refresh)))
	s.mux.Handle("POST "+p+"logout", s.cors(s.api(s.logout)))
	s.cliRoutes()
	s.identityRoutes()
	// Everything else under /api/auth: CORS preflights, unknown providers and routes.
	s.mux.Handle("/api/auth/", s.cors(s.api(func(w http.ResponseWriter, r *http.Request) error {
		rest := strings.TrimPrefix(r.URL.Path, "/api/auth/")
		if p, _, _ := strings.Cut(rest, "/"); p != ProviderID && !strings.HasPrefix(rest, ".well-known/") && !strings.HasPrefix(rest, "v1/") {
			return backstageerr.NotFound("Unknown auth provider '%s'", p)
		}
		return backstageerr.NotFound("Not found")
	})))
	s.mux.HandleFunc("GET /readyz", s.readyz)
}

// identityRoutes are the routes token verifiers use, and liveness.
func (s *Server) identityRoutes() {
	s.mux.Handle("GET /api/auth/.well-known/jwks.json", s.cors(http.HandlerFunc(s.jwks)))
	s.mux.Handle("GET /api/auth/.well-known/openid-configuration", s.cors(http.HandlerFunc(s.openIDConfigurationRoute)))
	s.mux.Handle("GET /api/auth/v1/userinfo", s.cors(s.api(s.userinfo)))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		backstageerr.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// api adapts a handler that returns an error, answering Backstage's error
// body, and rejects providers other than ours.
func (s *Server) api(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.PathValue("provider"); p != "" && p != ProviderID {
			s.writeError(w, r, backstageerr.NotFound("Unknown auth provider '%s'", p))
			return
		}
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// cors answers preflights and adds credentialed CORS headers for allowed
// origins only. A disallowed origin gets no CORS headers, so the browser
// refuses the response.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allowed := origin != "" && s.origins.allowed(origin)
		h := w.Header()
		h.Add("Vary", "Origin")
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		if r.Method == http.MethodOptions {
			if !allowed {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "x-requested-with, content-type, authorization")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// env selects the environment from the env query parameter.
func (s *Server) env(name string) (*Env, error) {
	if name == "" {
		return nil, backstageerr.Input("Must specify 'env' query to select environment")
	}
	e, ok := s.cfg.Envs[name]
	if !ok {
		return nil, backstageerr.NotFound("No configuration available for the '%s' environment of this provider.", name)
	}
	return e, nil
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			backstageerr.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
			return
		}
	}
	backstageerr.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Sign-in outcomes, as SignInDone reports them.
const (
	SignInSucceeded = "signed-in"
	SignInRefused   = "refused"
	SignInFailed    = "failed"
)

// signInDone reports a sign-in's outcome; err nil means it succeeded.
func (s *Server) signInDone(env, client string, err error) {
	if s.cfg.SignInDone == nil {
		return
	}
	outcome := SignInSucceeded
	if err != nil {
		outcome = SignInRefused
		if backstageerr.As(err).Status >= 500 {
			outcome = SignInFailed
		}
	}
	s.cfg.SignInDone(env, client, outcome)
}

// OnceSet remembers single-use values until they expire: the nonce of each
// completed sign-in and the id of each redeemed command-line code.
// Implementations must be safe for concurrent use, and atomic: of two
// concurrent claims of one id, one wins.
type OnceSet interface {
	// Claim records id until expires and reports whether it was fresh: not
	// recorded yet, or recorded with an expiry that is not after now.
	Claim(ctx context.Context, id string, now, expires time.Time) (bool, error)
}

// claimOnce claims id for as long as a nonce cookie lives. Command-line
// codes (ids "cli-code:…") go to a set of their own when the set is the
// in-memory one: its bound forgets the oldest entries early, and sign-in
// responses, however many, must never make it forget a spent code.
func (s *Server) claimOnce(ctx context.Context, id string) (bool, error) {
	now := s.now()
	if s.usedCodes != nil && strings.HasPrefix(id, cliCodeOncePrefix) {
		return s.usedCodes.Claim(ctx, id, now, now.Add(nonceMaxAge))
	}
	return s.used.Claim(ctx, id, now, now.Add(nonceMaxAge))
}

// cliCodeOncePrefix starts the used-once id of a command-line code.
const cliCodeOncePrefix = "cli-code:"

// maxUsedNonces bounds how many used nonces are remembered. Anyone can make
// the daemon remember one (a made-up state with a matching made-up nonce
// cookie), so beyond it the oldest are forgotten early: a replay still needs
// the victim's nonce cookie and an authorization code the provider has not
// redeemed yet.
const maxUsedNonces = 1 << 16

// usedNonces is the in-memory OnceSet: it remembers the nonces of completed
// sign-ins until their cookie would have expired, so a state is accepted
// once by this process.
type usedNonces struct {
	mu   sync.Mutex
	seen map[string]time.Time
	// order holds the remembered nonces in claim order, which is expiry
	// order: expired ones leave from the front without a walk of them all.
	order []usedNonce
}

type usedNonce struct {
	nonce string
	exp   time.Time
}

// Claim implements OnceSet; it never fails.
func (u *usedNonces) Claim(_ context.Context, id string, now, expires time.Time) (bool, error) {
	return u.claimUntil(id, now, expires), nil
}

// claim records nonce for nonceMaxAge and reports whether it was fresh.
func (u *usedNonces) claim(nonce string, now time.Time) bool {
	return u.claimUntil(nonce, now, now.Add(nonceMaxAge))
}

// claimUntil records nonce until exp and reports whether it was fresh.
// Claims come with a constant lifetime, so the queue is in expiry order.
func (u *usedNonces) claimUntil(nonce string, now, exp time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seen == nil {
		u.seen = make(map[string]time.Time)
	}
	for len(u.order) > 0 && !now.Before(u.order[0].exp) {
		u.dropOldest()
	}
	if exp, ok := u.seen[nonce]; ok && now.Before(exp) {
		return false
	}
	for len(u.order) >= maxUsedNonces {
		u.dropOldest()
	}
	u.seen[nonce] = exp
	u.order = append(u.order, usedNonce{nonce, exp})
	return true
}

func (u *usedNonces) dropOldest() {
	head := u.order[0]
	u.order[0] = usedNonce{}
	u.order = u.order[1:]
	if exp, ok := u.seen[head.nonce]; ok && exp.Equal(head.exp) {
		delete(u.seen, head.nonce)
	}
}
