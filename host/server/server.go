// Package server speaks Backstage's auth protocol over HTTP: the provider
// routes (start, handler/frame, refresh, logout) for the spectrocloud
// provider, the identity routes (JWKS, OpenID configuration, user info) and
// the health checks, exactly as Backstage's own auth backend answers them.
//
// The routes are a thin HTTP front end over the session lifecycle
// (host/lifecycle): cookies, CORS, origins and Backstage's wire format are
// here; begin, complete, renew, revalidate and end are there.
package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/internal/ratelimit"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/session"
)

// ProviderID is the Backstage auth provider id the daemon serves.
const ProviderID = lifecycle.ProviderID

// Env is lifecycle.Env: one Backstage environment of the provider.
type Env = lifecycle.Env

// OnceSet is lifecycle.OnceSet: single-use values remembered until they
// expire.
type OnceSet = lifecycle.OnceSet

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
	// sessions of env for reason (lifecycle.EndRefused and the other
	// lifecycle.End* reasons). For metrics.
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
	// Logger defaults to a null logger.
	Logger hclog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Server is the HTTP side of the daemon: Backstage's routes in front of
// the session lifecycle (host/lifecycle).
type Server struct {
	cfg      Config
	authBase string // {BaseURL}/api/auth
	origins  *originPolicy
	log      hclog.Logger
	now      func() time.Time
	mux      *http.ServeMux
	lc       *lifecycle.Manager
	// jars holds each environment's cookies, by environment name.
	jars map[string]*cookieJar
	// refusedLog samples the log lines of rate-limit refusals.
	refusedLog sampler
	oidcConf   []byte
	// callbacks are the other front ends' sign-ins that complete at the
	// provider callback, by state prefix (HandleCallbackStates).
	callbacks []stateCallback
}

type stateCallback struct {
	prefix string
	handle func(http.ResponseWriter, *http.Request, url.Values) error
}

// New checks cfg and builds the routes.
func New(cfg Config) (*Server, error) {
	s, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	for _, env := range cfg.Envs {
		if env.CallbackURL == "" {
			env.CallbackURL = s.authBase + "/" + ProviderID + "/handler/frame"
		}
	}
	// lifecycle.New checks the flow key, the environments (their session
	// durations) and the session store.
	s.lc, err = lifecycle.New(lifecycle.Config{
		Envs:                  cfg.Envs,
		Identity:              cfg.Identity,
		Sessions:              cfg.Sessions,
		FlowKey:               cfg.FlowKey,
		UsedOnce:              cfg.UsedOnce,
		IncludeOwnershipClaim: cfg.IncludeOwnershipClaim,
		ExchangeBudget:        s.cfg.ExchangeBudget,
		ExchangeRefused: func() {
			s.refusedLog.warn(s, "sign-ins refused: over server.rateLimits.codeExchangesPerSecond")
		},
		SessionEnded:   cfg.SessionEnded,
		ClientRejected: cfg.ClientRejected,
		Logger:         s.log,
		Now:            s.now,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.jars = make(map[string]*cookieJar, len(cfg.Envs))
	for name, env := range cfg.Envs {
		if s.jars[name], err = newCookieJar(ProviderID, env.CallbackURL, s.origins.app, env.SessionDuration, cfg.HostPrefixedCookies); err != nil {
			return nil, fmt.Errorf("server: environment %s: callback URL: %w", name, err)
		}
	}
	s.routes()
	return s, nil
}

// The command-line routes (host/cliauth) are mounted on the server and
// share its callback, cookies, error bodies and limits.
var _ interface {
	Handle(string, http.Handler)
	API(func(http.ResponseWriter, *http.Request) error) http.Handler
	HandleCallbackStates(string, func(http.ResponseWriter, *http.Request, url.Values) error)
} = (*Server)(nil)

// API adapts a handler that returns an error to Backstage's error body, as
// the provider routes have it.
func (s *Server) API(h func(http.ResponseWriter, *http.Request) error) http.Handler { return s.api(h) }

// Limited applies the sign-in rate limit (server.rateLimits) to h.
func (s *Server) Limited(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return s.limited(h)
}

// HandleCallbackStates sends the provider callbacks whose state starts with
// prefix to h (the command line's sign-ins). Call it before serving.
func (s *Server) HandleCallbackStates(prefix string, h func(http.ResponseWriter, *http.Request, url.Values) error) {
	s.callbacks = append(s.callbacks, stateCallback{prefix, h})
}

// SetNonce binds a sign-in of env to the browser with the nonce cookie the
// callback reads.
func (s *Server) SetNonce(w http.ResponseWriter, env *Env, nonce string) {
	s.jar(env).setNonce(w, nonce, "")
}

// ClearNonce clears env's nonce cookie.
func (s *Server) ClearNonce(w http.ResponseWriter, env *Env) { s.jar(env).clearNonce(w, "") }

// Nonce reads env's nonce cookie, "" without one.
func (s *Server) Nonce(r *http.Request, env *Env) string { return cookieValue(r, s.jar(env).nonceName) }

// CookieScope is the path env's cookies live under and whether they are
// Secure.
func (s *Server) CookieScope(env *Env) (path string, secure bool) {
	j := s.jar(env)
	return j.path, j.secure
}

// SignInDone reports a sign-in's outcome (Config.SignInDone).
func (s *Server) SignInDone(env, client string, err error) { s.signInDone(env, client, err) }

// AuthBase is {BaseURL}/api/auth.
func (s *Server) AuthBase() string { return s.authBase }

// Lifecycle is the session lifecycle the server's routes front.
func (s *Server) Lifecycle() *lifecycle.Manager { return s.lc }

// jar is env's cookies.
func (s *Server) jar(env *Env) *cookieJar { return s.jars[env.Name()] }

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
