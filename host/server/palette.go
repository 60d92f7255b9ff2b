package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/session"
)

// PaletteSession returns us with a Palette session token that has at least
// lifecycle.PaletteRenewalMargin left, renewing it first with renew when it
// has less (or its expiry is unknown). The renewal runs under the session's
// flight and renewal lock, like an upstream refresh, and is stored before
// it is served. A session without a Palette session token is returned as
// it is. When Palette refuses the renewal the token is dropped from the
// session and the error wraps lifecycle.ErrPaletteTokenRefused. Nothing
// revokes the token when the session ends: Palette's API documents no
// logout for it, so it is dropped with the session and dies within its 15
// minutes.
func (s *Server) PaletteSession(ctx context.Context, us *UserSession, renew lifecycle.PaletteRenewal) (*UserSession, error) {
	// A renewal of the session already in flight (an upstream refresh)
	// answers for this caller too: look again at what it stored, once.
	for range 2 {
		if !lifecycle.PaletteTokenDue(us.Session.Upstream, lifecycle.PaletteRenewalMargin, s.now()) {
			return us, nil
		}
		sess, err := s.flights.Do(us.Key, func() (*session.Session, error) {
			return s.renewPalette(context.WithoutCancel(ctx), us.Key, renew)
		})
		if err != nil {
			return nil, err
		}
		next := *us
		next.Session = sess.Clone()
		if us.Tokens != nil {
			t := *us.Tokens
			t.PaletteSessionToken = sess.Upstream.PaletteSessionToken
			next.Tokens = &t
		}
		us = &next
	}
	return us, nil
}

// renewPalette renews the stored session's Palette session token when it is
// still due, under the session's renewal lock when replicas share the store.
func (s *Server) renewPalette(ctx context.Context, key session.Key, renew lifecycle.PaletteRenewal) (*session.Session, error) {
	sess, unlock, err := s.lockAndRead(ctx, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	now := s.now()
	if !lifecycle.PaletteTokenDue(sess.Upstream, lifecycle.PaletteRenewalMargin, now) {
		return sess, nil
	}
	token, exp, err := renew(ctx, sess.Upstream.PaletteSessionToken)
	refused := errors.Is(err, lifecycle.ErrPaletteTokenRefused)
	switch {
	case refused:
		s.log.Warn("palette refused to renew the session's palette session token; it is dropped", "env", sess.Env, "user", sess.UserEntityRef, "session", key.String())
		token, exp = "", time.Time{}
	case err != nil:
		return nil, fmt.Errorf("renewing the palette session token: %w", err)
	case token == "":
		return nil, errors.New("renewing the palette session token: palette answered no token")
	case exp.IsZero():
		exp = now.Add(lifecycle.PaletteSessionLifetime)
	}
	sess.Upstream.PaletteSessionToken, sess.Upstream.PaletteSessionTokenExpiry = token, exp
	if err := s.cfg.Sessions.Replace(ctx, key, sess); errors.Is(err, session.ErrNotFound) {
		return nil, fmt.Errorf("%w: it ended while its palette session token was renewed", ErrSessionEnded)
	} else if err != nil {
		return nil, fmt.Errorf("storing the renewed palette session token: %w", err)
	}
	if refused {
		return nil, fmt.Errorf("renewing the palette session token: %w", err)
	}
	return sess, nil
}
