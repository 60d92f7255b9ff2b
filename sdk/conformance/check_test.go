package conformance_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/conformance"
)

// byLocalPart resolves user:default/<local part> of any address at
// example.com; others are not found.
type byLocalPart struct{}

var _ sdk.Resolver = byLocalPart{}

func (byLocalPart) Resolvers() []string { return []string{"localPart"} }

func (byLocalPart) Resolve(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	if err := ctx.Err(); err != nil {
		return sdk.Identity{}, err
	}
	local, domain, ok := strings.Cut(req.Profile.Email, "@")
	if !ok || domain != "example.com" {
		return sdk.Identity{}, sdk.ErrNotFound
	}
	ref, err := sdk.ParseEntityRefDefaults(local, "user", sdk.DefaultNamespace)
	if err != nil {
		return sdk.Identity{}, &sdk.InvalidInputError{Field: "Profile.Email", Err: err}
	}
	return sdk.Identity{UserEntityRef: ref.String(), OwnershipEntityRefs: []string{ref.String()}}, nil
}

// serveEnv makes the test binary serve byLocalPart as a plugin binary.
const serveEnv = "CONFORMANCE_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) != "" {
		sdk.Serve(sdk.Plugin{Name: "by-local-part", Version: "1.0.0", Resolver: byLocalPart{}})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestCheckBinary runs the suite outside a Go test's own checks, as
// `spectroauthd plugin test` does, against this test binary serving a
// plugin: complete cases pass, missing ones fail, each failure written out.
func TestCheckBinary(t *testing.T) {
	t.Setenv(serveEnv, "1")
	req := func(email string) sdk.ResolveRequest {
		return sdk.ResolveRequest{Resolver: "localPart", Profile: sdk.Profile{Email: email, EmailVerified: true}}
	}
	found := conformance.ResolveCase{Name: "known", Request: req("jdoe@example.com"),
		Want: &sdk.Identity{UserEntityRef: "user:default/jdoe", OwnershipEntityRefs: []string{"user:default/jdoe"}}}
	notFound := conformance.ResolveCase{Name: "elsewhere", Request: req("jdoe@elsewhere.example"), Expect: conformance.ExpectNotFound}
	for _, tc := range []struct {
		name   string
		suite  conformance.Suite
		failed bool
		out    string
	}{
		{name: "complete", suite: conformance.Suite{Resolve: []conformance.ResolveCase{found, notFound}}},
		{name: "no not-found case", suite: conformance.Suite{Resolve: []conformance.ResolveCase{found}}, failed: true,
			out: `FAIL conformance/Resolve/Coverage` + "\n" + `    Suite.Resolve has no case of resolver "localPart" with Expect not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			res := conformance.CheckBinary(&out, os.Args[0], tc.suite)
			if res.Passed == 0 || (res.Failed > 0) != tc.failed || !strings.Contains(out.String(), tc.out) {
				t.Errorf("CheckBinary = %v, output:\n%s\nwant failed=%v and %q in it", res, out.String(), tc.failed, tc.out)
			}
			if !tc.failed && out.Len() != 0 {
				t.Errorf("CheckBinary wrote %q for a passing plugin", out.String())
			}
		})
	}
	var out bytes.Buffer
	if res := conformance.CheckBinary(&out, "/nonexistent/plugin", conformance.Suite{}); res.Failed != 1 || res.Passed != 0 {
		t.Errorf("CheckBinary of a missing binary = %v, want 0 passed, 1 failed; output:\n%s", res, out.String())
	}
}
