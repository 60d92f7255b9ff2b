// Package cliauth serves the command-line and device sign-in routes under
// {base}/api/auth/spectrocloud/cli/: the loopback sign-in with its consent
// page (RFC 8252), the device authorization grant (RFC 8628), the token
// endpoint that redeems codes and rotates command-line refresh tokens, and
// the command line's logout. It is a thin HTTP front end over the session
// lifecycle (host/lifecycle): the sign-in itself (begin, complete, the
// resolver chain), renewal and ending sessions happen there.
//
// The routes share the provider callback, the nonce cookie, error bodies and
// rate limits with Backstage's routes (host/server), which it reaches
// through Front; the daemon mounts it on the server (Mount).
package cliauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/lifecycle"
)

// Front is what the command-line routes share with Backstage's routes
// ((*server.Server) implements it).
type Front interface {
	// Handle mounts h on the daemon's mux.
	Handle(pattern string, h http.Handler)
	// API adapts a handler that returns an error, answering Backstage's
	// error body, and refuses providers other than the daemon's.
	API(h func(http.ResponseWriter, *http.Request) error) http.Handler
	// Limited refuses a client over its sign-in rate before h runs.
	Limited(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error
	// HandleCallbackStates sends the provider callbacks whose state starts
	// with prefix to h, with the authorization response's parameters.
	HandleCallbackStates(prefix string, h func(w http.ResponseWriter, r *http.Request, params url.Values) error)
	// SetNonce binds a sign-in of env to the browser (the nonce cookie the
	// callback reads); ClearNonce clears it; Nonce reads it.
	SetNonce(w http.ResponseWriter, env *lifecycle.Env, nonce string)
	ClearNonce(w http.ResponseWriter, env *lifecycle.Env)
	Nonce(r *http.Request, env *lifecycle.Env) string
	// CookieScope is the path env's cookies live under and whether they
	// are Secure.
	CookieScope(env *lifecycle.Env) (path string, secure bool)
	// SignInDone reports a sign-in's outcome (client "cli"); err nil means
	// it succeeded.
	SignInDone(env, client string, err error)
	// AuthBase is {BaseURL}/api/auth.
	AuthBase() string
}

// Config configures the command-line routes.
type Config struct {
	// Lifecycle is the session lifecycle the routes front. Required.
	Lifecycle *lifecycle.Manager
	// Front is Backstage's routes, whose callback, cookies and limits the
	// command line shares. Required.
	Front Front
	// DeviceInterval is the polling interval of the device sign-in;
	// default DefaultDeviceInterval.
	DeviceInterval time.Duration
	// Logger defaults to a null logger.
	Logger hclog.Logger
}

// Handler serves the command-line routes.
type Handler struct {
	cfg      Config
	lc       *lifecycle.Manager
	front    Front
	log      hclog.Logger
	authBase string
	cli      cliState
	device   *deviceGrants
}

// Mount builds the command-line routes and mounts them on cfg.Front.
func Mount(cfg Config) (*Handler, error) {
	if cfg.Lifecycle == nil || cfg.Front == nil {
		return nil, errors.New("cliauth: a lifecycle and a front are required")
	}
	h := &Handler{cfg: cfg, lc: cfg.Lifecycle, front: cfg.Front, log: cfg.Logger, authBase: cfg.Front.AuthBase()}
	if h.log == nil {
		h.log = hclog.NewNullLogger()
	}
	h.routes()
	cfg.Front.HandleCallbackStates(cliStatePrefix, h.callback)
	return h, nil
}

// now is the lifecycle's clock.
func (h *Handler) now() time.Time { return h.lc.Now() }

// Audience is the "aud" of command-line access tokens: the Kubernetes
// credential broker's routes.
func (h *Handler) Audience() string { return h.authBase + "/" + lifecycle.ProviderID + "/kubernetes" }

// Session authenticates a command-line access token (identity.TypeCLIAccess,
// audience Audience) and returns its command-line session, with upstream
// tokens renewed first when the policy says the provider is due.
func (h *Handler) Session(ctx context.Context, accessToken string) (*lifecycle.UserSession, error) {
	return h.lc.CLISession(ctx, accessToken, h.Audience())
}

// callback completes a command-line sign-in at the provider callback. A
// state it did not make costs one HMAC.
func (h *Handler) callback(w http.ResponseWriter, r *http.Request, params url.Values) error {
	req, err := h.openCLIState(params.Get("state"))
	if err != nil {
		return err
	}
	return h.cliCallback(w, r, params, req)
}

// env selects an environment by name, with Backstage's errors.
func (h *Handler) env(name string) (*lifecycle.Env, error) {
	if name == "" {
		return nil, backstageerr.Input("Must specify 'env' query to select environment")
	}
	e, ok := h.lc.Env(name)
	if !ok {
		return nil, backstageerr.NotFound("No configuration available for the '%s' environment of this provider.", name)
	}
	return e, nil
}

// cookiePath and cookieSecure are env's cookie scope (Front.CookieScope).
func (h *Handler) cookiePath(env *lifecycle.Env) string {
	p, _ := h.front.CookieScope(env)
	return p
}

func (h *Handler) cookieSecure(env *lifecycle.Env) bool {
	_, s := h.front.CookieScope(env)
	return s
}

// cookieValue is the value of the request's cookie name, "" without one.
func cookieValue(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}

// secondsLeft is an RFC 6749 expires_in: whole seconds from now to t, never
// negative.
func secondsLeft(t, now time.Time) int64 {
	return max(int64(t.Sub(now).Round(time.Second)/time.Second), 0)
}
