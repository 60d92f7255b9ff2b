// Package plugintest runs a spectroauth plugin inside a Go test, through the
// same gRPC transport the daemon uses, and checks it against the conformance
// suite every plugin must pass.
//
//	func TestConformance(t *testing.T) {
//		plugintest.Run(t, sdk.Plugin{Name: "example", Resolver: &resolver{}}, plugintest.Suite{
//			Config:     sdk.Options{"domain": "example.com"},
//			BadConfigs: []plugintest.BadConfig{{Config: sdk.Options{"domain": 42}, Key: "domain"}},
//			Resolve: []plugintest.ResolveCase{
//				{Name: "known", Request: ..., Want: &sdk.Identity{...}},
//				{Name: "unknown", Request: ..., Expect: plugintest.ExpectNotFound},
//			},
//		})
//	}
//
// RunBinary runs the same suite against a built plugin binary, in any
// language. Start and StartBinary give a test a host-side client of the
// plugin for its own checks.
//
// The suite itself is package sdk/conformance, which runs outside Go tests
// too (`spectroauthd plugin test`); this package runs it in subtests of a
// *testing.T, and names its types so that a test needs only this package.
package plugintest

import (
	"testing"

	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/conformance"
	"github.com/spectroauth/spectroauth/sdk/pluginclient"
)

// The suite's types; see package sdk/conformance.
type (
	// Suite describes a plugin to the conformance suite.
	Suite = conformance.Suite
	// BadConfig is a configuration Configure must refuse.
	BadConfig = conformance.BadConfig
	// BadOptions are options ValidateOptions must refuse.
	BadOptions = conformance.BadOptions
	// Expect is the outcome a case must have.
	Expect = conformance.Expect
	// ResolveCase is a request to a resolver and its expected outcome.
	ResolveCase = conformance.ResolveCase
	// CredentialCase is a request to a strategy and its expected outcome.
	CredentialCase = conformance.CredentialCase
	// ListClustersCase is a request to a cluster source and its expected
	// outcome.
	ListClustersCase = conformance.ListClustersCase
	// T is what the Check functions of cases get; a testing.TB is one.
	T = conformance.T
)

// The outcomes of a case; see conformance.Expect.
const (
	// ExpectFound: the call succeeds, with a valid result.
	ExpectFound = conformance.ExpectFound
	// ExpectNotFound: the call fails with an error wrapping sdk.ErrNotFound.
	ExpectNotFound = conformance.ExpectNotFound
	// ExpectBlock: the call waits until its context is done; a short
	// deadline must stop it.
	ExpectBlock = conformance.ExpectBlock
)

// Run checks p, served in this process, against the conformance suite, in
// subtests of t; see conformance.Run for the checks.
func Run(t *testing.T, p sdk.Plugin, s Suite) {
	t.Helper()
	conformance.Run(goT{t}, p, s)
}

// RunBinary checks the plugin binary at path, written in any language,
// against the same suite as Run, every check over the wire; see
// conformance.RunBinary.
func RunBinary(t *testing.T, path string, s Suite, args ...string) {
	t.Helper()
	conformance.RunBinary(goT{t}, path, s, args...)
}

// Start serves p in this process through go-plugin's gRPC transport and
// returns a client of it, as the daemon has one, already described but not
// configured; it stops when the test ends. See conformance.Start.
func Start(t testing.TB, p sdk.Plugin) *pluginclient.Client {
	t.Helper()
	return conformance.Start(t, p)
}

// StartBinary starts the plugin binary at path, in any language, as the
// daemon starts a plugin, and returns a client of it, already described but
// not configured; it is killed when the test ends. See
// conformance.StartBinary.
func StartBinary(t testing.TB, path string, args ...string) *pluginclient.Client {
	t.Helper()
	return conformance.StartBinary(t, path, args...)
}

// goT is a *testing.T as a conformance.Tester: its checks are subtests.
type goT struct{ *testing.T }

func (g goT) Run(name string, f func(conformance.Tester)) bool {
	return g.T.Run(name, func(t *testing.T) { f(goT{t}) })
}
