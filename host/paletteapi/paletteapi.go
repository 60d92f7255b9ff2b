// Package paletteapi serves /api/auth/spectrocloud/palette/<path>: a call
// to SpectroCloud Palette's REST API as the signed-in user, with the
// Palette session token the provider handed out at sign-in. The token stays
// in the daemon: it is renewed here (Palette's v1AuthRefresh) before its 15
// minutes run out, sent to Palette as "Authorization: <token>" (Palette's
// securityDefinitions), and never echoed to the caller.
//
// Callers are authenticated as the Kubernetes credential route does
// (lifecycle.CredentialCallers): a command-line access token, or
// Backstage's app in the browser with its session cookie; never a
// Backstage user token alone. Read-only methods (GET, HEAD) are allowed;
// Config.Allow adds "METHOD /v1/path/prefix" rules. Without a Palette
// session token the answer is 503: no tenant API key stands in for a user.
package paletteapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/lifecycle"
)

// RoutePrefix is where the route lives on the daemon.
const RoutePrefix = "/api/auth/spectrocloud/palette/"

// MaxResponseBytes bounds an answer of Palette the route passes on.
const MaxResponseBytes = 8 << 20

// maxRequestBody bounds a forwarded request body.
const maxRequestBody = 1 << 20

// Rule allows one more method on a path prefix: a paletteApi.allow entry,
// read by config.ParsePaletteRule.
type Rule = config.PaletteRule

func matches(r Rule, method, p string) bool {
	return r.Method == method && (p == r.Prefix || strings.HasPrefix(p, r.Prefix+"/"))
}

// deniedPath: Palette's authentication operations hand out and take tokens;
// a caller never reaches them as the user.
func deniedPath(p string) bool { return p == "/v1/auth" || strings.HasPrefix(p, "/v1/auth/") }

// Config is what the route needs.
type Config struct {
	// Callers authenticates the caller. Required (CLISessions or
	// BrowserSessions).
	Callers lifecycle.CredentialCallers
	// PaletteSession renews a session's Palette session token when it is
	// due ((*server.Server).PaletteSession). Required.
	PaletteSession func(ctx context.Context, us *lifecycle.UserSession, renew lifecycle.PaletteRenewal) (*lifecycle.UserSession, error)
	// BaseURL is the Palette API of an environment (scheme and host, e.g.
	// https://api.spectrocloud.com). Required.
	BaseURL func(env string) (*url.URL, error)
	// Allow are the rules beyond GET and HEAD.
	Allow []Rule
	// HTTPClient calls Palette: build it with upstream.NewBackChannelClient
	// (timeout, no redirects, bounded bodies). Required.
	HTTPClient *http.Client
	// Logger defaults to a null logger. Tokens are never logged.
	Logger hclog.Logger
}

// Handler serves the route.
type Handler struct {
	cfg Config
	log hclog.Logger
}

var _ http.Handler = (*Handler)(nil)

// New checks cfg.
func New(cfg Config) (*Handler, error) {
	if cfg.Callers.CLISessions == nil && cfg.Callers.BrowserSessions == nil {
		return nil, errors.New("paletteapi: Config.Callers authenticates no one")
	}
	if cfg.PaletteSession == nil || cfg.BaseURL == nil || cfg.HTTPClient == nil {
		return nil, errors.New("paletteapi: Config.PaletteSession, BaseURL and HTTPClient are required")
	}
	h := &Handler{cfg: cfg, log: cfg.Logger}
	if h.log == nil {
		h.log = hclog.NewNullLogger()
	}
	return h, nil
}

// ServeHTTP answers one call.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.serve(w, r); err != nil {
		backstageerr.Write(w, r, err)
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) error {
	us, err := h.cfg.Callers.Authenticate(r)
	if err != nil {
		return authError(err)
	}
	p := "/" + strings.TrimPrefix(r.URL.Path, RoutePrefix)
	if path.Clean(p) != p || !strings.HasPrefix(p, "/v1/") || deniedPath(p) {
		return backstageerr.NotFound("Not a Palette API path this route serves: use " + RoutePrefix + "v1/...")
	}
	if !h.allowed(r.Method, p) {
		return backstageerr.New(http.StatusForbidden, backstageerr.NameNotAllowed,
			fmt.Sprintf("%s %s is not allowed: only GET and HEAD are, unless paletteApi.allow lists it", r.Method, p), nil)
	}
	if us.Tokens == nil || us.Tokens.PaletteSessionToken == "" {
		return unavailable("Your sign-in brought no Palette session token (the provider handed none out), so the daemon cannot call Palette as you; no tenant API key is used instead")
	}
	base, err := h.cfg.BaseURL(us.Env)
	if err != nil {
		return fmt.Errorf("finding the Palette API of environment %q: %w", us.Env, err)
	}
	us, err = h.cfg.PaletteSession(r.Context(), us, h.renewal(base))
	switch {
	case errors.Is(err, lifecycle.ErrPaletteTokenRefused):
		return unavailable("Palette refused to renew your Palette session (it expired or was ended); sign in again")
	case err != nil:
		return authError(err)
	case us.Tokens == nil || us.Tokens.PaletteSessionToken == "":
		return unavailable("Your session holds no Palette session token; sign in again")
	}
	return h.forward(w, r, base, p, us)
}

func (h *Handler) allowed(method, p string) bool {
	if method == http.MethodGet || method == http.MethodHead {
		return true
	}
	for _, rule := range h.cfg.Allow {
		if matches(rule, method, p) {
			return true
		}
	}
	return false
}

// requestHeaders are the caller's headers passed on to Palette.
var requestHeaders = []string{"Accept", "Content-Type", "ProjectUid"}

// responseHeaders are Palette's headers passed back; everything else
// (Set-Cookie, Authorization, ...) stays in the daemon.
var responseHeaders = []string{"Content-Type", "Content-Disposition", "Retry-After"}

func (h *Handler) forward(w http.ResponseWriter, r *http.Request, base *url.URL, p string, us *lifecycle.UserSession) error {
	token := us.Tokens.PaletteSessionToken
	var body io.Reader
	if r.Body != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
		b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxRequestBody))
		if err != nil {
			return backstageerr.New(http.StatusRequestEntityTooLarge, backstageerr.NameInput, "The request body is too large or unreadable", nil)
		}
		body = bytes.NewReader(b)
	}
	target := base.JoinPath(p)
	// env names the caller's Backstage environment to the daemon
	// (BrowserSession); it is not Palette's.
	q := r.URL.Query()
	q.Del("env")
	target.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(r.Context(), r.Method, target.String(), body)
	if err != nil {
		return fmt.Errorf("building the Palette request: %w", err)
	}
	for _, k := range requestHeaders {
		if v := r.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set("Authorization", token)
	resp, err := h.cfg.HTTPClient.Do(req)
	if err != nil {
		h.log.Warn("calling palette as a user failed", "user", us.Session.UserEntityRef, "method", r.Method, "path", p, "error", err)
		return backstageerr.New(http.StatusBadGateway, backstageerr.NameError, "Palette could not be reached; try again shortly", nil)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		h.log.Warn("reading palette's answer failed", "user", us.Session.UserEntityRef, "path", p, "error", err)
		return backstageerr.New(http.StatusBadGateway, backstageerr.NameError, "Palette's answer could not be read (too large or cut off)", nil)
	}
	if bytes.Contains(out, []byte(token)) {
		h.log.Error("palette's answer held the user's palette session token; withheld", "user", us.Session.UserEntityRef, "path", p)
		return backstageerr.New(http.StatusBadGateway, backstageerr.NameError, "Palette's answer held your session token and was withheld", nil)
	}
	for _, k := range responseHeaders {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(resp.StatusCode)
	if r.Method != http.MethodHead {
		_, _ = w.Write(out)
	}
	return nil
}

func unavailable(msg string) error {
	return backstageerr.New(http.StatusServiceUnavailable, backstageerr.NameServiceUnavailable, msg, nil)
}

// authError is the answer to a failed authentication.
func authError(err error) error {
	switch {
	case errors.Is(err, lifecycle.ErrBackstageToken):
		return backstageerr.Authentication("A Backstage user token does not buy Palette access as the user: send a command-line access token, or call from Backstage's app with the session cookie").WithCause(err)
	case errors.Is(err, lifecycle.ErrNoCredential):
		return backstageerr.Authentication("Missing credential: send Authorization: Bearer <command-line access token>, or call from Backstage's app with the session cookie").WithCause(err)
	case errors.Is(err, lifecycle.ErrUnauthenticated):
		return backstageerr.Authentication("Invalid credential: it is expired, malformed, not issued by this daemon, or from an origin that is not allowed; sign in again").WithCause(err)
	case errors.Is(err, lifecycle.ErrSessionEnded):
		return backstageerr.Authentication("Your SpectroCloud session has ended; sign in again").WithCause(err)
	default:
		return unavailable("Your session could not be read or renewed right now; try again shortly")
	}
}

// userToken is Palette's v1UserToken.
type userToken struct {
	Authorization string `json:"Authorization"`
	IsMfa         bool   `json:"isMfa"`
}

// renewal renews a token with Palette's v1AuthRefresh:
// GET /v1/auth/refresh/{token}?setCookie=false, answering v1UserToken.
func (h *Handler) renewal(base *url.URL) lifecycle.PaletteRenewal {
	return func(ctx context.Context, token string) (string, time.Time, error) {
		return Refresh(ctx, h.cfg.HTTPClient, base, token)
	}
}

// Refresh renews a Palette session token with Palette's v1AuthRefresh
// (GET /v1/auth/refresh/{token}?setCookie=false, answering v1UserToken)
// and returns the new token and its exp (zero when it carries none). A 401
// or 403 wraps lifecycle.ErrPaletteTokenRefused. Errors never hold the
// token (it is in the URL's path).
func Refresh(ctx context.Context, client *http.Client, base *url.URL, token string) (string, time.Time, error) {
	u := *base
	u.Path = strings.TrimSuffix(base.Path, "/") + "/v1/auth/refresh/" + token
	u.RawPath = strings.TrimSuffix(base.EscapedPath(), "/") + "/v1/auth/refresh/" + url.PathEscape(token)
	u.RawQuery = "setCookie=false"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", time.Time{}, errors.New("palette refresh: building the request failed")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", time.Time{}, fmt.Errorf("palette refresh: %s", redact(err.Error(), token))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", time.Time{}, fmt.Errorf("palette refresh: status %d: %w", resp.StatusCode, lifecycle.ErrPaletteTokenRefused)
	case resp.StatusCode != http.StatusOK:
		return "", time.Time{}, fmt.Errorf("palette refresh: status %d", resp.StatusCode)
	case err != nil:
		return "", time.Time{}, fmt.Errorf("palette refresh: reading the answer: %s", redact(err.Error(), token))
	}
	var ut userToken
	if err := json.Unmarshal(body, &ut); err != nil || ut.Authorization == "" {
		return "", time.Time{}, errors.New("palette refresh: the answer is not a v1UserToken with an Authorization")
	}
	exp, _ := lifecycle.JWTExpiry(ut.Authorization)
	return ut.Authorization, exp, nil
}

func redact(s, token string) string {
	if token == "" {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, token, "[token]"), url.PathEscape(token), "[token]")
}
