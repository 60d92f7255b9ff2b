package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/plugintest"
)

var opts = sdk.Options{"domain": "example.com"}

func verified(email string) sdk.ResolveRequest {
	return sdk.ResolveRequest{
		Resolver: "emailDomainToUser",
		Options:  opts,
		Profile:  sdk.Profile{Email: email, EmailVerified: true},
	}
}

// TestConformance runs the suite every spectroauth plugin must pass.
func TestConformance(t *testing.T) {
	unverified := verified("jdoe@example.com")
	unverified.Profile.EmailVerified = false
	plugintest.Run(t, plugin, plugintest.Suite{
		BadOptions: []plugintest.BadOptions{
			{Name: "missing", Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: "emailDomainToUser", Options: sdk.Options{}}, Key: "domain"},
			{Name: "not a string", Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: "emailDomainToUser", Options: sdk.Options{"domain": 42.0}}, Key: "domain"},
			{Name: "misspelt", Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: "emailDomainToUser", Options: sdk.Options{"domain": "example.com", "domian": "x"}}, Key: "domian"},
		},
		Resolve: []plugintest.ResolveCase{
			{Name: "at the domain", Request: verified("jdoe@example.com"), Want: &sdk.Identity{
				UserEntityRef:       "user:default/jdoe",
				OwnershipEntityRefs: []string{"user:default/jdoe"},
			}},
			{Name: "other domain", Request: verified("jdoe@example.org"), Expect: plugintest.ExpectNotFound},
			{Name: "unverified", Request: unverified, Expect: plugintest.ExpectNotFound},
		},
	})
}

// TestResolve checks the mapping case by case, through the real gRPC path.
func TestResolve(t *testing.T) {
	c := plugintest.Start(t, plugin)
	for _, tc := range []struct {
		name  string
		req   sdk.ResolveRequest
		want  string // the user entity ref; empty for not found
		isErr func(error) bool
	}{
		{name: "local part", req: verified("jdoe@example.com"), want: "user:default/jdoe"},
		{name: "dots and dashes kept", req: verified("j.doe-x@example.com"), want: "user:default/j.doe-x"},
		{name: "case of the name kept", req: verified("JDoe@example.com"), want: "user:default/JDoe"},
		{name: "domain in any case", req: verified("jdoe@EXAMPLE.com"), want: "user:default/jdoe"},
		{name: "subdomain", req: verified("jdoe@mail.example.com")},
		{name: "other domain", req: verified("jdoe@example.org")},
		{name: "domain as a suffix", req: verified("jdoe@badexample.com")},
		{name: "no e-mail", req: verified("")},
		{name: "no at sign", req: verified("jdoe")},
		{name: "two at signs", req: verified("jdoe@evil.org@example.com")},
		{name: "empty local part", req: verified("@example.com")},
		{name: "not a Backstage name", req: verified("j+doe@example.com")},
		{name: "unverified", req: func() sdk.ResolveRequest {
			r := verified("jdoe@example.com")
			r.Profile.EmailVerified = false
			return r
		}()},
		{name: "no domain option", req: func() sdk.ResolveRequest {
			r := verified("jdoe@example.com")
			r.Options = nil
			return r
		}(), isErr: isConfigError("domain")},
		{name: "unknown resolver", req: func() sdk.ResolveRequest {
			r := verified("jdoe@example.com")
			r.Resolver = "other"
			return r
		}(), isErr: isInputError("Resolver")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			id, err := c.Resolve(ctx, tc.req)
			switch {
			case tc.isErr != nil:
				if !tc.isErr(err) {
					t.Fatalf("Resolve = %+v, %v; want another error", id, err)
				}
			case tc.want == "":
				if !errors.Is(err, sdk.ErrNotFound) {
					t.Fatalf("Resolve = %+v, %v; want sdk.ErrNotFound", id, err)
				}
			case err != nil:
				t.Fatalf("Resolve: %v", err)
			case id.UserEntityRef != tc.want || len(id.OwnershipEntityRefs) != 1 || id.OwnershipEntityRefs[0] != tc.want:
				t.Fatalf("Resolve = %+v; want user and owner %s", id, tc.want)
			}
		})
	}
}

func isConfigError(key string) func(error) bool {
	return func(err error) bool {
		var ce *sdk.ConfigError
		return errors.As(err, &ce) && ce.Key == key
	}
}

func isInputError(field string) func(error) bool {
	return func(err error) bool {
		var ie *sdk.InvalidInputError
		return errors.As(err, &ie) && ie.Field == field
	}
}
