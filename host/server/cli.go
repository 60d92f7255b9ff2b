package server

// Command-line sign-in (RFC 8252, OAuth 2.0 for native apps): a program on
// the user's machine (spectroauthd kube-credential) listens on a loopback
// port and opens the browser at
//
//	GET {base}/api/auth/spectrocloud/cli/start?redirect_uri=http://127.0.0.1:PORT/callback
//	    &state=S&code_challenge=C&code_challenge_method=S256[&env=E]
//
// The daemon runs the same SpectroCloud sign-in as for Backstage (same
// callback, nonce cookie, PKCE, ID token checks and resolver chain), keeps
// the result as a session of its own, and redirects the browser to the
// loopback address with a one-time code. The program redeems the code at
//
//	POST {base}/api/auth/spectrocloud/cli/token
//	     grant_type=authorization_code&code=…&code_verifier=…&redirect_uri=…
//
// proving with its PKCE verifier that it started the sign-in, and gets a
// Backstage token (access_token, whose sid names the session) and the
// session's handle (refresh_token). With grant_type=refresh_token it later
// gets fresh Backstage tokens, exactly as the app's /refresh does;
// POST …/cli/logout ends the session. Nobody copies a token by hand.

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// CLI sign-in constants.
const (
	// cliStatePrefix marks the upstream state of a command-line sign-in; a
	// Backstage state is hex, which never contains it.
	cliStatePrefix = "cli."
	// CLICodeLifetime is how long a one-time code may wait to be redeemed.
	CLICodeLifetime = time.Minute
	// maxCLIState bounds the client's state parameter.
	maxCLIState = 256
	// cliCodeAAD binds sealed codes to their purpose and format.
	cliCodeAAD = "spectroauth cli code v1"
)

// cliRequest is what the CLI asked for, carried through SpectroCloud in the
// state (bound to the browser by the nonce cookie, re-validated on return).
type cliRequest struct {
	Nonce       string `json:"n"`
	Env         string `json:"e"`
	RedirectURI string `json:"r"`
	State       string `json:"s"`
	Challenge   string `json:"c"`
	Scope       string `json:"sc"`
}

func (c cliRequest) encode() string {
	b, _ := json.Marshal(c)
	return cliStatePrefix + base64.RawURLEncoding.EncodeToString(b)
}

// parseCLIState decodes a command-line sign-in's upstream state; ok is false
// for any other state.
func parseCLIState(s string) (cliRequest, bool) {
	raw, found := strings.CutPrefix(s, cliStatePrefix)
	if !found {
		return cliRequest{}, false
	}
	var c cliRequest
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || json.Unmarshal(b, &c) != nil || c.Nonce == "" {
		return cliRequest{}, true // ours, but broken: the caller refuses it
	}
	return c, true
}

// cliCode is what a one-time code seals: the session handle, and what the
// redeemer must prove.
type cliCode struct {
	ID          string    `json:"id"`
	Handle      string    `json:"h"`
	Challenge   string    `json:"c"`
	RedirectURI string    `json:"r"`
	Expires     time.Time `json:"x"`
}

func (s *Server) cliRoutes() {
	p := "/api/auth/{provider}/cli/"
	s.mux.Handle("GET "+p+"start", s.api(s.cliStart))
	s.mux.Handle("POST "+p+"token", s.api(s.cliToken))
	s.mux.Handle("POST "+p+"logout", s.api(s.cliLogout))
}

// loopbackRedirect checks a native app's redirect URI: http on a loopback
// IP literal with an explicit port (RFC 8252 sections 7.3 and 8.3; the name
// localhost is refused, as it may not resolve to the loopback interface).
func loopbackRedirect(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return nil, errors.New("redirect_uri must be an http://127.0.0.1:PORT/ or http://[::1]:PORT/ URL")
	}
	host, port, err := net.SplitHostPort(u.Host)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 {
		return nil, errors.New("redirect_uri must name the loopback port")
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, errors.New("redirect_uri must be on a loopback IP address (127.0.0.1 or [::1]), not " + host)
	}
	return u, nil
}

// validChallenge is an RFC 7636 S256 challenge: 43 base64url characters.
func validChallenge(c string) bool {
	b, err := base64.RawURLEncoding.DecodeString(c)
	return err == nil && len(b) == sha256.Size
}

// cliEnv picks the environment: the one named, or the only one there is.
func (s *Server) cliEnv(name string) (*Env, error) {
	if name == "" && len(s.cfg.Envs) == 1 {
		for _, e := range s.cfg.Envs {
			return e, nil
		}
	}
	if name == "" {
		names := make([]string, 0, len(s.cfg.Envs))
		for n := range s.cfg.Envs {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, backstageerr.Input("Several environments are configured (%s): choose one with env", strings.Join(names, ", "))
	}
	return s.env(name)
}

// cliStart answers GET cli/start: check the request, bind it to this
// browser with the nonce cookie, and send the browser to SpectroCloud.
func (s *Server) cliStart(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	env, err := s.cliEnv(q.Get("env"))
	if err != nil {
		return err
	}
	if _, err := loopbackRedirect(q.Get("redirect_uri")); err != nil {
		return backstageerr.Input("%s", err.Error())
	}
	state := q.Get("state")
	if state == "" || len(state) > maxCLIState {
		return backstageerr.Input("state is required (at most %d characters)", maxCLIState)
	}
	if q.Get("code_challenge_method") != "S256" || !validChallenge(q.Get("code_challenge")) {
		return backstageerr.Input("PKCE is required: code_challenge_method=S256 and a code_challenge of 43 base64url characters")
	}
	nonceBytes := make([]byte, 16)
	if _, err := rand.Read(nonceBytes); err != nil {
		return fmt.Errorf("making a nonce: %w", err)
	}
	nonce := base64.RawURLEncoding.EncodeToString(nonceBytes)
	env.cookies.setNonce(w, nonce, "")
	req := cliRequest{
		Nonce: nonce, Env: env.name, RedirectURI: q.Get("redirect_uri"), State: state,
		Challenge: q.Get("code_challenge"), Scope: joinScopes(requiredScopes, env.Scopes),
	}
	target := env.Upstream.AuthCodeURL(upstream.AuthRequest{
		RedirectURL:  env.CallbackURL,
		State:        req.encode(),
		Nonce:        s.derive("oidc-nonce", nonce),
		PKCEVerifier: s.derive("pkce-verifier", nonce),
		Scopes:       strings.Fields(req.Scope),
	})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// cliCallback completes a command-line sign-in at the provider callback.
// Until the request is known to come from the browser that started it,
// errors are a page; after that they go to the program's loopback address,
// which shows them in the terminal.
func (s *Server) cliCallback(w http.ResponseWriter, r *http.Request, params url.Values, req cliRequest) error {
	env, ok := s.cfg.Envs[req.Env]
	if req.Nonce == "" || !ok {
		writeCLIPage(w, http.StatusBadRequest, "Sign-in failed", "The sign-in state is invalid. Run the command again.")
		return nil
	}
	redirect, err := loopbackRedirect(req.RedirectURI)
	if err != nil {
		writeCLIPage(w, http.StatusBadRequest, "Sign-in failed", err.Error())
		return nil
	}
	cookieNonce := cookieValue(r, env.cookies.nonceName)
	if cookieNonce == "" || !hmac.Equal([]byte(cookieNonce), []byte(req.Nonce)) {
		writeCLIPage(w, http.StatusForbidden, "Sign-in refused", "This sign-in was not started in this browser. Run the command again.")
		return nil
	}
	env.cookies.clearNonce(w, "")
	if fresh, err := s.claimOnce(r.Context(), req.Nonce); err != nil {
		s.log.Error("command-line sign-in failed: recording the sign-in response as used", "env", env.name, "error", err)
		writeCLIPage(w, http.StatusInternalServerError, "Sign-in failed", "Sign-in failed; the daemon's log has the details. Run the command again.")
		return nil
	} else if !fresh {
		writeCLIPage(w, http.StatusForbidden, "Sign-in refused", "This sign-in response was already used. Run the command again.")
		return nil
	}
	fail := func(code string, err error) error {
		s.signInDone(env.name, "cli", err)
		ae := backstageerr.As(err)
		msg := ae.Message
		if ae.Status >= 500 {
			s.log.Error("command-line sign-in failed", "env", env.name, "error", err)
			msg = "Sign-in failed; the daemon's log has the details"
		} else {
			s.log.Info("command-line sign-in refused", "env", env.name, "error", err)
		}
		v := url.Values{"error": {code}, "error_description": {msg}, "state": {req.State}}
		s.redirectLoopback(w, r, redirect, v)
		return nil
	}
	if e := params.Get("error"); e != "" {
		return fail("access_denied", backstageerr.Authentication("SpectroCloud refused the sign-in: %s", describeOAuthError(e, params.Get("error_description"))))
	}
	if err := env.Upstream.CheckAuthorizationResponseIssuer(params.Get("iss")); err != nil {
		return fail("access_denied", backstageerr.NotAllowed("Authorization response came from an unexpected issuer").WithCause(err))
	}
	code := params.Get("code")
	if code == "" {
		return fail("invalid_request", backstageerr.Input("Authorization response has no code"))
	}
	tokens, err := env.Upstream.Exchange(r.Context(), code, env.CallbackURL,
		s.derive("pkce-verifier", req.Nonce), s.derive("oidc-nonce", req.Nonce))
	if err != nil {
		return fail("access_denied", backstageerr.Authentication("Could not complete the sign-in with SpectroCloud").WithCause(err))
	}
	if tokens.Scope == "" {
		tokens.Scope = req.Scope
	}
	handle, key, err := newHandle()
	if err != nil {
		return fail("server_error", err)
	}
	sess, err := s.newSession(r.Context(), env, key, tokens)
	if err != nil {
		return fail("access_denied", err)
	}
	if err := s.cfg.Sessions.Put(r.Context(), key, sess); err != nil {
		return fail("server_error", fmt.Errorf("storing the session: %w", err))
	}
	sealed, err := s.sealCLICode(cliCode{
		Handle: handle, Challenge: req.Challenge, RedirectURI: req.RedirectURI, Expires: s.now().Add(CLICodeLifetime),
	})
	if err != nil {
		return fail("server_error", err)
	}
	s.signInDone(env.name, "cli", nil)
	s.log.Info("signed in from the command line", "env", env.name, "user", sess.UserEntityRef, "sub", tokens.Profile.Subject)
	s.redirectLoopback(w, r, redirect, url.Values{"code": {sealed}, "state": {req.State}})
	return nil
}

func (s *Server) redirectLoopback(w http.ResponseWriter, r *http.Request, redirect *url.URL, v url.Values) {
	u := *redirect
	q := u.Query()
	for k, vals := range v {
		q[k] = vals
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// cliCodeKey derives the code sealing key from the flow key, so replicas
// that share the flow key redeem each other's codes.
func (s *Server) cliCodeKey() []byte {
	m := hmac.New(sha256.New, s.cfg.FlowKey)
	m.Write([]byte("cli-code-key\x00"))
	return m.Sum(nil)
}

func (s *Server) cliAEAD() (cipher.AEAD, error) {
	block, err := aes.NewCipher(s.cliCodeKey())
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealCLICode encrypts and authenticates a code: only this daemon (and its
// replicas) can read or make one.
func (s *Server) sealCLICode(c cliCode) (string, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", fmt.Errorf("making a code: %w", err)
	}
	c.ID = hex.EncodeToString(id)
	plain, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	aead, err := s.cliAEAD()
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("making a code: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, []byte(cliCodeAAD))), nil
}

func (s *Server) openCLICode(sealed string) (cliCode, error) {
	var c cliCode
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(sealed) > 4096 {
		return c, errors.New("malformed code")
	}
	aead, err := s.cliAEAD()
	if err != nil {
		return c, err
	}
	if len(raw) < aead.NonceSize() {
		return c, errors.New("malformed code")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(cliCodeAAD))
	if err != nil {
		return c, errors.New("the code was not issued by this daemon")
	}
	if err := json.Unmarshal(plain, &c); err != nil {
		return c, errors.New("malformed code")
	}
	return c, nil
}

// tokenError is an RFC 6749 section 5.2 error.
type tokenError struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
	status      int
	cause       error
}

func (e *tokenError) Error() string {
	if e.cause != nil {
		return e.Code + ": " + e.Description + ": " + e.cause.Error()
	}
	return e.Code + ": " + e.Description
}

func invalidGrant(desc string, cause error) *tokenError {
	return &tokenError{Code: "invalid_grant", Description: desc, status: http.StatusBadRequest, cause: cause}
}

// cliTokenResponse is the token endpoint's answer (RFC 6749 section 5.1).
type cliTokenResponse struct {
	// AccessToken is a Backstage user token (its sid names the session).
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	// RefreshToken is the session handle: keep it as secret as a cookie.
	RefreshToken string `json:"refresh_token,omitempty"`
	// User and Env say who signed in where, for the program's messages.
	User string `json:"user"`
	Env  string `json:"env"`
}

// cliToken answers POST cli/token.
func (s *Server) cliToken(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(nil, r.Body, 16<<10)
	var res *cliTokenResponse
	err := r.ParseForm()
	if err == nil {
		switch gt := r.PostForm.Get("grant_type"); gt {
		case "authorization_code":
			res, err = s.redeemCLICode(r.Context(), r.PostForm)
		case "refresh_token":
			res, err = s.refreshCLI(r.Context(), r.PostForm.Get("refresh_token"))
		default:
			err = &tokenError{Code: "unsupported_grant_type", Description: "grant_type must be authorization_code or refresh_token", status: http.StatusBadRequest}
		}
	} else {
		err = &tokenError{Code: "invalid_request", Description: "the body must be a form", status: http.StatusBadRequest, cause: err}
	}
	w.Header().Set("Pragma", "no-cache")
	var te *tokenError
	switch {
	case err == nil:
		backstageerr.WriteJSON(w, http.StatusOK, res)
	case errors.As(err, &te):
		s.log.Debug("command-line token request refused", "error", err)
		backstageerr.WriteJSON(w, te.status, te)
	default:
		s.log.Error("command-line token request failed", "error", err)
		backstageerr.WriteJSON(w, http.StatusInternalServerError, &tokenError{Code: "server_error", Description: "the daemon's log has the details"})
	}
	return nil
}

// redeemCLICode exchanges a one-time code for the session's tokens.
func (s *Server) redeemCLICode(ctx context.Context, form url.Values) (*cliTokenResponse, error) {
	c, err := s.openCLICode(form.Get("code"))
	if err != nil {
		return nil, invalidGrant("the code is invalid", err)
	}
	if !s.now().Before(c.Expires) {
		return nil, invalidGrant("the code has expired; sign in again", nil)
	}
	if form.Get("redirect_uri") != c.RedirectURI {
		return nil, invalidGrant("redirect_uri does not match the sign-in's", nil)
	}
	sum := sha256.Sum256([]byte(form.Get("code_verifier")))
	if !hmac.Equal([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(c.Challenge)) {
		return nil, invalidGrant("code_verifier does not match the code_challenge", nil)
	}
	if fresh, err := s.claimOnce(ctx, "cli-code:"+c.ID); err != nil {
		return nil, fmt.Errorf("recording the code as used: %w", err)
	} else if !fresh {
		return nil, invalidGrant("the code was already used; sign in again", nil)
	}
	key, err := session.KeyOf(c.Handle)
	if err != nil {
		return nil, invalidGrant("the code is invalid", err)
	}
	sess, err := s.cfg.Sessions.Get(ctx, key)
	if err != nil {
		if errors.Is(err, session.ErrNotFound) {
			return nil, invalidGrant("the session has ended; sign in again", err)
		}
		return nil, fmt.Errorf("reading the session: %w", err)
	}
	res := s.cliTokens(sess)
	res.RefreshToken = c.Handle
	return res, nil
}

// refreshCLI returns a fresh Backstage token for a session handle, renewing
// upstream tokens and the Backstage token as /refresh does.
func (s *Server) refreshCLI(ctx context.Context, handle string) (*cliTokenResponse, error) {
	key, err := session.KeyOf(handle)
	if err != nil {
		return nil, invalidGrant("refresh_token is malformed", err)
	}
	sess, err := s.cfg.Sessions.Get(ctx, key)
	if err != nil {
		if errors.Is(err, session.ErrNotFound) {
			return nil, invalidGrant("the session has ended; sign in again", err)
		}
		return nil, fmt.Errorf("reading the session: %w", err)
	}
	env, ok := s.cfg.Envs[sess.Env]
	if !ok {
		return nil, invalidGrant("the session's environment is no longer configured; sign in again", nil)
	}
	sess, err = s.refreshSession(ctx, env, key)
	if err != nil {
		if errors.Is(err, errSessionEnded) {
			return nil, invalidGrant("the session has ended; sign in again", err)
		}
		return nil, err
	}
	return s.cliTokens(sess), nil
}

func (s *Server) cliTokens(sess *session.Session) *cliTokenResponse {
	res := &cliTokenResponse{TokenType: "Bearer", User: sess.UserEntityRef, Env: sess.Env}
	if b := sess.Backstage; b != nil {
		res.AccessToken = b.Token
		res.ExpiresIn = secondsLeft(b.ExpiresAt, s.now())
	}
	return res
}

// cliLogout answers POST cli/logout: revoke upstream where the provider
// supports it and end the session. Unknown handles are no error.
func (s *Server) cliLogout(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(nil, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		return backstageerr.Input("The body must be a form")
	}
	key, err := session.KeyOf(r.PostForm.Get("refresh_token"))
	if err != nil {
		return backstageerr.Input("refresh_token is malformed")
	}
	if sess, err := s.cfg.Sessions.Get(r.Context(), key); err == nil {
		if env, ok := s.cfg.Envs[sess.Env]; ok {
			s.revokeUpstream(r.Context(), env, sess)
		}
		s.log.Info("signed out from the command line", "env", sess.Env, "user", sess.UserEntityRef)
	}
	if err := s.cfg.Sessions.Delete(r.Context(), key); err != nil {
		return fmt.Errorf("deleting the session: %w", err)
	}
	backstageerr.WriteJSON(w, http.StatusOK, map[string]string{})
	return nil
}

var cliPage = template.Must(template.New("cli").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} — spectroauth</title></head>
<body><h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>
`))

// writeCLIPage answers the browser of a command-line sign-in.
func writeCLIPage(w http.ResponseWriter, status int, title, message string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = cliPage.Execute(w, map[string]string{"Title": title, "Message": message})
}
