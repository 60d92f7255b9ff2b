package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// oauthState carries the facts of one sign-in through the provider, in
// Backstage's own encoding: hex of a URL-encoded form. It needs no
// integrity protection: the nonce must match the browser's nonce cookie,
// and every other field is re-validated on the way back.
type oauthState struct {
	Nonce, Env, Origin, RedirectURL, Flow, Scope string
}

func (st oauthState) encode() string {
	v := url.Values{}
	v.Set("nonce", st.Nonce)
	v.Set("env", st.Env)
	for k, val := range map[string]string{"origin": st.Origin, "redirectUrl": st.RedirectURL, "flow": st.Flow, "scope": st.Scope} {
		if val != "" {
			v.Set(k, val)
		}
	}
	return hex.EncodeToString([]byte(v.Encode()))
}

func decodeState(s string) (oauthState, error) {
	raw, err := hex.DecodeString(s)
	if err != nil {
		return oauthState{}, backstageerr.NotAllowed("OAuth state is invalid, missing env")
	}
	v, err := url.ParseQuery(string(raw))
	if err != nil {
		return oauthState{}, backstageerr.NotAllowed("OAuth state is invalid, missing env")
	}
	st := oauthState{
		Nonce: v.Get("nonce"), Env: v.Get("env"), Origin: v.Get("origin"),
		RedirectURL: v.Get("redirectUrl"), Flow: v.Get("flow"), Scope: v.Get("scope"),
	}
	if st.Env == "" {
		return oauthState{}, backstageerr.NotAllowed("OAuth state is invalid, missing env")
	}
	if st.Nonce == "" {
		return oauthState{}, backstageerr.NotAllowed("OAuth state is invalid, missing nonce")
	}
	return st, nil
}

// derive binds a secret to the browser's nonce: the PKCE verifier and the
// OpenID nonce of a sign-in are HMACs of the nonce cookie's value, so no
// server-side state is kept between /start and the callback, replicas agree,
// and neither value can be computed without the flow key.
func (s *Server) derive(purpose, nonce string) string {
	m := hmac.New(sha256.New, s.cfg.FlowKey)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// parseRedirectURL validates the redirect flow's return address.
func (s *Server) parseRedirectURL(v string) (*url.URL, error) {
	if v == "" {
		return nil, backstageerr.Input("No redirectUrl provided in request query parameters")
	}
	u, err := url.Parse(v)
	if err != nil || !u.IsAbs() {
		return nil, backstageerr.Input("Redirect URL is invalid, failed to parse")
	}
	origin, err := normalizeOrigin(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !s.origins.allowed(origin) {
		return nil, backstageerr.NotAllowed("Redirect URL is not an allowed origin")
	}
	return u, nil
}

// start begins a sign-in: GET /api/auth/spectrocloud/start.
func (s *Server) start(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	origin := q.Get("origin")
	if q.Has("origin") {
		o, err := normalizeOrigin(origin)
		if err != nil {
			return backstageerr.Input("App origin is invalid, failed to parse")
		}
		if !s.origins.allowed(o) {
			return backstageerr.NotAllowed("Origin '%s' is not allowed", o)
		}
		origin = o
	}
	flow := q.Get("flow")
	if flow == "redirect" {
		if _, err := s.parseRedirectURL(q.Get("redirectUrl")); err != nil {
			return err
		}
	}
	env, err := s.env(q.Get("env"))
	if err != nil {
		return err
	}
	nonceBytes := make([]byte, 16)
	if _, err := rand.Read(nonceBytes); err != nil {
		return fmt.Errorf("making a nonce: %w", err)
	}
	nonce := base64.RawURLEncoding.EncodeToString(nonceBytes)
	env.cookies.setNonce(w, nonce, origin)

	// What the app asks for, what this browser was granted before, what
	// sign-in needs and what the operator adds (Backstage's scope union).
	granted, _ := url.PathUnescape(cookieValue(r, env.cookies.scopeName))
	scope := joinScopes(splitScope(q.Get("scope")), splitScope(granted), requiredScopes, env.Scopes)
	st := oauthState{Nonce: nonce, Env: env.name, Origin: origin, Flow: flow, Scope: scope}
	if flow == "redirect" {
		st.RedirectURL = q.Get("redirectUrl")
	}
	target := env.Upstream.AuthCodeURL(upstream.AuthRequest{
		RedirectURL:  env.CallbackURL,
		State:        st.encode(),
		Nonce:        s.derive("oidc-nonce", nonce),
		PKCEVerifier: s.derive("pkce-verifier", nonce),
		Scopes:       strings.Fields(scope),
	})
	w.Header().Set("Location", target)
	w.Header().Set("Content-Length", "0")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
	return nil
}

// callbackParams reads the authorization response from the query (GET) or
// the form (response_mode=form_post).
func callbackParams(r *http.Request) (url.Values, error) {
	if r.Method != http.MethodPost {
		return r.URL.Query(), nil
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return nil, backstageerr.Input("Authorization response is not a valid form")
	}
	return r.Form, nil
}

// frame handles SpectroCloud's callback: /api/auth/spectrocloud/handler/frame.
// Before the state is understood, errors are HTTP errors; after it, they go
// back to the app in-band, as Backstage does.
func (s *Server) frame(w http.ResponseWriter, r *http.Request) error {
	params, err := callbackParams(r)
	if err != nil {
		return err
	}
	if req, ok := parseCLIState(params.Get("state")); ok {
		return s.cliCallback(w, r, params, req)
	}
	envName := r.URL.Query().Get("env")
	var st oauthState
	if envName == "" {
		if st, err = decodeState(params.Get("state")); err != nil {
			return err
		}
		envName = st.Env
	}
	env, err := s.env(envName)
	if err != nil {
		return err
	}

	targetOrigin := s.origins.app
	res, err := s.completeSignIn(r, w, env, params, &targetOrigin)
	s.signInDone(env.name, "browser", err)
	if err != nil {
		ae := backstageerr.As(err)
		if ae.Status >= 500 {
			s.log.Error("sign-in failed", "env", env.name, "error", err)
		} else {
			s.log.Info("sign-in refused", "env", env.name, "error", err)
		}
		name, msg := ae.Name, ae.Message
		if ae.Status >= 500 {
			name, msg = "Error", "Sign-in failed; the daemon's log has the details"
		}
		if st.Flow == "redirect" || res.flow == "redirect" {
			u, _ := url.Parse(s.cfg.AppBaseURL)
			u.RawQuery = url.Values{"error": {msg}}.Encode()
			u.Fragment = ""
			http.Redirect(w, r, u.String(), http.StatusFound)
			return nil
		}
		writeWebMessage(w, targetOrigin, webMessage{Type: "authorization_response", Error: &backstageerr.Detail{Name: name, Message: msg}})
		return nil
	}
	if res.redirect != nil {
		http.Redirect(w, r, res.redirect.String(), http.StatusFound)
		return nil
	}
	writeWebMessage(w, targetOrigin, webMessage{Type: "authorization_response", Response: res.response})
	return nil
}

type signInResult struct {
	flow     string
	redirect *url.URL
	response *authResponse
}

func (s *Server) completeSignIn(r *http.Request, w http.ResponseWriter, env *Env, params url.Values, targetOrigin *string) (signInResult, error) {
	var res signInResult
	st, err := decodeState(params.Get("state"))
	if err != nil {
		return res, err
	}
	res.flow = st.Flow
	if st.Env != env.name {
		return res, backstageerr.NotAllowed("OAuth state is for another environment")
	}
	if st.Flow == "redirect" {
		if res.redirect, err = s.parseRedirectURL(st.RedirectURL); err != nil {
			return res, err
		}
	}
	if st.Origin != "" {
		o, err := normalizeOrigin(st.Origin)
		if err != nil {
			return res, backstageerr.NotAllowed("App origin is invalid, failed to parse")
		}
		if !s.origins.allowed(o) {
			return res, backstageerr.NotAllowed("Origin '%s' is not allowed", o)
		}
		*targetOrigin = o
	}
	cookieNonce := cookieValue(r, env.cookies.nonceName)
	if cookieNonce == "" {
		return res, backstageerr.NotAllowed("Auth response is missing cookie nonce")
	}
	if !hmac.Equal([]byte(cookieNonce), []byte(st.Nonce)) {
		return res, backstageerr.NotAllowed("Invalid nonce")
	}
	env.cookies.clearNonce(w, st.Origin)
	if fresh, err := s.claimOnce(r.Context(), st.Nonce); err != nil {
		return res, fmt.Errorf("recording the sign-in response as used: %w", err)
	} else if !fresh {
		return res, backstageerr.NotAllowed("This sign-in response was already used")
	}
	if e := params.Get("error"); e != "" {
		return res, backstageerr.Authentication("SpectroCloud refused the sign-in: %s", describeOAuthError(e, params.Get("error_description")))
	}
	if err := env.Upstream.CheckAuthorizationResponseIssuer(params.Get("iss")); err != nil {
		return res, backstageerr.NotAllowed("Authorization response came from an unexpected issuer").WithCause(err)
	}
	code := params.Get("code")
	if code == "" {
		return res, backstageerr.Input("Authorization response has no code")
	}
	tokens, err := env.Upstream.Exchange(r.Context(), code, env.CallbackURL,
		s.derive("pkce-verifier", st.Nonce), s.derive("oidc-nonce", st.Nonce))
	if err != nil {
		return res, backstageerr.Authentication("Could not complete the sign-in with SpectroCloud").WithCause(err)
	}
	if tokens.Scope == "" {
		tokens.Scope = st.Scope
	}
	handle, key, err := newHandle()
	if err != nil {
		return res, err
	}
	sess, err := s.newSession(r.Context(), env, key, tokens)
	if err != nil {
		return res, err
	}
	if err := s.cfg.Sessions.Put(r.Context(), key, sess); err != nil {
		return res, fmt.Errorf("storing the session: %w", err)
	}
	env.cookies.setSession(w, handle, sess.Scope, *targetOrigin)
	res.response = s.responseFor(sess)
	s.log.Info("signed in", "env", env.name, "user", sess.UserEntityRef, "sub", tokens.Profile.Subject)
	return res, nil
}

// describeOAuthError keeps the provider's error code and a bounded, printable
// description; it is shown to the user.
func describeOAuthError(code, desc string) string {
	clean := func(s string, n int) string {
		s = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, s)
		if len(s) > n {
			s = s[:n]
		}
		return s
	}
	if desc == "" {
		return clean(code, 64)
	}
	return clean(code, 64) + " (" + clean(desc, 200) + ")"
}

// resolve runs the environment's sign-in chain. "No identity" is the user's
// problem (403); anything else is ours.
func (s *Server) resolve(ctx context.Context, env *Env, tokens *upstream.Tokens) (signin.Identity, error) {
	p := tokens.Profile
	id, err := env.SignIn.Resolve(ctx, signin.Input{
		Env:    env.name,
		Claims: tokens.Claims,
		Profile: signin.Profile{
			Email: p.Email, EmailVerified: p.EmailVerified, DisplayName: p.DisplayName, Picture: p.Picture,
			Subject: p.Subject, Issuer: p.Issuer, PreferredUsername: p.PreferredUsername, Groups: p.Groups,
		},
	})
	switch {
	case err == nil:
		return id, nil
	case errors.Is(err, signin.ErrNoIdentity):
		return id, backstageerr.NotAllowed("Failed to sign-in, unable to resolve user identity. Please verify that your catalog contains the expected User entities that would match your configured sign-in resolver.")
	default:
		return id, backstageerr.New(http.StatusInternalServerError, backstageerr.NameError, "Sign-in resolution failed", err)
	}
}

func splitScope(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == '|' || r == '\t' || r == '\n' })
}

// joinScopes is the ordered union of scope lists.
func joinScopes(lists ...[]string) string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lists {
		for _, sc := range l {
			if sc != "" && !seen[sc] {
				seen[sc] = true
				out = append(out, sc)
			}
		}
	}
	return strings.Join(out, " ")
}
