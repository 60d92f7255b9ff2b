package mapping

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/plugintest"
)

func testConfig() sdk.Options {
	return sdk.Options{"mappings": map[string]any{"staff": staff(), "contractors": contractors()}}
}

// TestConformance runs the SDK's conformance suite against the plugin,
// through the real gRPC transport.
func TestConformance(t *testing.T) {
	failing := staff()
	failing["examples"] = []any{map[string]any{"name": "wrong", "claims": map[string]any{"email": "a@example.com", "groups": []any{"backstage-users"}},
		"expect": map[string]any{"userEntityRef": "user:default/b"}}}
	resolveReq := func(mapping string, claims sdk.Claims) sdk.ResolveRequest { return request(mapping, claims) }
	plugintest.Run(t, Plugin(), plugintest.Suite{
		Config: testConfig(),
		BadConfigs: []plugintest.BadConfig{
			{Name: "no mappings", Config: sdk.Options{"costLimit": 10}, Key: "mappings"},
			{Name: "expression does not compile", Config: sdk.Options{"mappings": map[string]any{"m": map[string]any{"userEntityRef": `"user:default/" + `}}}, Key: "mappings.m.userEntityRef"},
			{Name: "failing example", Config: sdk.Options{"mappings": map[string]any{"staff": failing}}, Key: "mappings.staff.examples[0]"},
		},
		BadOptions: []plugintest.BadOptions{
			{Name: "unknown mapping", Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: ResolverName, Options: sdk.Options{"mapping": "nobody"}}, Key: "mapping"},
			{Name: "mapping left out with two", Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: ResolverName, Options: sdk.Options{}}, Key: "mapping"},
			{Name: "unknown option", Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: ResolverName, Options: sdk.Options{"mapping": "staff", "mappings": "x"}}, Key: "mappings"},
		},
		Resolve: []plugintest.ResolveCase{
			{Name: "staff", Request: resolveReq("staff", sdk.Claims{"email": "alice@example.com", "groups": []any{"backstage-users", "platform"}}), Expect: plugintest.ExpectFound,
				Want: &sdk.Identity{UserEntityRef: "user:default/alice", OwnershipEntityRefs: []string{"user:default/alice", "group:default/platform"}}},
			{Name: "contractor", Request: resolveReq("contractors", sdk.Claims{"sub": "c-1"}), Expect: plugintest.ExpectFound,
				Want: &sdk.Identity{UserEntityRef: "user:contractors/c-1", OwnershipEntityRefs: []string{"user:contractors/c-1", "group:contractors/all"}}},
			{Name: "partner", Request: resolveReq("staff", sdk.Claims{"email": "eve@partner.example"}), Expect: plugintest.ExpectNotFound},
		},
	})
}

// TestThroughGRPC checks that refusals and failing examples reach the host
// with their kind, field or key, and message.
func TestThroughGRPC(t *testing.T) {
	c := plugintest.Start(t, Plugin())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	failing := staff()
	failing["examples"] = append(failing["examples"].([]any), map[string]any{"name": "dave", "claims": map[string]any{"email": "dave@example.com"}, "expect": map[string]any{"userEntityRef": "user:default/dave"}})
	err := c.Configure(ctx, sdk.Config{InstanceName: "claims", Values: sdk.Options{"mappings": map[string]any{"staff": failing}}})
	var ce *sdk.ConfigError
	if !errors.As(err, &ce) || ce.Key != "mappings.staff.examples[4]" || !strings.Contains(err.Error(), `example "dave" fails: got a refusal by the policy`) {
		t.Errorf("failing example over gRPC: got %v", err)
	}
	if err := c.Configure(ctx, sdk.Config{InstanceName: "claims", Values: testConfig()}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Resolve(ctx, request("staff", sdk.Claims{"email": "bob@example.com", "groups": []any{"platform"}}))
	var ie *sdk.InvalidInputError
	if !errors.As(err, &ie) || ie.Field != "Claims" || !strings.Contains(err.Error(), "refused by the mapping's policy") {
		t.Errorf("policy refusal over gRPC: got %v", err)
	}
}
