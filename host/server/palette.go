package server

import (
	"context"

	"github.com/spectroauth/spectroauth/host/lifecycle"
)

// PaletteSession is (*lifecycle.Manager).PaletteSession: us with a Palette
// session token that has at least lifecycle.PaletteRenewalMargin left.
func (s *Server) PaletteSession(ctx context.Context, us *UserSession, renew lifecycle.PaletteRenewal) (*UserSession, error) {
	return s.lc.PaletteSession(ctx, us, renew)
}
