package lifecycle

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/spectroauth/spectroauth/host/signin"
)

// SwappableResolver is a signin.Resolver whose chain can be replaced while
// sign-ins and renewals run (a configuration reload): each call uses the
// chain in place when it starts.
type SwappableResolver struct {
	r atomic.Pointer[signin.Resolver]
}

var _ signin.Resolver = (*SwappableResolver)(nil)

// NewSwappableResolver starts with r.
func NewSwappableResolver(r signin.Resolver) *SwappableResolver {
	s := &SwappableResolver{}
	s.Swap(r)
	return s
}

// Swap puts r in place for the calls that start from now on.
func (s *SwappableResolver) Swap(r signin.Resolver) { s.r.Store(&r) }

// Resolve implements signin.Resolver with the chain in place.
func (s *SwappableResolver) Resolve(ctx context.Context, in signin.Input) (signin.Identity, error) {
	r := s.r.Load()
	if r == nil || *r == nil {
		return signin.Identity{}, errors.New("no sign-in resolver configured")
	}
	return (*r).Resolve(ctx, in)
}
