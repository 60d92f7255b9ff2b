package cliauth

// Command-line sign-in (RFC 8252, OAuth 2.0 for native apps): a program on
// the user's machine (spectroauthd kube-credential) listens on a loopback
// port and opens the browser at
//
//	GET {base}/api/auth/spectrocloud/cli/start?redirect_uri=http://127.0.0.1:PORT/callback
//	    &state=S&code_challenge=C&code_challenge_method=S256[&env=E]
//
// The daemon runs the same SpectroCloud sign-in as for Backstage (same
// callback, nonce cookie, PKCE, ID token checks and resolver chain) and
// keeps the result as a command-line session (session.KindCLI). Before any
// code leaves the daemon, the browser shows a consent page: which program
// asks, as whom it will sign in, and a confirmation code the program printed
// too (cliwire.ConfirmationCode of its PKCE challenge). Only when the user
// confirms (POST cli/consent, with a cookie and a CSRF token bound to the
// sign-in) is the browser sent to the loopback address with a one-time code.
// The program redeems the code at
//
//	POST {base}/api/auth/spectrocloud/cli/token
//	     grant_type=authorization_code&code=…&code_verifier=…&redirect_uri=…
//
// proving with its PKCE verifier that it started the sign-in, and gets a
// command-line access token (identity.TypeCLIAccess, audience CLIAudience,
// CLIAccessLifetime: the only token the Kubernetes credential broker
// accepts from a program) and a refresh token. The refresh token rotates on
// every grant_type=refresh_token; presenting a spent one ends the session
// (RFC 9700 section 4.14.2). POST …/cli/logout ends the session. A browser
// session's handle is never a command-line refresh token, nor the other way
// round: command-line sessions are stored under a key no cookie maps to.

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
	"sync"
	"time"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/internal/cliwire"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/session"
)

// CLI sign-in constants.
const (
	// cliStatePrefix marks the upstream state of a command-line sign-in; a
	// Backstage state is hex, which never contains it.
	cliStatePrefix = "cli."
	// cliStateMACPurpose is the purpose of the flow key's MAC over a
	// command-line state, so that no MAC serves two uses.
	cliStateMACPurpose = "cli-state-v1"
	// CLICodeLifetime is how long a one-time code may wait to be redeemed.
	CLICodeLifetime = time.Minute
	// maxCLIState bounds the client's state parameter.
	maxCLIState = 256
	// cliCodeAAD binds sealed codes to their purpose and format.
	cliCodeAAD = "spectroauth cli code v1"
	// cliConsentAAD binds sealed consent forms to theirs: a consent form is
	// never a code.
	cliConsentAAD = "spectroauth cli consent v1"
	// CLIConsentLifetime is how long the consent page may wait for the user.
	CLIConsentLifetime = 5 * time.Minute
	// CLIAccessLifetime is the lifetime of command-line access tokens.
	CLIAccessLifetime = 10 * time.Minute
	// cliRefreshPrefix starts every command-line refresh token.
	cliRefreshPrefix = "scli1."
	// consentCookie binds the consent page to the browser it was shown in.
	consentCookie = lifecycle.ProviderID + "-cli-consent"
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
	// Device names the device grant (deviceKey) a device sign-in completes;
	// RedirectURI, State and Challenge are empty then.
	Device string `json:"d,omitempty"`
	// Issued is when the daemon made the state (Unix seconds).
	Issued int64 `json:"t,omitempty"`
}

func (c cliRequest) encode() string {
	b, _ := json.Marshal(c)
	return cliStatePrefix + base64.RawURLEncoding.EncodeToString(b)
}

// sealCLIState is the upstream state of a command-line sign-in: the
// request, then a MAC with the flow key, so that the callback refuses a
// state the daemon did not make before any provider call or any write.
func (h *Handler) sealCLIState(req cliRequest) string {
	body := req.encode()
	return body + "." + h.lc.Derive(cliStateMACPurpose, body)
}

// openCLIState checks a command-line state's MAC and age, then decodes it.
func (h *Handler) openCLIState(raw string) (cliRequest, error) {
	body, sig, found := strings.Cut(raw, ".")
	if found {
		// The prefix holds the first dot: the MAC follows the second.
		var rest string
		rest, sig, found = strings.Cut(sig, ".")
		body += "." + rest
	}
	if !found || len(raw) > 8<<10 || !hmac.Equal([]byte(sig), []byte(h.lc.Derive(cliStateMACPurpose, body))) {
		return cliRequest{}, backstageerr.NotAllowed("OAuth state was not issued by this service")
	}
	req, _ := parseCLIState(body)
	if req.Nonce == "" || !h.lc.FlowFresh(time.Unix(req.Issued, 0)) {
		return cliRequest{}, backstageerr.NotAllowed("OAuth state has expired; run the command again")
	}
	return req, nil
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

// cliCode is what a one-time code and a consent form seal: the session's
// secret, and what the redeemer must prove.
type cliCode struct {
	ID          string    `json:"id"`
	Handle      string    `json:"h"`
	Challenge   string    `json:"c"`
	RedirectURI string    `json:"r"`
	Expires     time.Time `json:"x"`
	// State, Env and Cookie are set in consent forms only: the program's
	// state, the environment, and the MAC of the consent cookie's value.
	State  string `json:"s,omitempty"`
	Env    string `json:"e,omitempty"`
	Cookie string `json:"k,omitempty"`
}

// cliState is the command-line routes' share of the server.
type cliState struct {
	// rotate serialises refresh token rotation in this process (replicas
	// take the store's renewal lock too).
	rotate sync.Mutex
}

func (h *Handler) routes() {
	p := "/api/auth/{provider}/cli/"
	h.front.Handle("GET "+p+"start", h.front.API(h.front.Limited(h.cliStart)))
	h.front.Handle("POST "+p+"consent", h.front.API(h.front.Limited(h.cliConsent)))
	h.front.Handle("GET "+p+"consent", h.front.API(func(w http.ResponseWriter, _ *http.Request) error {
		writeCLIPage(w, http.StatusMethodNotAllowed, "Sign-in refused", "Confirm the sign-in on the page the daemon showed you; run the command again.")
		return nil
	}))
	h.front.Handle("POST "+p+"token", h.front.API(h.front.Limited(h.cliToken)))
	h.device = newDeviceGrants(h.cfg.DeviceInterval)
	h.front.Handle("POST "+p+"device_authorization", h.front.API(h.deviceAuthorization))
	h.front.Handle("GET "+p+"device", h.front.API(h.deviceVerify))
	h.front.Handle("POST "+p+"device", h.front.API(h.deviceEnter))
	h.front.Handle("POST "+p+"logout", h.front.API(h.cliLogout))
}

// loopbackRedirect checks a native app's redirect URI: exactly
// http://127.0.0.1:PORT/callback or http://[::1]:PORT/callback (RFC 8252
// sections 7.3 and 8.3). No other loopback address, no name (localhost may
// not resolve to the loopback interface), no query, no other path.
func loopbackRedirect(raw string) (*url.URL, error) {
	const want = "redirect_uri must be http://127.0.0.1:PORT" + cliwire.CallbackPath + " or http://[::1]:PORT" + cliwire.CallbackPath
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Fragment != "" || u.Opaque != "" ||
		u.RawQuery != "" || u.ForceQuery || u.RawFragment != "" || strings.ContainsAny(raw, "#?") {
		return nil, errors.New(want)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || !validPort(port) {
		return nil, errors.New(want + ": it must name the loopback port")
	}
	if host != "127.0.0.1" && host != "::1" {
		return nil, errors.New(want + ": the host must be the loopback IP address 127.0.0.1 or [::1], not " + host)
	}
	if u.Path != cliwire.CallbackPath || u.RawPath != "" {
		return nil, errors.New(want + ": the path must be " + cliwire.CallbackPath)
	}
	return u, nil
}

// validPort is a port number in canonical decimal, 1 to 65535.
func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n <= 65535 && strconv.Itoa(n) == p
}

// validChallenge is an RFC 7636 S256 challenge: 43 base64url characters.
func validChallenge(c string) bool {
	b, err := base64.RawURLEncoding.DecodeString(c)
	return err == nil && len(b) == sha256.Size
}

// cliEnv picks the environment: the one named, or the only one there is.
func (h *Handler) cliEnv(name string) (*lifecycle.Env, error) {
	if name == "" && len(h.lc.Envs()) == 1 {
		for _, e := range h.lc.Envs() {
			return e, nil
		}
	}
	if name == "" {
		names := make([]string, 0, len(h.lc.Envs()))
		for n := range h.lc.Envs() {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, backstageerr.Input("Several environments are configured (%s): choose one with env", strings.Join(names, ", "))
	}
	return h.env(name)
}

// cliStart answers GET cli/start: check the request, bind it to this
// browser with the nonce cookie, and send the browser to SpectroCloud.
func (h *Handler) cliStart(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	env, err := h.cliEnv(q.Get("env"))
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
	return h.cliSignInUpstream(w, r, env, cliRequest{
		RedirectURI: q.Get("redirect_uri"), State: state, Challenge: q.Get("code_challenge"),
	})
}

// cliSignInUpstream binds a command-line sign-in to this browser with the
// nonce cookie and sends the browser to SpectroCloud.
func (h *Handler) cliSignInUpstream(w http.ResponseWriter, r *http.Request, env *lifecycle.Env, req cliRequest) error {
	req.Env, req.Scope = env.Name(), lifecycle.JoinScopes(lifecycle.RequiredScopes, env.Scopes)
	req.Issued = h.now().Unix()
	nonce, target, err := h.lc.Begin(env, req.Scope, func(nonce string) string {
		req.Nonce = nonce
		return h.sealCLIState(req)
	})
	if err != nil {
		return err
	}
	h.front.SetNonce(w, env, nonce)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// cliCallback completes a command-line sign-in at the provider callback.
// Until the request is known to come from the browser that started it,
// errors are a page; after that they go to the program's loopback address,
// which shows them in the terminal.
func (h *Handler) cliCallback(w http.ResponseWriter, r *http.Request, params url.Values, req cliRequest) error {
	env, ok := h.lc.Envs()[req.Env]
	if req.Nonce == "" || !ok {
		writeCLIPage(w, http.StatusBadRequest, "Sign-in failed", "The sign-in state is invalid. Run the command again.")
		return nil
	}
	var redirect *url.URL
	if req.Device == "" {
		var err error
		if redirect, err = loopbackRedirect(req.RedirectURI); err != nil {
			writeCLIPage(w, http.StatusBadRequest, "Sign-in failed", err.Error())
			return nil
		}
	}
	cookieNonce := h.front.Nonce(r, env)
	if cookieNonce == "" || !hmac.Equal([]byte(cookieNonce), []byte(req.Nonce)) {
		writeCLIPage(w, http.StatusForbidden, "Sign-in refused", "This sign-in was not started in this browser. Run the command again.")
		return nil
	}
	h.front.ClearNonce(w, env)
	if fresh, err := h.lc.ClaimOnce(r.Context(), req.Nonce); err != nil {
		h.log.Error("command-line sign-in failed: recording the sign-in response as used", "env", env.Name(), "error", err)
		writeCLIPage(w, http.StatusInternalServerError, "Sign-in failed", "Sign-in failed; the daemon's log has the details. Run the command again.")
		return nil
	} else if !fresh {
		writeCLIPage(w, http.StatusForbidden, "Sign-in refused", "This sign-in response was already used. Run the command again.")
		return nil
	}
	fail := func(code string, err error) error {
		h.front.SignInDone(env.Name(), "cli", err)
		ae := backstageerr.As(err)
		msg := ae.Message
		if ae.Status >= 500 {
			h.log.Error("command-line sign-in failed", "env", env.Name(), "error", err)
			msg = "Sign-in failed; the daemon's log has the details"
		} else {
			h.log.Info("command-line sign-in refused", "env", env.Name(), "error", err)
		}
		if req.Device != "" {
			h.device.finish(req.Device, "", h.now())
			writeCLIPage(w, http.StatusOK, "Sign-in failed", msg+". The command in your terminal stops; run it again.")
			return nil
		}
		v := url.Values{"error": {code}, "error_description": {msg}, "state": {req.State}}
		h.redirectLoopback(w, r, redirect, v)
		return nil
	}
	if e := params.Get("error"); e != "" {
		return fail("access_denied", backstageerr.Authentication("SpectroCloud refused the sign-in: %s", lifecycle.DescribeProviderError(e, params.Get("error_description"))))
	}
	if err := env.Upstream.CheckAuthorizationResponseIssuer(params.Get("iss")); err != nil {
		return fail("access_denied", backstageerr.NotAllowed("Authorization response came from an unexpected issuer").WithCause(err))
	}
	code := params.Get("code")
	if code == "" {
		return fail("invalid_request", backstageerr.Input("Authorization response has no code"))
	}
	secret, err := session.NewHandle()
	if err != nil {
		return fail("server_error", err)
	}
	key := cliSessionKey(secret)
	sess, err := h.lc.Complete(r.Context(), env, lifecycle.Completion{Nonce: req.Nonce, Code: code, Scope: req.Scope, Kind: session.KindCLI, Key: key})
	switch {
	case errors.Is(err, lifecycle.ErrExchangeBudget):
		return fail("temporarily_unavailable", err)
	case errors.Is(err, lifecycle.ErrStoringSession):
		return fail("server_error", err)
	case err != nil:
		return fail("access_denied", err)
	}
	h.front.SignInDone(env.Name(), "cli", nil)
	if req.Device != "" {
		// The user confirmed by typing the code the terminal printed.
		if !h.device.finish(req.Device, secret, h.now()) {
			h.lc.EndSession(r.Context(), key)
			writeCLIPage(w, http.StatusBadRequest, "Sign-in failed", "The code expired meanwhile. Run the command again.")
			return nil
		}
		h.log.Info("signed in from the command line (device code)", "env", env.Name(), "user", sess.UserEntityRef)
		writeCLIPage(w, http.StatusOK, "Signed in", "You are signed in as "+sess.UserEntityRef+". Return to your terminal; you can close this window.")
		return nil
	}
	h.log.Info("signed in from the command line; asking the user to confirm", "env", env.Name(), "user", sess.UserEntityRef)
	if err := h.showConsent(w, env, sess, cliCode{
		Handle: secret, Challenge: req.Challenge, RedirectURI: req.RedirectURI, State: req.State, Env: env.Name(),
	}); err != nil {
		h.lc.EndSession(r.Context(), key)
		return fail("server_error", err)
	}
	return nil
}

// cliSessionKey is the store key of a command-line session: a hash of its
// secret that no cookie handle hashes to (KeyOf hashes the handle alone).
func cliSessionKey(secret string) session.Key {
	return sha256.Sum256([]byte("spectroauth cli session\x00" + secret))
}

// showConsent answers the browser with the consent page: the program, the
// user, the confirmation code, and a form to confirm or refuse. The form is
// sealed (it names the session) and bound to this browser by a cookie and to
// the sign-in by a CSRF token.
func (h *Handler) showConsent(w http.ResponseWriter, env *lifecycle.Env, sess *session.Session, c cliCode) error {
	cookie, err := randomToken()
	if err != nil {
		return err
	}
	c.Cookie = h.lc.Derive("cli-consent-cookie", cookie)
	c.Expires = h.now().Add(CLIConsentLifetime)
	sealed, id, err := h.sealCLI(c, cliConsentAAD)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: consentCookie, Value: cookie, Path: h.cookiePath(env) + "/cli/consent",
		MaxAge: int(CLIConsentLifetime / time.Second), HttpOnly: true, Secure: h.cookieSecure(env), SameSite: http.SameSiteStrictMode,
	})
	redirect, _ := url.Parse(c.RedirectURI)
	who := sess.UserEntityRef
	if sess.Profile.Email != "" {
		who += " (" + sess.Profile.Email + ")"
	}
	// form-action: the form posts here, and the answer redirects to the
	// program's loopback address.
	setFormPageHeaders(w.Header(), "'self' http://"+redirect.Host)
	w.WriteHeader(http.StatusOK)
	return consentPage().Execute(w, map[string]string{
		"Program": "spectroauthd (the Kubernetes sign-in for kubectl) on this computer, at " + redirect.Host,
		"User":    who,
		"Code":    cliwire.ConfirmationCode(c.Challenge),
		"Action":  h.cookiePath(env) + "/cli/consent",
		"Consent": sealed,
		"CSRF":    h.lc.Derive("cli-consent-csrf", cookie+"\x00"+id),
	})
}

// consentPage asks the signed-in user to confirm a command-line sign-in. Parsed on
// first use, not at every start of the daemon.
var consentPage = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Confirm the sign-in — spectroauth</title></head>
<body><h1>Confirm the command-line sign-in</h1>
<p>A program asks to sign in with your SpectroCloud account: <strong>{{.Program}}</strong>.</p>
<p>It will sign in as <strong>{{.User}}</strong> and obtain Kubernetes credentials in your name.</p>
<p>Confirmation code: <strong id="code">{{.Code}}</strong></p>
<p>Confirm only if you just ran the command yourself and your terminal shows the same code.</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="consent" value="{{.Consent}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form></body></html>
`))
})

// setFormPageHeaders are the headers of the daemon's own pages that hold a
// form (consent, device code): HTML, never cached, never framed, posting
// only to formAction (a CSP source list).
func setFormPageHeaders(h http.Header, formAction string) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action "+formAction)
}

// cliConsent answers POST cli/consent: the user's decision on the consent
// page. Only a confirmation from the browser the page was shown in, with
// the page's CSRF token, within CLIConsentLifetime, once, sends a code to the
// program.
func (h *Handler) cliConsent(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(nil, r.Body, 16<<10)
	refuse := func(status int, msg string) error {
		writeCLIPage(w, status, "Sign-in refused", msg+" Run the command again.")
		return nil
	}
	if err := r.ParseForm(); err != nil {
		return refuse(http.StatusBadRequest, "The confirmation is malformed.")
	}
	c, err := h.openCLI(r.PostForm.Get("consent"), cliConsentAAD)
	if err != nil {
		return refuse(http.StatusBadRequest, "The confirmation is invalid.")
	}
	env, ok := h.lc.Envs()[c.Env]
	if !ok {
		return refuse(http.StatusBadRequest, "The confirmation is invalid.")
	}
	cookie := cookieValue(r, consentCookie)
	if cookie == "" || !hmac.Equal([]byte(h.lc.Derive("cli-consent-cookie", cookie)), []byte(c.Cookie)) {
		return refuse(http.StatusForbidden, "This confirmation does not come from the page the daemon showed this browser.")
	}
	if !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(h.lc.Derive("cli-consent-csrf", cookie+"\x00"+c.ID))) {
		return refuse(http.StatusForbidden, "The confirmation's CSRF token is wrong.")
	}
	http.SetCookie(w, &http.Cookie{Name: consentCookie, Path: h.cookiePath(env) + "/cli/consent", MaxAge: -1, HttpOnly: true, Secure: h.cookieSecure(env), SameSite: http.SameSiteStrictMode})
	key := cliSessionKey(c.Handle)
	if !h.now().Before(c.Expires) {
		h.lc.EndSession(r.Context(), key)
		return refuse(http.StatusBadRequest, "The confirmation came too late.")
	}
	if fresh, err := h.lc.ClaimOnce(r.Context(), "cli-consent:"+c.ID); err != nil {
		return fmt.Errorf("recording the confirmation as used: %w", err)
	} else if !fresh {
		return refuse(http.StatusForbidden, "This sign-in was already confirmed or refused.")
	}
	redirect, err := loopbackRedirect(c.RedirectURI)
	if err != nil {
		return refuse(http.StatusBadRequest, err.Error())
	}
	if r.PostForm.Get("decision") != "allow" {
		h.lc.EndSession(r.Context(), key)
		h.log.Info("command-line sign-in refused by the user", "env", env.Name())
		h.redirectLoopback(w, r, redirect, url.Values{"error": {"access_denied"}, "error_description": {"You refused the sign-in in the browser."}, "state": {c.State}})
		return nil
	}
	sealed, _, err := h.sealCLI(cliCode{
		Handle: c.Handle, Challenge: c.Challenge, RedirectURI: c.RedirectURI, Expires: h.now().Add(CLICodeLifetime),
	}, cliCodeAAD)
	if err != nil {
		return err
	}
	h.log.Info("command-line sign-in confirmed by the user", "env", env.Name())
	h.redirectLoopback(w, r, redirect, url.Values{"code": {sealed}, "state": {c.State}})
	return nil
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func (h *Handler) redirectLoopback(w http.ResponseWriter, r *http.Request, redirect *url.URL, v url.Values) {
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

func (h *Handler) cliAEAD() (cipher.AEAD, error) {
	block, err := aes.NewCipher(h.lc.FlowKeyDerived("cli-code-key"))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealCLI encrypts and authenticates c for purpose aad (cliCodeAAD or
// cliConsentAAD) under a fresh id: only this daemon (and its replicas) can
// read or make one, and one purpose's blob is never another'h.
func (h *Handler) sealCLI(c cliCode, aad string) (sealed, id string, err error) {
	idb := make([]byte, 16)
	if _, err := rand.Read(idb); err != nil {
		return "", "", fmt.Errorf("making a code: %w", err)
	}
	c.ID = hex.EncodeToString(idb)
	plain, err := json.Marshal(c)
	if err != nil {
		return "", "", err
	}
	aead, err := h.cliAEAD()
	if err != nil {
		return "", "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", "", fmt.Errorf("making a code: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, []byte(aad))), c.ID, nil
}

func (h *Handler) openCLI(sealed, aad string) (cliCode, error) {
	var c cliCode
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(sealed) > 4096 {
		return c, errors.New("malformed code")
	}
	aead, err := h.cliAEAD()
	if err != nil {
		return c, err
	}
	if len(raw) < aead.NonceSize() {
		return c, errors.New("malformed code")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(aad))
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
	// AccessToken is a command-line access token (identity.TypeCLIAccess).
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	// RefreshToken gets the next access token, once: keep it as secret as
	// a cookie, and keep the new one each grant returns.
	RefreshToken string `json:"refresh_token"`
	// User and Env say who signed in where, for the program's messages.
	User string `json:"user"`
	Env  string `json:"env"`
}

// cliToken answers POST cli/token.
func (h *Handler) cliToken(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(nil, r.Body, 16<<10)
	var res *cliTokenResponse
	err := r.ParseForm()
	if err == nil {
		switch gt := r.PostForm.Get("grant_type"); gt {
		case "authorization_code":
			res, err = h.redeemCLICode(r.Context(), r.PostForm)
		case "refresh_token":
			res, err = h.refreshCLI(r.Context(), r.PostForm.Get("refresh_token"))
		case DeviceGrantType:
			res, err = h.deviceTokens(r)
		default:
			err = &tokenError{Code: "unsupported_grant_type", Description: "grant_type must be authorization_code, refresh_token or " + DeviceGrantType, status: http.StatusBadRequest}
		}
	} else {
		err = &tokenError{Code: "invalid_request", Description: "the body must be a form", status: http.StatusBadRequest, cause: err}
	}
	h.writeTokenResponse(w, res, err)
	return nil
}

// writeTokenResponse answers a token request: res, or err as RFC 6749
// section 5.2 says.
func (h *Handler) writeTokenResponse(w http.ResponseWriter, res any, err error) {
	w.Header().Set("Pragma", "no-cache")
	var te *tokenError
	switch {
	case err == nil:
		backstageerr.WriteJSON(w, http.StatusOK, res)
	case errors.As(err, &te):
		h.log.Debug("command-line token request refused", "error", err)
		backstageerr.WriteJSON(w, te.status, te)
	default:
		h.log.Error("command-line token request failed", "error", err)
		backstageerr.WriteJSON(w, http.StatusInternalServerError, &tokenError{Code: "server_error", Description: "the daemon's log has the details"})
	}
}

// redeemCLICode exchanges a one-time code for the session's first tokens.
func (h *Handler) redeemCLICode(ctx context.Context, form url.Values) (*cliTokenResponse, error) {
	c, err := h.openCLI(form.Get("code"), cliCodeAAD)
	if err != nil {
		return nil, invalidGrant("the code is invalid", err)
	}
	if !h.now().Before(c.Expires) {
		return nil, invalidGrant("the code has expired; sign in again", nil)
	}
	if form.Get("redirect_uri") != c.RedirectURI {
		return nil, invalidGrant("redirect_uri does not match the sign-in's", nil)
	}
	sum := sha256.Sum256([]byte(form.Get("code_verifier")))
	if !hmac.Equal([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(c.Challenge)) {
		return nil, invalidGrant("code_verifier does not match the code_challenge", nil)
	}
	if fresh, err := h.lc.ClaimOnce(ctx, "cli-code:"+c.ID); err != nil {
		return nil, fmt.Errorf("recording the code as used: %w", err)
	} else if !fresh {
		return nil, invalidGrant("the code was already used; sign in again", nil)
	}
	return h.cliGrant(ctx, c.Handle, 0)
}

// refreshCLI rotates a command-line refresh token: new access token, new
// refresh token, the presented one spent.
func (h *Handler) refreshCLI(ctx context.Context, refreshToken string) (*cliTokenResponse, error) {
	secret, gen, err := h.parseCLIRefreshToken(refreshToken)
	if err != nil {
		return nil, invalidGrant("refresh_token is not a command-line refresh token of this daemon", err)
	}
	return h.cliGrant(ctx, secret, gen)
}

// cliGrant issues the tokens of generation presented+1 of the session whose
// secret is given, after renewing what is stale as /refresh does. presented
// must be the session's current generation (0 for the code's redemption):
// anything else is a spent token, and ends the session.
func (h *Handler) cliGrant(ctx context.Context, secret string, presented uint64) (*cliTokenResponse, error) {
	key := cliSessionKey(secret)
	sess, env, err := h.cliSessionOf(ctx, key)
	if err != nil {
		return nil, err
	}
	if sess.RefreshGeneration != presented {
		return nil, h.cliReuse(ctx, env, key, sess)
	}
	if h.lc.Due(env, sess) {
		// Renewal re-runs the resolvers: a user no longer allowed in loses
		// the session here.
		if _, err := h.lc.Renew(ctx, env, key); err != nil {
			if errors.Is(err, lifecycle.ErrSessionEnded) {
				return nil, invalidGrant("the session has ended; sign in again", err)
			}
			return nil, err
		}
	}

	h.cli.rotate.Lock()
	defer h.cli.rotate.Unlock()
	// Other replicas rotate this session too: one at a time, each
	// re-reading what the last one stored.
	sess, unlock, err := h.lc.LockAndRead(ctx, key)
	if errors.Is(err, lifecycle.ErrSessionEnded) {
		return nil, invalidGrant("the session has ended; sign in again", err)
	} else if err != nil {
		return nil, err
	}
	defer unlock()
	if env, err = h.cliEnvOf(sess); err != nil {
		return nil, err
	}
	if sess.RefreshGeneration != presented {
		return nil, h.cliReuse(ctx, env, key, sess)
	}
	// Sign first, store second: a failure leaves the presented token valid.
	tok, err := h.lc.Identity().IssueAccess(ctx, identity.AccessClaims{
		Type: identity.TypeCLIAccess, Subject: sess.UserEntityRef, Audience: h.Audience(),
		SessionID: key.String(), Lifetime: CLIAccessLifetime,
	})
	if err != nil {
		return nil, fmt.Errorf("issuing the command-line access token: %w", err)
	}
	sess.RefreshGeneration++
	if err := h.lc.Store().Replace(ctx, key, sess); errors.Is(err, session.ErrNotFound) {
		return nil, invalidGrant("the session has ended; sign in again", err)
	} else if err != nil {
		return nil, fmt.Errorf("storing the session: %w", err)
	}
	return &cliTokenResponse{
		AccessToken: tok.Raw, TokenType: "Bearer", ExpiresIn: secondsLeft(tok.ExpiresAt, h.now()),
		RefreshToken: h.cliRefreshToken(secret, sess.RefreshGeneration), User: sess.UserEntityRef, Env: sess.Env,
	}, nil
}

// cliSessionOf reads a live command-line session and its environment.
func (h *Handler) cliSessionOf(ctx context.Context, key session.Key) (*session.Session, *lifecycle.Env, error) {
	sess, err := h.lc.Store().Get(ctx, key)
	if errors.Is(err, session.ErrNotFound) {
		return nil, nil, invalidGrant("the session has ended; sign in again", err)
	} else if err != nil {
		return nil, nil, fmt.Errorf("reading the session: %w", err)
	}
	env, err := h.cliEnvOf(sess)
	if err != nil {
		return nil, nil, err
	}
	return sess, env, nil
}

// cliEnvOf checks that sess is a command-line session and returns its
// environment.
func (h *Handler) cliEnvOf(sess *session.Session) (*lifecycle.Env, error) {
	if sess.Kind != session.KindCLI {
		return nil, invalidGrant("not a command-line session", nil)
	}
	env, ok := h.lc.Envs()[sess.Env]
	if !ok {
		return nil, invalidGrant("the session's environment is no longer configured; sign in again", nil)
	}
	return env, nil
}

// cliReuse ends a session whose spent refresh token (or redeemed code) was
// presented again: either its holder or someone with a copy is replaying
// it, and the daemon cannot tell which (RFC 9700 section 4.14.2).
func (h *Handler) cliReuse(ctx context.Context, env *lifecycle.Env, key session.Key, sess *session.Session) error {
	h.log.Warn("a spent command-line refresh token was presented again; ending the session", "env", env.Name(), "user", sess.UserEntityRef, "session", key.String())
	h.lc.RevokeUpstream(ctx, env, sess)
	h.lc.EndSession(ctx, key)
	return invalidGrant("the refresh token was already used, so the session was ended (a copy of it may be in someone else's hands); sign in again", nil)
}

// cliRefreshToken is generation gen's refresh token of the session whose
// secret is given: scli1.<secret>.<gen>.<MAC>. The MAC lets the daemon tell
// a spent token (reuse: end the session) from a made-up one (refuse).
func (h *Handler) cliRefreshToken(secret string, gen uint64) string {
	g := strconv.FormatUint(gen, 10)
	return cliRefreshPrefix + secret + "." + g + "." + h.lc.Derive("cli-refresh-token", secret+"."+g)
}

// parseCLIRefreshToken checks a refresh token's form and MAC.
func (h *Handler) parseCLIRefreshToken(rt string) (secret string, gen uint64, err error) {
	rest, ok := strings.CutPrefix(rt, cliRefreshPrefix)
	parts := strings.Split(rest, ".")
	if !ok || len(parts) != 3 || len(rt) > 512 {
		return "", 0, errors.New("malformed")
	}
	if _, err := session.KeyOf(parts[0]); err != nil {
		return "", 0, errors.New("malformed secret")
	}
	gen, err = strconv.ParseUint(parts[1], 10, 64)
	if err != nil || strconv.FormatUint(gen, 10) != parts[1] {
		return "", 0, errors.New("malformed generation")
	}
	if !hmac.Equal([]byte(parts[2]), []byte(h.lc.Derive("cli-refresh-token", parts[0]+"."+parts[1]))) {
		return "", 0, errors.New("not issued by this daemon")
	}
	return parts[0], gen, nil
}

// cliLogout answers POST cli/logout: revoke upstream where the provider
// supports it and end the session, whatever generation of its refresh token
// is presented. Unknown sessions are no error.
func (h *Handler) cliLogout(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(nil, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		return backstageerr.Input("The body must be a form")
	}
	secret, _, err := h.parseCLIRefreshToken(r.PostForm.Get("refresh_token"))
	if err != nil {
		return backstageerr.Input("refresh_token is not a command-line refresh token of this daemon")
	}
	key := cliSessionKey(secret)
	if sess, err := h.lc.Store().Get(r.Context(), key); err == nil && sess.Kind == session.KindCLI {
		if env, ok := h.lc.Envs()[sess.Env]; ok {
			h.lc.RevokeUpstream(r.Context(), env, sess)
		}
		h.log.Info("signed out from the command line", "env", sess.Env, "user", sess.UserEntityRef)
	}
	if err := h.lc.Store().Delete(r.Context(), key); err != nil {
		return fmt.Errorf("deleting the session: %w", err)
	}
	backstageerr.WriteJSON(w, http.StatusOK, map[string]string{})
	return nil
}

// cliPage tells the user how a command-line sign-in ended. Parsed on
// first use, not at every start of the daemon.
var cliPage = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("cli").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} — spectroauth</title></head>
<body><h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>
`))
})

// writeCLIPage answers the browser of a command-line sign-in.
func writeCLIPage(w http.ResponseWriter, status int, title, message string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = cliPage().Execute(w, map[string]string{"Title": title, "Message": message})
}
