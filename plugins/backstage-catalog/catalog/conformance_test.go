package catalog

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/plugintest"
)

// TestConformance runs the SDK's conformance suite against the plugin,
// through the real gRPC transport, with a fake catalog behind it.
func TestConformance(t *testing.T) {
	fake := newFakeCatalog(t)
	fake.set(func(f *fakeCatalog) {
		f.hang = func(r *http.Request) bool { return strings.Contains(r.URL.RawQuery, "hang") }
	})
	cfg := sdk.Options{"baseUrl": fake.baseURL(), "token": testToken, "timeout": "5s", "cacheTTL": "1m"}
	found := func(name string, req sdk.ResolveRequest, want ...string) plugintest.ResolveCase {
		return plugintest.ResolveCase{Name: name, Request: req, Expect: plugintest.ExpectFound,
			Want: &sdk.Identity{UserEntityRef: want[0], OwnershipEntityRefs: want}}
	}
	notFound := func(name string, req sdk.ResolveRequest) plugintest.ResolveCase {
		return plugintest.ResolveCase{Name: name, Request: req, Expect: plugintest.ExpectNotFound}
	}
	allowed := sdk.Options{"allowedDomains": []any{"example.com", "spectro.example"}}
	plugintest.Run(t, Plugin(), plugintest.Suite{
		Config: cfg,
		BadConfigs: []plugintest.BadConfig{
			{Name: "no baseUrl", Config: sdk.Options{"token": "x"}, Key: "baseUrl"},
			{Name: "baseUrl not http", Config: sdk.Options{"baseUrl": "ftp://catalog.example.com"}, Key: "baseUrl"},
			{Name: "timeout not a duration", Config: sdk.Options{"baseUrl": fake.baseURL(), "timeout": "soon"}, Key: "timeout"},
			{Name: "cacheSize zero", Config: sdk.Options{"baseUrl": fake.baseURL(), "cacheSize": 0}, Key: "cacheSize"},
			{Name: "unknown key", Config: sdk.Options{"baseUrl": fake.baseURL(), "insecureSkipVerify": true}, Key: "insecureSkipVerify"},
		},
		BadOptions: []plugintest.BadOptions{
			{Name: "allowedDomains not a list", Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: ResolverLocalPart, Options: sdk.Options{"allowedDomains": "example.com"}}, Key: "allowedDomains"},
			{Name: "allowedDomains entry not a domain", Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: ResolverProfileEmail, Options: sdk.Options{"allowedDomains": []any{"example.com", "@example.org"}}}, Key: "allowedDomains[1]"},
			{Name: "dangerous not a boolean", Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: ResolverPreferredUsername, Options: sdk.Options{optDangerous: "yes"}}, Key: optDangerous},
			{Name: "annotation not a key", Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: ResolverAnnotation, Options: sdk.Options{"annotation": "a,b=c"}}, Key: "annotation"},
			{Name: "annotation on another resolver", Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: ResolverProfileEmail, Options: sdk.Options{"annotation": DefaultAnnotation}}, Key: "annotation"},
		},
		Resolve: []plugintest.ResolveCase{
			found("profile email", emailReq(ResolverProfileEmail, "JDoe@example.com", allowed), jdoe...),
			found("profile email with +tag", emailReq(ResolverProfileEmail, "tagged+x@example.com", nil), "user:default/tagged", "group:default/team-a"),
			notFound("profile email unknown", emailReq(ResolverProfileEmail, "nobody@example.com", allowed)),
			{Name: "profile email, catalog hangs", Request: emailReq(ResolverProfileEmail, "hang@example.com", nil), Expect: plugintest.ExpectBlock},
			found("local part", emailReq(ResolverLocalPart, "asmith@example.com", allowed), "user:default/asmith", "group:platform/sre"),
			notFound("local part unknown", emailReq(ResolverLocalPart, "nobody@example.com", nil)),
			found("annotation", emailReq(ResolverAnnotation, "jdoe@spectro.example", allowed), jdoe...),
			notFound("annotation unknown", emailReq(ResolverAnnotation, "nobody@spectro.example", nil)),
			{Name: "annotation, catalog hangs", Request: emailReq(ResolverAnnotation, "hang@spectro.example", nil), Expect: plugintest.ExpectBlock},
			found("preferred username", usernameReq("jdoe", nil), jdoe...),
			found("dangerous fallback", usernameReq("newbie", sdk.Options{optDangerous: true}), "user:default/newbie"),
			notFound("preferred username unknown", usernameReq("nobody", nil)),
		},
	})
}

// TestThroughGRPC checks, over the real transport, what the suite does not:
// that refusals, conflicts and catalog failures reach the host with their
// kind and message.
func TestThroughGRPC(t *testing.T) {
	fake := newFakeCatalog(t)
	c := plugintest.Start(t, Plugin())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Configure(ctx, sdk.Config{InstanceName: "grpc", Values: sdk.Options{"baseUrl": fake.baseURL(), "token": testToken}}); err != nil {
		t.Fatal(err)
	}
	req := emailReq(ResolverLocalPart, "jdoe@example.com", sdk.Options{"allowedDomains": []any{"other.example"}})
	_, err := c.Resolve(ctx, req)
	var ie *sdk.InvalidInputError
	if !errors.As(err, &ie) || ie.Field != "Profile.Email" || !strings.Contains(err.Error(), "sign-in refused") {
		t.Errorf("refused domain over gRPC: got %v (%T), want an *sdk.InvalidInputError on Profile.Email", err, err)
	}
	req = emailReq(ResolverProfileEmail, "jdoe@example.com", nil)
	req.Profile.EmailVerified = false
	if _, err := c.Resolve(ctx, req); !errors.As(err, &ie) || ie.Field != "Profile.EmailVerified" {
		t.Errorf("unverified e-mail over gRPC: got %v, want an *sdk.InvalidInputError on Profile.EmailVerified", err)
	}
	_, err = c.Resolve(ctx, emailReq(ResolverProfileEmail, "shared@example.com", nil))
	if err == nil || errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), "more than one User entity matches") {
		t.Errorf("conflict over gRPC: got %v", err)
	}
	var ce *sdk.ConfigError
	if err := c.ValidateOptions(ctx, sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: ResolverAnnotation, Options: sdk.Options{"anotation": "x"}}); !errors.As(err, &ce) || ce.Key != "anotation" {
		t.Errorf("misspelt option over gRPC: got %v, want a *sdk.ConfigError naming anotation", err)
	}
	fake.set(func(f *fakeCatalog) { f.status = http.StatusBadGateway })
	_, err = c.Resolve(ctx, usernameReq("asmith", nil))
	if err == nil || errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), "502 Bad Gateway") || !strings.Contains(err.Error(), ResolverPreferredUsername) {
		t.Errorf("catalog failure over gRPC: got %v", err)
	}
}
