package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// authResponse is the body of /refresh and the frame's response: Backstage's
// ClientAuthResponse.
type authResponse struct {
	Profile           profile            `json:"profile"`
	ProviderInfo      providerInfo       `json:"providerInfo"`
	BackstageIdentity *backstageIdentity `json:"backstageIdentity,omitempty"`
}

type profile struct {
	Email       string `json:"email,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
	Picture     string `json:"picture,omitempty"`
}

type providerInfo struct {
	IDToken          string `json:"idToken,omitempty"`
	AccessToken      string `json:"accessToken,omitempty"`
	Scope            string `json:"scope"`
	ExpiresInSeconds int64  `json:"expiresInSeconds,omitempty"`
}

type backstageIdentity struct {
	Token            string           `json:"token"`
	ExpiresInSeconds int64            `json:"expiresInSeconds"`
	Identity         identityResponse `json:"identity"`
}

type identityResponse struct {
	Type                string   `json:"type"`
	UserEntityRef       string   `json:"userEntityRef"`
	OwnershipEntityRefs []string `json:"ownershipEntityRefs"`
}

// responseFor renders a session for the app. The Palette session token is
// never part of it: Kubernetes and the app only ever see the ID token.
func (s *Server) responseFor(sess *session.Session) *authResponse {
	now := s.now()
	res := &authResponse{
		Profile: profile{Email: sess.Profile.Email, DisplayName: sess.Profile.DisplayName, Picture: sess.Profile.Picture},
		ProviderInfo: providerInfo{
			IDToken:          sess.Upstream.IDToken,
			AccessToken:      sess.Upstream.AccessToken,
			Scope:            sess.Scope,
			ExpiresInSeconds: secondsLeft(providerExpiry(sess), now),
		},
	}
	if b := sess.Backstage; b != nil {
		refs := sess.OwnershipEntityRefs
		if refs == nil {
			refs = []string{}
		}
		res.BackstageIdentity = &backstageIdentity{
			Token:            b.Token,
			ExpiresInSeconds: secondsLeft(b.ExpiresAt, now),
			Identity:         identityResponse{Type: "user", UserEntityRef: sess.UserEntityRef, OwnershipEntityRefs: refs},
		}
	}
	return res
}

// providerExpiry is when the app must come back for fresh provider tokens:
// the ID token's expiry. The ID token is what Backstage (getIdToken) and
// Kubernetes use; the access token is passed through as the provider issued it.
func providerExpiry(sess *session.Session) time.Time {
	return sess.Upstream.IDTokenExpiry
}

func secondsLeft(t, now time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	d := t.Sub(now).Round(time.Second) / time.Second
	if d < 0 {
		return 0
	}
	return int64(d)
}

// newSession resolves the identity of a fresh sign-in and issues its token.
func (s *Server) newSession(ctx context.Context, env *Env, key session.Key, tokens *upstream.Tokens) (*session.Session, error) {
	now := s.now()
	sess := &session.Session{
		Env:       env.name,
		Provider:  ProviderID,
		CreatedAt: now,
		Scope:     tokens.Scope,
	}
	if err := setUpstream(sess, tokens); err != nil {
		return nil, err
	}
	sess.Upstream.CheckedAt = now
	sess.ExpiresAt = sessionEnd(sess, now, env.SessionDuration)
	if err := s.reissue(ctx, env, key, sess, tokens); err != nil {
		return nil, err
	}
	return sess, nil
}

// newHandle makes a session handle (for the cookie) and its store key.
func newHandle() (string, session.Key, error) {
	handle, err := session.NewHandle()
	if err != nil {
		return "", session.Key{}, fmt.Errorf("making a session handle: %w", err)
	}
	key, err := session.KeyOf(handle)
	return handle, key, err
}

// sessionEnd: a session lasts SessionDuration, but without a refresh token it
// cannot outlive its ID token.
func sessionEnd(sess *session.Session, from time.Time, d time.Duration) time.Time {
	end := from.Add(d)
	if sess.Upstream.RefreshToken == "" && !sess.Upstream.IDTokenExpiry.IsZero() && sess.Upstream.IDTokenExpiry.Before(end) {
		end = sess.Upstream.IDTokenExpiry
	}
	return end
}

// reissue runs the sign-in chain and issues a Backstage token into sess.
// The token's sid claim names the session (its store key), so routes that
// take a Backstage token, such as the Kubernetes credential route, find the
// upstream tokens behind it.
func (s *Server) reissue(ctx context.Context, env *Env, key session.Key, sess *session.Session, tokens *upstream.Tokens) error {
	id, err := s.resolve(ctx, env, tokens)
	if err != nil {
		return err
	}
	refs := id.OwnershipEntityRefs
	if len(refs) == 0 {
		refs = []string{id.UserEntityRef}
	}
	tok, err := s.cfg.Identity.Issue(ctx, identity.Claims{
		Subject:    id.UserEntityRef,
		Ent:        refs,
		IncludeEnt: s.cfg.IncludeOwnershipClaim,
		Extra:      withSessionID(id.Extra, key),
	})
	if err != nil {
		return fmt.Errorf("issuing the Backstage token: %w", err)
	}
	sess.UserEntityRef = id.UserEntityRef
	sess.OwnershipEntityRefs = refs
	sess.Backstage = &session.BackstageToken{Token: tok.Raw, ExpiresAt: tok.ExpiresAt}
	return nil
}

// withSessionID adds the sid claim to a resolver's extra claims.
func withSessionID(extra map[string]any, key session.Key) map[string]any {
	out := make(map[string]any, len(extra)+1)
	for k, v := range extra {
		out[k] = v
	}
	out[sessionIDClaim] = key.String()
	return out
}

// sessionIDClaim is the Backstage token claim naming the daemon session.
const sessionIDClaim = "sid"

// setUpstream copies the upstream tokens into the session.
//
// The claims are stored only when they differ from the ID token's payload
// (userinfo claims were merged in); otherwise they are read back from the ID
// token itself. Sessions live in memory, and this is a fifth of one.
func setUpstream(sess *session.Session, t *upstream.Tokens) error {
	var claims json.RawMessage
	if fromToken, err := idTokenClaims(t.IDToken); err != nil || !reflect.DeepEqual(fromToken, t.Claims) {
		if claims, err = json.Marshal(t.Claims); err != nil {
			return fmt.Errorf("encoding ID token claims: %w", err)
		}
	}
	prev := sess.Upstream
	sess.Upstream = session.UpstreamTokens{
		IDToken:             t.IDToken,
		AccessToken:         t.AccessToken,
		RefreshToken:        t.RefreshToken,
		PaletteSessionToken: t.PaletteSessionToken,
		TokenType:           t.TokenType,
		AccessTokenExpiry:   t.AccessTokenExpiry,
		IDTokenExpiry:       t.IDTokenExpiry,
		Claims:              claims,
	}
	if t.PaletteSessionToken != "" && t.PaletteSessionToken == prev.PaletteSessionToken {
		// An upstream refresh that brought no new Palette session token
		// keeps what its last renewal learnt of the current one.
		sess.Upstream.PaletteSessionTokenExpiry = prev.PaletteSessionTokenExpiry
	}
	sess.Profile = session.Profile{Email: t.Profile.Email, DisplayName: t.Profile.DisplayName, Picture: t.Profile.Picture}
	return nil
}

// upstreamTokens rebuilds the upstream view of a stored session.
func upstreamTokens(sess *session.Session, trustEmailWithoutVerified bool) (*upstream.Tokens, error) {
	u := sess.Upstream
	t := &upstream.Tokens{
		IDToken:             u.IDToken,
		AccessToken:         u.AccessToken,
		RefreshToken:        u.RefreshToken,
		PaletteSessionToken: u.PaletteSessionToken,
		TokenType:           u.TokenType,
		Scope:               sess.Scope,
		AccessTokenExpiry:   u.AccessTokenExpiry,
		IDTokenExpiry:       u.IDTokenExpiry,
	}
	if len(u.Claims) > 0 {
		if err := json.Unmarshal(u.Claims, &t.Claims); err != nil {
			return nil, fmt.Errorf("decoding stored ID token claims: %w", err)
		}
	} else if u.IDToken != "" {
		var err error
		if t.Claims, err = idTokenClaims(u.IDToken); err != nil {
			return nil, fmt.Errorf("decoding the stored ID token's claims: %w", err)
		}
	}
	t.Profile = upstream.ProfileFromClaims(t.Claims, trustEmailWithoutVerified)
	return t, nil
}

// idTokenClaims decodes the payload of an ID token that was verified when it
// was received.
func idTokenClaims(idToken string) (map[string]any, error) {
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		return nil, err
	}
	return claims, nil
}

// errSessionEnded marks refresh failures after which the session is gone.
var errSessionEnded = lifecycle.ErrSessionEnded

// scriptCall checks what Backstage requires of the app's script calls
// (/refresh and /logout): the X-Requested-With header, which browsers never
// send cross-site without a CORS preflight, and an allowed Origin when one
// is sent. It returns the selected environment and the caller's origin.
func (s *Server) scriptCall(r *http.Request) (*Env, string, error) {
	if r.Header.Get("X-Requested-With") != "XMLHttpRequest" {
		return nil, "", backstageerr.Authentication("Invalid X-Requested-With header")
	}
	origin := r.Header.Get("Origin")
	if origin != "" && !s.origins.allowed(origin) {
		return nil, "", backstageerr.NotAllowed("Origin '%s' is not allowed", origin)
	}
	env, err := s.env(r.URL.Query().Get("env"))
	return env, origin, err
}

// refresh answers GET/POST /api/auth/spectrocloud/refresh.
func (s *Server) refresh(w http.ResponseWriter, r *http.Request) error {
	env, origin, err := s.scriptCall(r)
	if err != nil {
		return err
	}
	handles, duplicate := env.cookies.sessionHandles(r)
	if duplicate {
		// Which session is ours cannot be told: end every one named and
		// clear every copy, rather than serve another user's session.
		s.endNamed(r.Context(), env, handles, EndDuplicateCookies)
		env.cookies.clearPlanted(w, origin)
		return refreshFailed(backstageerr.Authentication("Duplicate session cookies"))
	}
	if len(handles) == 0 || handles[0] == "" {
		return refreshFailed(backstageerr.Input("Missing session cookie"))
	}
	key, err := session.KeyOf(handles[0])
	if err != nil {
		env.cookies.clearSession(w, origin)
		return refreshFailed(err)
	}
	sess, err := s.refreshSession(r.Context(), env, key)
	if err != nil {
		if errors.Is(err, errSessionEnded) {
			env.cookies.clearSession(w, origin)
		}
		return refreshFailed(err)
	}
	backstageerr.WriteJSON(w, http.StatusOK, s.responseFor(sess))
	return nil
}

func refreshFailed(cause error) error {
	return backstageerr.Authentication("Refresh failed").WithCause(cause)
}

// refreshSession returns the session behind key, refreshing what is stale:
// upstream tokens only when they are within the margin of expiry, the
// Backstage token (and with it the sign-in resolution) only when less than
// half its lifetime is left. The common case touches no disk, no plugin and
// no provider.
func (s *Server) refreshSession(ctx context.Context, env *Env, key session.Key) (*session.Session, error) {
	sess, err := s.cfg.Sessions.Get(ctx, key)
	if err != nil {
		if errors.Is(err, session.ErrNotFound) {
			return nil, fmt.Errorf("%w: no live session for this cookie", errSessionEnded)
		}
		return nil, fmt.Errorf("reading the session: %w", err)
	}
	if sess.Env != env.name {
		return nil, fmt.Errorf("the session belongs to environment %q", sess.Env)
	}
	if !s.upstreamDue(env, sess) && !s.backstageStale(sess) {
		return sess, nil
	}
	// One refresh per session at a time: a rotated refresh token may be used
	// only once, and a page with many tabs refreshes together.
	renewed, err := s.renewOnce(ctx, env, key)
	if errors.Is(err, errRenewalLockWait) && s.stillServes(sess) {
		// Another replica's renewal (or the lease of one that died
		// renewing, until it runs out) holds the session: that says
		// nothing against it, so its current tokens are served, as while
		// the provider is unreachable.
		s.log.Warn("the session's renewal is held elsewhere; serving its current tokens", "env", env.name, "user", sess.UserEntityRef, "error", err)
		return sess, nil
	}
	return renewed, err
}

// errRenewalLockWait: the session's renewal lock could not be taken
// (another replica holds it past renewalLockWait, or the store failed).
var errRenewalLockWait = errors.New("waiting for another replica's renewal of the session")

// stillServes reports whether sess's tokens still hold at now: its ID token
// and its Backstage token have not expired.
func (s *Server) stillServes(sess *session.Session) bool {
	now := s.now()
	return now.Before(sess.Upstream.IDTokenExpiry) && sess.Backstage != nil && now.Before(sess.Backstage.ExpiresAt)
}

// renewOnce renews the session under its flight, re-reading it first: a
// concurrent caller may have renewed it already.
//
// The renewal does not end with the request that started it: other callers
// share its result, and once the provider has rotated the refresh token the
// new one must be stored. A caller that went away is no reason to end the
// session. The provider client and the plugins bound every call they make.
func (s *Server) renewOnce(ctx context.Context, env *Env, key session.Key) (*session.Session, error) {
	ctx = context.WithoutCancel(ctx)
	return s.flights.Do(key, func() (*session.Session, error) {
		sess, unlock, err := s.lockAndRead(ctx, key)
		if err != nil {
			return nil, err
		}
		defer unlock()
		if !s.upstreamDue(env, sess) && !s.backstageStale(sess) {
			return sess, nil
		}
		return s.renew(ctx, env, key, sess)
	})
}

// lockAndRead takes key's renewal lock when replicas share the store (other
// replicas renew this session too: one at a time, each re-reading what the
// last one stored), then reads the session. unlock must be called when err
// is nil.
func (s *Server) lockAndRead(ctx context.Context, key session.Key) (_ *session.Session, unlock func(), _ error) {
	unlock = func() {}
	if l, ok := s.cfg.Sessions.(session.RenewalLocker); ok {
		lctx, cancel := context.WithTimeout(ctx, renewalLockWait)
		u, err := l.LockRenewal(lctx, key)
		cancel()
		if errors.Is(err, session.ErrNotFound) {
			return nil, nil, fmt.Errorf("%w: %v", errSessionEnded, err)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errRenewalLockWait, err)
		}
		unlock = u
	}
	sess, err := s.cfg.Sessions.Get(ctx, key)
	if errors.Is(err, session.ErrNotFound) {
		unlock()
		return nil, nil, fmt.Errorf("%w: %v", errSessionEnded, err)
	}
	if err != nil {
		unlock()
		// The store failing (a shared database restarting) says nothing
		// against the session: keep the browser's cookie.
		return nil, nil, fmt.Errorf("reading the session: %w", err)
	}
	return sess, unlock, nil
}

// renewalLockWait bounds the wait for another replica's renewal of the same
// session; the page's next refresh tries again.
const renewalLockWait = 15 * time.Second

// upstreamDue reports whether the provider must be asked about the session
// now (lifecycle.Policy.UpstreamDue). Plain time comparisons: /refresh
// calls it every time.
func (s *Server) upstreamDue(env *Env, sess *session.Session) bool {
	return env.policy().UpstreamDue(sess, s.now())
}

func (s *Server) backstageStale(sess *session.Session) bool {
	return lifecycle.BackstageStale(sess, s.cfg.Identity.Lifetime(), s.now())
}

// renew does the slow part of a refresh under the session's flight.
func (s *Server) renew(ctx context.Context, env *Env, key session.Key, sess *session.Session) (*session.Session, error) {
	tokens, err := upstreamTokens(sess, env.TrustEmailWithoutVerifiedClaim)
	if err != nil {
		return nil, err
	}
	refreshedUpstream, checked := false, false
	if s.upstreamDue(env, sess) {
		var err error
		if s.backoff.Waiting(key, s.now()) {
			// The provider failed this session a moment ago: do not ask it
			// on every page load while it is down.
			err = errProviderBackoff
		} else {
			tokens, refreshedUpstream, err = s.askProvider(ctx, env, sess, tokens)
		}
		switch {
		case err == nil:
			s.backoff.Clear(key)
			checked = true
		case errors.Is(err, errProviderBackoff) || upstream.Unavailable(err):
			if !errors.Is(err, errProviderBackoff) {
				s.backoff.Set(key, s.now().Add(lifecycle.OutageBackoff))
			}
			if !s.now().Before(sess.Upstream.IDTokenExpiry) {
				// Nothing to serve, but nothing against the session either:
				// its refresh token may well work once the provider is back.
				s.log.Warn("the provider is unavailable and the session's ID token has expired; the session is kept", "env", env.name, "user", sess.UserEntityRef, "error", err)
				return nil, fmt.Errorf("asking the provider: %w", err)
			}
			// The provider is unreachable but the tokens still hold: serve
			// them and ask again after the backoff.
			if !errors.Is(err, errProviderBackoff) {
				s.log.Warn("the provider is unavailable; serving the session's current tokens", "env", env.name, "user", sess.UserEntityRef, "error", err)
			}
		default:
			// A refusal is a refusal: the refresh token was rejected, the
			// refreshed ID token failed verification or names another
			// subject, or userinfo refused the access token.
			return nil, s.refused(ctx, env, key, sess, EndRefused, err)
		}
	}
	if !checked && !s.backstageStale(sess) {
		// Nothing new upstream (the provider was not due, or is
		// unreachable) and the Backstage token has time left: serve the
		// session as it is, without the resolvers or a write.
		return sess, nil
	}
	if err := s.reissue(ctx, env, key, sess, tokens); err != nil {
		var ae *backstageerr.Error
		if errors.As(err, &ae) && ae.Status == http.StatusForbidden {
			return nil, s.refused(ctx, env, key, sess, EndResolverRefused, err)
		}
		if checked {
			// The provider may have rotated its refresh token, spending the
			// stored one: keep the new tokens, or the next refresh fails.
			if perr := s.storeRenewed(ctx, env, key, sess, refreshedUpstream); errors.Is(perr, errSessionEnded) {
				return nil, perr
			} else if perr != nil {
				s.log.Error("storing refreshed upstream tokens", "env", env.name, "user", sess.UserEntityRef, "error", perr)
			}
		}
		return nil, err
	}
	if err := s.storeRenewed(ctx, env, key, sess, refreshedUpstream); err != nil {
		return nil, err
	}
	return sess, nil
}

// askProvider refreshes the session's tokens with its refresh grant, or,
// without one, revalidates its access token at userinfo. On success the
// session records the answer (CheckedAt); refreshed reports new tokens.
func (s *Server) askProvider(ctx context.Context, env *Env, sess *session.Session, tokens *upstream.Tokens) (_ *upstream.Tokens, renewed bool, _ error) {
	now := s.now()
	if tokens.RefreshToken == "" {
		switch err := env.Upstream.CheckUserinfo(ctx, tokens); {
		case err == nil, errors.Is(err, upstream.ErrNoUserinfo):
			// Without userinfo nothing can be asked: the session still
			// ends with its ID token (sessionEnd).
			sess.Upstream.CheckedAt = now
			return tokens, false, nil
		default:
			return tokens, false, err
		}
	}
	refreshed, err := env.Upstream.Refresh(ctx, tokens)
	if err != nil {
		return tokens, false, err
	}
	if refreshed.Scope == "" {
		refreshed.Scope = sess.Scope
	}
	sameIDToken := refreshed.IDToken == tokens.IDToken
	sess.Scope = refreshed.Scope
	if err := setUpstream(sess, refreshed); err != nil {
		return tokens, false, err
	}
	sess.Upstream.IDTokenNotRenewed = sameIDToken
	sess.Upstream.CheckedAt = now
	return refreshed, true, nil
}

// errProviderBackoff: the provider failed this session moments ago and is
// not asked again yet.
var errProviderBackoff = errors.New("the provider was unavailable moments ago; not asking again yet")

// Reasons a session ends, as SessionEnded reports them.
const (
	// EndRefused: the provider refused the session's tokens.
	EndRefused = "refused"
	// EndResolverRefused: the sign-in resolvers no longer resolve the user.
	EndResolverRefused = "resolver-refused"
	// EndSignedOut: the user signed out.
	EndSignedOut = "signed-out"
	// EndSignedOutEverywhere: the user or an operator ended all the user's sessions.
	EndSignedOutEverywhere = "signed-out-everywhere"
	// EndDuplicateCookies: the request named several sessions at once.
	EndDuplicateCookies = "duplicate-cookies"
)

// refused ends a session the provider or the resolvers refused: the session
// is deleted, its upstream tokens revoked (where the provider supports
// revocation), an audit line logged and the end counted. It returns the
// error the caller answers with (the session ended: 401, cookies cleared).
func (s *Server) refused(ctx context.Context, env *Env, key session.Key, sess *session.Session, reason string, cause error) error {
	s.endSession(ctx, key)
	s.revokeUpstream(ctx, env, sess)
	s.backoff.Clear(key)
	s.log.Warn("session ended: refused", "audit", "session-ended", "reason", reason, "env", env.name, "user", sess.UserEntityRef, "session", key.String(), "error", cause)
	s.sessionEnded(env.name, reason, 1)
	return fmt.Errorf("%w: %s: %v", errSessionEnded, reason, cause)
}

// sessionEnded counts n ended sessions (Config.SessionEnded).
func (s *Server) sessionEnded(env, reason string, n int) {
	if s.cfg.SessionEnded != nil && n > 0 {
		s.cfg.SessionEnded(env, reason, n)
	}
}

// storeRenewed writes a renewed session back over the stored one, unless
// the session ended while it was renewed (a sign-out while the provider was
// asked): then it stays ended, and the tokens the renewal got are revoked
// as the sign-out revoked the earlier ones.
func (s *Server) storeRenewed(ctx context.Context, env *Env, key session.Key, sess *session.Session, refreshedUpstream bool) error {
	err := s.cfg.Sessions.Replace(ctx, key, sess)
	if errors.Is(err, session.ErrNotFound) {
		if refreshedUpstream {
			s.revokeUpstream(ctx, env, sess)
		}
		return fmt.Errorf("%w: it ended while it was renewed", errSessionEnded)
	}
	if err != nil {
		return fmt.Errorf("storing the refreshed session: %w", err)
	}
	return nil
}

// revokeUpstream asks env's provider to revoke the session's upstream
// tokens, where it supports revocation. A failure is only logged: signing
// out ends the session here anyway.
func (s *Server) revokeUpstream(ctx context.Context, env *Env, sess *session.Session) {
	tokens, err := upstreamTokens(sess, env.TrustEmailWithoutVerifiedClaim)
	if err != nil {
		return
	}
	if err := env.Upstream.Revoke(ctx, tokens); err != nil {
		s.log.Warn("upstream revocation failed; the session is ended here anyway", "env", env.name, "user", sess.UserEntityRef, "error", err)
	}
}

func (s *Server) endSession(ctx context.Context, key session.Key) {
	if err := s.cfg.Sessions.Delete(ctx, key); err != nil {
		s.log.Error("deleting an ended session", "error", err)
	}
}

// logout answers POST /api/auth/spectrocloud/logout: revoke upstream where
// the provider supports it, end every session the request names (a planted
// cookie sent first must not leave the real session alive), clear the
// cookies. With ?everywhere=true it ends every session of the user the
// request's session belongs to, browser and command-line alike.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	env, origin, err := s.scriptCall(r)
	if err != nil {
		return err
	}
	handles, duplicate := env.cookies.sessionHandles(r)
	if r.URL.Query().Get("everywhere") == "true" {
		if err := s.signOutEverywhere(r.Context(), env, handles); err != nil {
			return err
		}
	} else if err := s.endNamed(r.Context(), env, handles, EndSignedOut); err != nil {
		return err
	}
	if duplicate {
		env.cookies.clearPlanted(w, origin)
	} else {
		env.cookies.clearSession(w, origin)
	}
	if allowedLogoutURL(env.LogoutURL) {
		backstageerr.WriteJSON(w, http.StatusOK, map[string]string{"logoutUrl": env.LogoutURL})
		return nil
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// endNamed ends the sessions of the given cookie values: each one's
// upstream tokens are revoked (when it can be read) and the session
// deleted (whether or not it could be read: a store that failed the read
// must still forget it, or the sign-out fails).
func (s *Server) endNamed(ctx context.Context, env *Env, handles []string, reason string) error {
	var errs []error
	for _, h := range handles {
		key, err := session.KeyOf(h)
		if err != nil {
			continue
		}
		sess, getErr := s.cfg.Sessions.Get(ctx, key)
		if getErr == nil {
			s.revokeUpstream(ctx, env, sess)
		}
		if err := s.cfg.Sessions.Delete(ctx, key); err != nil {
			errs = append(errs, fmt.Errorf("deleting the session: %w", err))
			continue
		}
		if getErr == nil {
			s.log.Info("session ended", "audit", "session-ended", "reason", reason, "env", env.name, "user", sess.UserEntityRef, "session", key.String())
			s.sessionEnded(env.name, reason, 1)
		}
	}
	return errors.Join(errs...)
}

// signOutEverywhere ends every session of the users the request's live
// sessions belong to. Without a live session it answers 401: there is no
// one to sign out.
func (s *Server) signOutEverywhere(ctx context.Context, env *Env, handles []string) error {
	var users []string
	for _, h := range handles {
		key, err := session.KeyOf(h)
		if err != nil {
			continue
		}
		if sess, err := s.cfg.Sessions.Get(ctx, key); err == nil && sess.UserEntityRef != "" && !slices.Contains(users, sess.UserEntityRef) {
			users = append(users, sess.UserEntityRef)
		}
	}
	if len(users) == 0 {
		return backstageerr.Authentication("No live session to sign out everywhere")
	}
	for _, user := range users {
		if _, err := s.EndUserSessions(ctx, user, "user"); err != nil {
			return err
		}
	}
	return nil
}

// EndUserSessions ends every session of userEntityRef in every environment
// (sign out everywhere): their upstream tokens are revoked where the
// provider supports it, the sessions deleted, an audit line logged naming
// by (who asked: "user" or "operator"). It returns how many ended.
func (s *Server) EndUserSessions(ctx context.Context, userEntityRef, by string) (int, error) {
	entries, err := s.cfg.Sessions.ListByUser(ctx, userEntityRef)
	if err != nil {
		return 0, fmt.Errorf("listing the sessions of %s: %w", userEntityRef, err)
	}
	perEnv := map[string]int{}
	for _, e := range entries {
		if env, ok := s.cfg.Envs[e.Session.Env]; ok {
			s.revokeUpstream(ctx, env, e.Session)
		}
		perEnv[e.Session.Env]++
	}
	n, err := s.cfg.Sessions.DeleteByUser(ctx, userEntityRef)
	if err != nil {
		return n, fmt.Errorf("deleting the sessions of %s: %w", userEntityRef, err)
	}
	s.log.Info("signed out everywhere", "audit", "sessions-revoked", "by", by, "user", userEntityRef, "sessions", n)
	for env, k := range perEnv {
		s.sessionEnded(env, EndSignedOutEverywhere, k)
	}
	return n, nil
}

var _ signin.Resolver = signin.Chain(nil)

// allowedLogoutURL mirrors Backstage: only an https or localhost URL is sent.
func allowedLogoutURL(raw string) bool {
	if raw == "" {
		return false
	}
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "https" || u.Hostname() == "localhost")
}
