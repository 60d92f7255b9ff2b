package server

import (
	"crypto/hmac"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/session"
)

// oauthState carries the facts of one sign-in through the provider, in
// Backstage's own encoding (hex of a URL-encoded form) plus the time it was
// made (ts) and a MAC over everything (sig, HMAC-SHA256 with the flow key):
// the daemon refuses a state it did not make, or made more than a nonce
// cookie's lifetime ago, before any provider call or any write. Forged
// callbacks cost one HMAC.
type oauthState struct {
	Nonce, Env, Origin, RedirectURL, Flow, Scope string
	// Issued is when /start made the state (whole seconds).
	Issued time.Time
}

// Purposes of the flow key's state MACs, so that no MAC serves two uses.
const (
	stateMACPurpose = "oauth-state-v1"
)

func (s *Server) encodeState(st oauthState) string {
	v := url.Values{}
	v.Set("nonce", st.Nonce)
	v.Set("env", st.Env)
	for k, val := range map[string]string{"origin": st.Origin, "redirectUrl": st.RedirectURL, "flow": st.Flow, "scope": st.Scope} {
		if val != "" {
			v.Set(k, val)
		}
	}
	v.Set("ts", strconv.FormatInt(st.Issued.Unix(), 10))
	v.Set("sig", s.stateMAC(stateMACPurpose, v.Encode()))
	return hex.EncodeToString([]byte(v.Encode()))
}

// stateMAC authenticates a state's canonical form (for a Backstage state
// url.Values.Encode, which sorts the keys, sig excluded) for one purpose,
// with the flow key.
func (s *Server) stateMAC(purpose, canonical string) string { return s.lc.Derive(purpose, canonical) }

// maxStateSkew is how far in the future a state's time may lie (replicas'
// clocks differ a little).
const maxStateSkew = time.Minute

// openState decodes a state and checks that this daemon (or a replica
// sharing its flow key) made it within a nonce cookie's lifetime. Nothing
// else happens before it passes.
func (s *Server) openState(raw string) (oauthState, error) {
	bad := backstageerr.NotAllowed("OAuth state is invalid")
	b, err := hex.DecodeString(raw)
	if err != nil || len(b) > 8<<10 {
		return oauthState{}, bad
	}
	v, err := url.ParseQuery(string(b))
	if err != nil {
		return oauthState{}, bad
	}
	sig := v.Get("sig")
	v.Del("sig")
	if sig == "" || !hmac.Equal([]byte(sig), []byte(s.stateMAC(stateMACPurpose, v.Encode()))) {
		return oauthState{}, backstageerr.NotAllowed("OAuth state was not issued by this service")
	}
	ts, err := strconv.ParseInt(v.Get("ts"), 10, 64)
	issued := time.Unix(ts, 0)
	if err != nil || !s.lc.FlowFresh(issued) {
		return oauthState{}, backstageerr.NotAllowed("OAuth state has expired; sign in again")
	}
	st, err := decodeState(v)
	st.Issued = issued
	return st, err
}

func decodeState(v url.Values) (oauthState, error) {
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
	// What the app asks for, what this browser was granted before, what
	// sign-in needs and what the operator adds (Backstage's scope union).
	granted, _ := url.PathUnescape(cookieValue(r, s.jar(env).scopeName))
	scope := lifecycle.JoinScopes(splitScope(q.Get("scope")), splitScope(granted), lifecycle.RequiredScopes, env.Scopes)
	nonce, target, err := s.lc.Begin(env, scope, func(nonce string) string {
		st := oauthState{Nonce: nonce, Env: env.Name(), Origin: origin, Flow: flow, Scope: scope, Issued: s.now()}
		if flow == "redirect" {
			st.RedirectURL = q.Get("redirectUrl")
		}
		return s.encodeState(st)
	})
	if err != nil {
		return err
	}
	s.jar(env).setNonce(w, nonce, origin)
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
	raw := params.Get("state")
	for _, cb := range s.callbacks {
		if strings.HasPrefix(raw, cb.prefix) {
			// Another front end's sign-in (the command line's): the same
			// rule, a state it did not make costs one HMAC.
			return cb.handle(w, r, params)
		}
	}
	// A state this daemon did not make is refused here, as an HTTP error
	// logged at debug: before any provider call, any write, any INFO line.
	st, err := s.openState(params.Get("state"))
	if err != nil {
		return err
	}
	envName := r.URL.Query().Get("env")
	if envName == "" {
		envName = st.Env
	}
	env, err := s.env(envName)
	if err != nil {
		return err
	}

	targetOrigin := s.origins.app
	res, err := s.completeSignIn(r, w, env, params, st, &targetOrigin)
	s.signInDone(env.Name(), "browser", err)
	if err != nil {
		ae := backstageerr.As(err)
		if ae.Status >= 500 {
			s.log.Error("sign-in failed", "env", env.Name(), "error", err)
		} else {
			s.log.Info("sign-in refused", "env", env.Name(), "error", err)
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

func (s *Server) completeSignIn(r *http.Request, w http.ResponseWriter, env *Env, params url.Values, st oauthState, targetOrigin *string) (signInResult, error) {
	var res signInResult
	var err error
	res.flow = st.Flow
	if st.Env != env.Name() {
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
	cookieNonce := cookieValue(r, s.jar(env).nonceName)
	if cookieNonce == "" {
		return res, backstageerr.NotAllowed("Auth response is missing cookie nonce")
	}
	if !hmac.Equal([]byte(cookieNonce), []byte(st.Nonce)) {
		return res, backstageerr.NotAllowed("Invalid nonce")
	}
	s.jar(env).clearNonce(w, st.Origin)
	if fresh, err := s.lc.ClaimOnce(r.Context(), st.Nonce); err != nil {
		return res, fmt.Errorf("recording the sign-in response as used: %w", err)
	} else if !fresh {
		return res, backstageerr.NotAllowed("This sign-in response was already used")
	}
	if e := params.Get("error"); e != "" {
		return res, backstageerr.Authentication("SpectroCloud refused the sign-in: %s", lifecycle.DescribeProviderError(e, params.Get("error_description")))
	}
	if err := env.Upstream.CheckAuthorizationResponseIssuer(params.Get("iss")); err != nil {
		return res, backstageerr.NotAllowed("Authorization response came from an unexpected issuer").WithCause(err)
	}
	code := params.Get("code")
	if code == "" {
		return res, backstageerr.Input("Authorization response has no code")
	}
	handle, key, err := lifecycle.NewHandle()
	if err != nil {
		return res, err
	}
	sess, err := s.lc.Complete(r.Context(), env, lifecycle.Completion{Nonce: st.Nonce, Code: code, Scope: st.Scope, Kind: session.KindBrowser, Key: key})
	if err != nil {
		return res, err
	}
	s.jar(env).setSession(w, handle, sess.Scope, *targetOrigin)
	res.response = s.responseFor(sess)
	return res, nil
}

func splitScope(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == '|' || r == '\t' || r == '\n' })
}
