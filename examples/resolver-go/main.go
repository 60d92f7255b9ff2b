// Command resolver-go is a spectroauth sign-in resolver written outside spectroauth: emailDomainToUser maps
// a verified e-mail address at the domain of option "domain" to the Backstage user named by its local part.
package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spectroauth/spectroauth/sdk"
)

type resolver struct{}

func (resolver) Resolvers() []string { return []string{"emailDomainToUser"} }

// ValidateOptions lets the daemon refuse bad options when it starts, not at the first sign-in.
func (resolver) ValidateOptions(_ context.Context, req sdk.ValidateOptionsRequest) error {
	if err := req.Options.RejectUnknown("domain"); err != nil {
		return err
	}
	_, err := req.Options.String("domain")
	return err
}

func (resolver) Resolve(_ context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	domain, err := req.Options.String("domain")
	if err != nil {
		return sdk.Identity{}, err
	}
	local, host, ok := strings.Cut(req.Profile.Email, "@")
	user := sdk.EntityRef{Kind: "user", Namespace: sdk.DefaultNamespace, Name: local}
	if !ok || !req.Profile.EmailVerified || !strings.EqualFold(host, domain) || user.Validate() != nil {
		return sdk.Identity{}, fmt.Errorf("no verified e-mail address at %s naming a user: %w", domain, sdk.ErrNotFound)
	}
	return sdk.Identity{UserEntityRef: user.String(), OwnershipEntityRefs: []string{user.String()}}, nil
}

// The compiler checks each capability: a method with a wrong signature does not build.
var (
	_ sdk.Resolver         = resolver{}
	_ sdk.OptionsValidator = resolver{}
)

var plugin = sdk.Plugin{Name: "email-domain", Version: "1.0.0", Resolver: resolver{}, OptionsValidator: resolver{}}

func main() { sdk.Serve(plugin) }
