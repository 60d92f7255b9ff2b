package lifecycle

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/internal/backstageerr"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// newSession resolves the identity of a fresh sign-in and issues its token.
func (m *Manager) newSession(ctx context.Context, env *Env, key session.Key, tokens *upstream.Tokens) (*session.Session, error) {
	now := m.now()
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
	if err := m.reissue(ctx, env, key, sess, tokens); err != nil {
		return nil, err
	}
	return sess, nil
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
func (m *Manager) reissue(ctx context.Context, env *Env, key session.Key, sess *session.Session, tokens *upstream.Tokens) error {
	id, err := m.resolve(ctx, env, tokens)
	if err != nil {
		return err
	}
	refs := id.OwnershipEntityRefs
	if len(refs) == 0 {
		refs = []string{id.UserEntityRef}
	}
	tok, err := m.cfg.Identity.Issue(ctx, identity.Claims{
		Subject:    id.UserEntityRef,
		Ent:        refs,
		IncludeEnt: m.cfg.IncludeOwnershipClaim,
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
func setUpstream(sess *session.Session, t *upstream.Tokens) error {
	claims, err := claimsToStore(t)
	if err != nil {
		return err
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

// claimsToStore is what a session stores of t's claims: nothing when they
// are the ID token's payload, read back from the ID token itself; only
// claims that differ (userinfo claims were merged in) are stored. Sessions
// live in memory, and this is a fifth of one. When the provider says the
// claims are the ID token's (it decoded them from it on verification), the
// token is not decoded again to compare: a sign-in's cost.
func claimsToStore(t *upstream.Tokens) (json.RawMessage, error) {
	if t.ClaimsAreIDTokens() {
		return nil, nil
	}
	if fromToken, err := idTokenClaims(t.IDToken); err == nil && reflect.DeepEqual(fromToken, t.Claims) {
		return nil, nil
	}
	claims, err := json.Marshal(t.Claims)
	if err != nil {
		return nil, fmt.Errorf("encoding ID token claims: %w", err)
	}
	return claims, nil
}

// UpstreamTokens rebuilds the upstream view of a stored session.
func UpstreamTokens(sess *session.Session, trustEmailWithoutVerified bool) (*upstream.Tokens, error) {
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

// Refresh returns the session behind key (a browser's /refresh),
// refreshing what is stale: the provider is asked only when env's Policy
// says it is due (the ID token within the margin, or revalidateInterval
// since its last answer), the Backstage token (and with it the sign-in
// resolution) re-issued only when less than half its lifetime is left. The
// common case touches no disk, no plugin and no provider.
func (m *Manager) Refresh(ctx context.Context, env *Env, key session.Key) (*session.Session, error) {
	sess, err := m.cfg.Sessions.Get(ctx, key)
	if err != nil {
		if errors.Is(err, session.ErrNotFound) {
			return nil, fmt.Errorf("%w: no live session for this cookie", ErrSessionEnded)
		}
		return nil, fmt.Errorf("reading the session: %w", err)
	}
	if sess.Env != env.name {
		return nil, fmt.Errorf("the session belongs to environment %q", sess.Env)
	}
	if !m.Due(env, sess) {
		return sess, nil
	}
	// One refresh per session at a time: a rotated refresh token may be used
	// only once, and a page with many tabs refreshes together.
	renewed, err := m.Renew(ctx, env, key)
	if errors.Is(err, errRenewalHeld) && m.stillServes(sess) {
		// Another replica's renewal (or the lease of one that died
		// renewing, until it runs out) holds the session: that says
		// nothing against it, so its current tokens are served, as while
		// the provider is unreachable.
		m.log.Warn("the session's renewal is held elsewhere; serving its current tokens", "env", env.name, "user", sess.UserEntityRef, "error", err)
		return sess, nil
	}
	return renewed, err
}

// errRenewalHeld: the session's renewal lock could not be taken (another
// replica holds it past RenewalLockWait, or the store failed).
var errRenewalHeld = errors.New("waiting for another replica's renewal of the session")

// stillServes reports whether sess's tokens still hold now: its ID token and
// its Backstage token have not expired.
func (m *Manager) stillServes(sess *session.Session) bool {
	now := m.now()
	return now.Before(sess.Upstream.IDTokenExpiry) && sess.Backstage != nil && now.Before(sess.Backstage.ExpiresAt)
}

// Renew renews the session under its flight, re-reading it first: a
// concurrent caller may have renewed it already.
//
// The renewal does not end with the request that started it: other callers
// share its result, and once the provider has rotated the refresh token the
// new one must be stored. A caller that went away is no reason to end the
// session. The provider client and the plugins bound every call they make.
func (m *Manager) Renew(ctx context.Context, env *Env, key session.Key) (*session.Session, error) {
	ctx = context.WithoutCancel(ctx)
	return m.flights.Do(key, func() (*session.Session, error) {
		sess, unlock, err := m.LockAndRead(ctx, key)
		if err != nil {
			return nil, err
		}
		defer unlock()
		if !m.Due(env, sess) {
			return sess, nil
		}
		return m.renew(ctx, env, key, sess)
	})
}

// LockAndRead takes key's renewal lock when replicas share the store (other
// replicas renew this session too: one at a time, each re-reading what the
// last one stored), then reads the session. unlock must be called when err
// is nil.
func (m *Manager) LockAndRead(ctx context.Context, key session.Key) (_ *session.Session, unlock func(), _ error) {
	unlock = func() {}
	if l, ok := m.cfg.Sessions.(session.RenewalLocker); ok {
		lctx, cancel := context.WithTimeout(ctx, RenewalLockWait)
		u, err := l.LockRenewal(lctx, key)
		cancel()
		if errors.Is(err, session.ErrNotFound) {
			return nil, nil, fmt.Errorf("%w: %v", ErrSessionEnded, err)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errRenewalHeld, err)
		}
		unlock = u
	}
	sess, err := m.cfg.Sessions.Get(ctx, key)
	if errors.Is(err, session.ErrNotFound) {
		unlock()
		return nil, nil, fmt.Errorf("%w: %v", ErrSessionEnded, err)
	}
	if err != nil {
		unlock()
		// The store failing (a shared database restarting) says nothing
		// against the session: keep the browser's cookie.
		return nil, nil, fmt.Errorf("reading the session: %w", err)
	}
	return sess, unlock, nil
}

// RenewalLockWait bounds the wait for another replica's renewal of the same
// session; the page's next refresh tries again.
const RenewalLockWait = 15 * time.Second

// upstreamDue reports whether the provider must be asked about the session
// now (Policy.UpstreamDue).
func (m *Manager) upstreamDue(env *Env, sess *session.Session) bool {
	return env.Policy().UpstreamDue(sess, m.now())
}

// stale reports whether the session's Backstage token must be re-issued
// now (BackstageStale).
func (m *Manager) stale(sess *session.Session) bool {
	return BackstageStale(sess, m.cfg.Identity.Lifetime(), m.now())
}

// Due reports whether the session needs renewing (Renew): the provider is
// due (Policy.UpstreamDue) or the Backstage token is stale
// (BackstageStale), both judged at one reading of the clock. /refresh
// calls it every time.
func (m *Manager) Due(env *Env, sess *session.Session) bool {
	now := m.now()
	return env.Policy().UpstreamDue(sess, now) || BackstageStale(sess, m.cfg.Identity.Lifetime(), now)
}

// renew does the slow part of a refresh under the session's flight.
func (m *Manager) renew(ctx context.Context, env *Env, key session.Key, sess *session.Session) (*session.Session, error) {
	tokens, err := UpstreamTokens(sess, env.TrustEmailWithoutVerifiedClaim)
	if err != nil {
		return nil, err
	}
	refreshedUpstream, checked := false, false
	if m.upstreamDue(env, sess) {
		var err error
		if m.backoff.Waiting(key, m.now()) {
			// The provider failed this session a moment ago: do not ask it
			// on every page load while it is down.
			err = errProviderBackoff
		} else {
			tokens, refreshedUpstream, err = m.askProvider(ctx, env, sess, tokens)
		}
		switch {
		case err == nil:
			m.backoff.Clear(key)
			checked = true
		case errors.Is(err, errProviderBackoff) || upstream.Unavailable(err) || upstream.ClientRejected(err):
			if !errors.Is(err, errProviderBackoff) {
				m.backoff.Set(key, m.now().Add(OutageBackoff))
			}
			if upstream.ClientRejected(err) {
				// The daemon's own client id or secret is wrong: the
				// operator's fault, not the user'm. Every session would be
				// signed out by it, so none is; say so loudly instead.
				m.log.Error("the provider rejected the daemon's client credentials on a refresh (check clientId and clientSecret); sessions keep their current tokens while valid", "env", env.name, "error", err)
				m.countClientRejected(env.name)
			}
			if !m.now().Before(sess.Upstream.IDTokenExpiry) {
				// Nothing to serve, but nothing against the session either:
				// its refresh token may well work once the provider is back.
				m.log.Warn("the provider is unavailable and the session's ID token has expired; the session is kept", "env", env.name, "user", sess.UserEntityRef, "error", err)
				return nil, fmt.Errorf("asking the provider: %w", err)
			}
			// The provider is unreachable but the tokens still hold: serve
			// them and ask again after the backoff.
			if !errors.Is(err, errProviderBackoff) && !upstream.ClientRejected(err) {
				m.log.Warn("the provider is unavailable; serving the session's current tokens", "env", env.name, "user", sess.UserEntityRef, "error", err)
			}
		default:
			// A refusal is a refusal: the refresh token was rejected, the
			// refreshed ID token failed verification or names another
			// subject, or userinfo refused the access token.
			return nil, m.refused(ctx, env, key, sess, EndRefused, err)
		}
	}
	if !checked && !m.stale(sess) {
		// Nothing new upstream (the provider was not due, or is
		// unreachable) and the Backstage token has time left: serve the
		// session as it is, without the resolvers or a write.
		return sess, nil
	}
	if err := m.reissue(ctx, env, key, sess, tokens); err != nil {
		var ae *backstageerr.Error
		if errors.As(err, &ae) && ae.Status == http.StatusForbidden {
			return nil, m.refused(ctx, env, key, sess, EndResolverRefused, err)
		}
		if checked {
			// The provider may have rotated its refresh token, spending the
			// stored one: keep the new tokens, or the next refresh fails.
			if perr := m.storeRenewed(ctx, env, key, sess, refreshedUpstream); errors.Is(perr, ErrSessionEnded) {
				return nil, perr
			} else if perr != nil {
				m.log.Error("storing refreshed upstream tokens", "env", env.name, "user", sess.UserEntityRef, "error", perr)
			}
		}
		return nil, err
	}
	if err := m.storeRenewed(ctx, env, key, sess, refreshedUpstream); err != nil {
		return nil, err
	}
	return sess, nil
}

// askProvider refreshes the session's tokens with its refresh grant, or,
// without one, revalidates its access token at userinfo. On success the
// session records the answer (CheckedAt); refreshed reports new tokens.
func (m *Manager) askProvider(ctx context.Context, env *Env, sess *session.Session, tokens *upstream.Tokens) (_ *upstream.Tokens, renewed bool, _ error) {
	now := m.now()
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
func (m *Manager) refused(ctx context.Context, env *Env, key session.Key, sess *session.Session, reason string, cause error) error {
	m.EndSession(ctx, key)
	m.RevokeUpstream(ctx, env, sess)
	m.backoff.Clear(key)
	m.log.Warn("session ended: refused", "audit", "session-ended", "reason", reason, "env", env.name, "user", sess.UserEntityRef, "session", key.String(), "error", cause)
	m.countEnded(env.name, reason, 1)
	return fmt.Errorf("%w: %s: %v", ErrSessionEnded, reason, cause)
}

// countClientRejected counts a refusal of the daemon's client credentials
// (Config.ClientRejected).
func (m *Manager) countClientRejected(env string) {
	if m.cfg.ClientRejected != nil {
		m.cfg.ClientRejected(env)
	}
}

// countEnded counts n ended sessions (Config.SessionEnded).
func (m *Manager) countEnded(env, reason string, n int) {
	if m.cfg.SessionEnded != nil && n > 0 {
		m.cfg.SessionEnded(env, reason, n)
	}
}

// storeRenewed writes a renewed session back over the stored one, unless
// the session ended while it was renewed (a sign-out while the provider was
// asked): then it stays ended, and the tokens the renewal got are revoked
// as the sign-out revoked the earlier ones.
func (m *Manager) storeRenewed(ctx context.Context, env *Env, key session.Key, sess *session.Session, refreshedUpstream bool) error {
	err := m.cfg.Sessions.Replace(ctx, key, sess)
	if errors.Is(err, session.ErrNotFound) {
		if refreshedUpstream {
			m.RevokeUpstream(ctx, env, sess)
		}
		return fmt.Errorf("%w: it ended while it was renewed", ErrSessionEnded)
	}
	if err != nil {
		return fmt.Errorf("storing the refreshed session: %w", err)
	}
	return nil
}

// RevokeUpstream asks env's provider to revoke the session's upstream
// tokens, where it supports revocation. A failure is only logged: signing
// out ends the session here anyway.
func (m *Manager) RevokeUpstream(ctx context.Context, env *Env, sess *session.Session) {
	tokens, err := UpstreamTokens(sess, env.TrustEmailWithoutVerifiedClaim)
	if err != nil {
		return
	}
	if err := env.Upstream.Revoke(ctx, tokens); err != nil {
		m.log.Warn("upstream revocation failed; the session is ended here anyway", "env", env.name, "user", sess.UserEntityRef, "error", err)
	}
}

func (m *Manager) EndSession(ctx context.Context, key session.Key) {
	if err := m.cfg.Sessions.Delete(ctx, key); err != nil {
		m.log.Error("deleting an ended session", "error", err)
	}
}

// EndNamed ends the sessions of the given cookie values: each one's
// upstream tokens are revoked (when it can be read) and the session
// deleted (whether or not it could be read: a store that failed the read
// must still forget it, or the sign-out fails).
func (m *Manager) EndNamed(ctx context.Context, env *Env, handles []string, reason string) error {
	var errs []error
	for _, h := range handles {
		key, err := session.KeyOf(h)
		if err != nil {
			continue
		}
		sess, getErr := m.cfg.Sessions.Get(ctx, key)
		if getErr == nil {
			m.RevokeUpstream(ctx, env, sess)
		}
		if err := m.cfg.Sessions.Delete(ctx, key); err != nil {
			errs = append(errs, fmt.Errorf("deleting the session: %w", err))
			continue
		}
		if getErr == nil {
			m.log.Info("session ended", "audit", "session-ended", "reason", reason, "env", env.name, "user", sess.UserEntityRef, "session", key.String())
			m.countEnded(env.name, reason, 1)
		}
	}
	return errors.Join(errs...)
}

// SignOutEverywhere ends every session of the users the request's live
// sessions belong to. Without a live session it answers 401: there is no
// one to sign out.
func (m *Manager) SignOutEverywhere(ctx context.Context, env *Env, handles []string) error {
	var users []string
	for _, h := range handles {
		key, err := session.KeyOf(h)
		if err != nil {
			continue
		}
		if sess, err := m.cfg.Sessions.Get(ctx, key); err == nil && sess.UserEntityRef != "" && !slices.Contains(users, sess.UserEntityRef) {
			users = append(users, sess.UserEntityRef)
		}
	}
	if len(users) == 0 {
		return backstageerr.Authentication("No live session to sign out everywhere")
	}
	for _, user := range users {
		if _, err := m.EndUserSessions(ctx, user, "user"); err != nil {
			return err
		}
	}
	return nil
}

// EndUserSessions ends every session of userEntityRef in every environment
// (sign out everywhere): their upstream tokens are revoked where the
// provider supports it, the sessions deleted, an audit line logged naming
// by (who asked: "user" or "operator"). It returns how many ended.
func (m *Manager) EndUserSessions(ctx context.Context, userEntityRef, by string) (int, error) {
	entries, err := m.cfg.Sessions.ListByUser(ctx, userEntityRef)
	if err != nil {
		return 0, fmt.Errorf("listing the sessions of %s: %w", userEntityRef, err)
	}
	perEnv := map[string]int{}
	for _, e := range entries {
		if env, ok := m.cfg.Envs[e.Session.Env]; ok {
			m.RevokeUpstream(ctx, env, e.Session)
		}
		perEnv[e.Session.Env]++
	}
	n, err := m.cfg.Sessions.DeleteByUser(ctx, userEntityRef)
	if err != nil {
		return n, fmt.Errorf("deleting the sessions of %s: %w", userEntityRef, err)
	}
	m.log.Info("signed out everywhere", "audit", "sessions-revoked", "by", by, "user", userEntityRef, "sessions", n)
	for env, k := range perEnv {
		m.countEnded(env, EndSignedOutEverywhere, k)
	}
	return n, nil
}

var _ signin.Resolver = signin.Chain(nil)

// resolve runs the environment's sign-in chain. "No identity" is the user's
// problem (403); anything else is ours.
func (m *Manager) resolve(ctx context.Context, env *Env, tokens *upstream.Tokens) (signin.Identity, error) {
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

// sessionFor reads the session a verified token names (sid, the hex store
// key) for subject, and refreshes its upstream tokens within the margin.
func (m *Manager) sessionFor(ctx context.Context, sid, subject string, kind session.Kind) (*UserSession, error) {
	raw, err := hex.DecodeString(sid)
	var key session.Key
	if err != nil || len(raw) != len(key) {
		return nil, fmt.Errorf("%w: malformed sid", ErrUnauthenticated)
	}
	copy(key[:], raw)
	return m.SessionOf(ctx, key, subject, kind)
}

// SessionOf reads the session under key of the given kind for subject (""
// for whoever it belongs to), refreshing upstream tokens within the margin.
func (m *Manager) SessionOf(ctx context.Context, key session.Key, subject string, kind session.Kind) (*UserSession, error) {
	sess, err := m.cfg.Sessions.Get(ctx, key)
	if errors.Is(err, session.ErrNotFound) {
		return nil, fmt.Errorf("%w: %v", ErrSessionEnded, err)
	}
	if err != nil {
		// Not a verdict on the session: the caller may try again.
		return nil, fmt.Errorf("reading the session: %w", err)
	}
	if sess.Kind != kind {
		return nil, fmt.Errorf("%w: the token names a session of another kind", ErrUnauthenticated)
	}
	env, ok := m.cfg.Envs[sess.Env]
	if !ok {
		return nil, fmt.Errorf("%w: environment %q is no longer configured", ErrSessionEnded, sess.Env)
	}
	if subject != "" && sess.UserEntityRef != subject {
		return nil, fmt.Errorf("%w: the session belongs to another user", ErrUnauthenticated)
	}
	if m.upstreamDue(env, sess) {
		if sess, err = m.Renew(ctx, env, key); err != nil {
			return nil, err
		}
	}
	tokens, err := UpstreamTokens(sess, env.TrustEmailWithoutVerifiedClaim)
	if err != nil {
		return nil, err
	}
	return &UserSession{Key: key, Env: sess.Env, Session: sess, Tokens: tokens}, nil
}

// UserSession authenticates a Backstage user token issued by this daemon and
// returns the browser session it was issued for. Upstream tokens are
// renewed first when the policy says the provider is due, exactly as
// Refresh does.
func (m *Manager) UserSession(ctx context.Context, backstageToken string) (*UserSession, error) {
	claims, err := m.cfg.Identity.Verify(ctx, backstageToken)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	if claims.Type != identity.TypeUser || claims.SessionID == "" {
		return nil, fmt.Errorf("%w: the token names no session (a limited or foreign token)", ErrUnauthenticated)
	}
	return m.sessionFor(ctx, claims.SessionID, claims.Subject, session.KindBrowser)
}

// CLISession authenticates a command-line access token (identity.TypeCLIAccess
// for audience) and returns its command-line session, renewed as
// UserSession does.
func (m *Manager) CLISession(ctx context.Context, accessToken, audience string) (*UserSession, error) {
	claims, err := m.cfg.Identity.VerifyAccess(ctx, accessToken, identity.TypeCLIAccess, audience)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	return m.sessionFor(ctx, claims.SessionID, claims.Subject, session.KindCLI)
}
