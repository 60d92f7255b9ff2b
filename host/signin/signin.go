// Package signin turns a verified SpectroCloud user into a Backstage identity
// by running the configured chain of resolvers: the first identity wins,
// "not found" falls through to the next resolver, and any other error fails
// the sign-in.
package signin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spectroauth/spectroauth/sdk"
)

// ErrNotFound is returned by a resolver that does not know the user; the chain
// then tries the next resolver. It is sdk.ErrNotFound, the error plugin
// resolvers return, so errors.Is matches either on any resolver's error.
var ErrNotFound = sdk.ErrNotFound

// Input is what a resolver learns about the person signing in.
type Input struct {
	// Env is the Backstage environment of the sign-in (development, production, …).
	Env string
	// Claims are the verified ID token claims.
	Claims map[string]any
	// Profile is derived from Claims; Email is set only when it was verified.
	Profile Profile
}

// Profile is the person's profile as the upstream provider states it.
type Profile struct {
	Email             string
	EmailVerified     bool
	DisplayName       string
	Picture           string
	Subject           string
	Issuer            string
	PreferredUsername string
	Groups            []string
}

// Identity is a Backstage identity.
type Identity struct {
	// UserEntityRef is the full user entity ref, e.g. user:default/alice.
	UserEntityRef string
	// OwnershipEntityRefs are the refs the user owns through; they include UserEntityRef.
	OwnershipEntityRefs []string
	// Extra claims to put into the Backstage token.
	Extra map[string]any
}

// Resolver maps an Input to an Identity, or returns an error wrapping ErrNotFound.
type Resolver interface {
	Resolve(ctx context.Context, in Input) (Identity, error)
}

// Step is one named resolver of a chain; the name appears in errors and logs.
type Step struct {
	Name     string
	Resolver Resolver
}

// Chain tries its steps in order.
type Chain []Step

// ErrNoIdentity is returned when every resolver of the chain said "not found".
var ErrNoIdentity = errors.New("no sign-in resolver found a Backstage user for this SpectroCloud user")

// Resolve returns the identity of the first step that finds one.
func (c Chain) Resolve(ctx context.Context, in Input) (Identity, error) {
	for _, s := range c {
		id, err := s.Resolver.Resolve(ctx, in)
		switch {
		case err == nil:
			if id.UserEntityRef == "" {
				return Identity{}, fmt.Errorf("sign-in resolver %s returned no user entity ref", s.Name)
			}
			return id, nil
		case errors.Is(err, ErrNotFound):
			continue
		default:
			return Identity{}, fmt.Errorf("sign-in resolver %s: %w", s.Name, err)
		}
	}
	return Identity{}, ErrNoIdentity
}

// EmailLocalPart is the built-in, catalog-free resolver used by the embedded
// development defaults: it signs a person in as user:default/<email local part>,
// owning only themselves. It needs a verified email.
type EmailLocalPart struct{}

var _ Resolver = EmailLocalPart{}

// Resolve implements Resolver.
func (EmailLocalPart) Resolve(_ context.Context, in Input) (Identity, error) {
	if in.Profile.Email == "" || !in.Profile.EmailVerified {
		return Identity{}, fmt.Errorf("no verified email in the profile: %w", ErrNotFound)
	}
	local, _, ok := strings.Cut(in.Profile.Email, "@")
	name := entityName(local)
	if !ok || name == "" {
		return Identity{}, fmt.Errorf("email has no usable local part: %w", ErrNotFound)
	}
	ref := "user:default/" + name
	return Identity{UserEntityRef: ref, OwnershipEntityRefs: []string{ref}}, nil
}

// entityName lower-cases s and keeps only what a Backstage entity name allows
// (letters, digits, '-', '_', '.'), dropping a "+tag".
func entityName(s string) string {
	s, _, _ = strings.Cut(s, "+")
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		}
	}
	return strings.Trim(b.String(), "-_.")
}

// Builtins are the resolvers compiled into the daemon, by name.
var Builtins = map[string]Resolver{
	"emailLocalPartMatchingUserEntityName": EmailLocalPart{},
}
