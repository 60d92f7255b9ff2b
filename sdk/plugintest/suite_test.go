package plugintest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/plugintest"
)

// sampleSuite is the conformance suite of the sample plugin.
func sampleSuite() plugintest.Suite {
	profile := func(email string) sdk.ResolveRequest {
		return sdk.ResolveRequest{
			Profile: sdk.Profile{Email: email, EmailVerified: true},
			Claims:  sdk.Claims{"email": email, "sub": "u1"},
			Subject: "u1",
		}
	}
	with := func(req sdk.ResolveRequest, resolver string, opts sdk.Options) sdk.ResolveRequest {
		req.Resolver, req.Options = resolver, opts
		return req
	}
	session := sdk.Session{
		UserEntityRef:    "user:default/jdoe",
		IDToken:          "header.payload.signature",
		IDTokenExpiresAt: time.Now().Add(time.Hour),
	}
	cluster := sdk.Cluster{Name: "dev", Server: "https://dev.example.com:6443"}
	return plugintest.Suite{
		Config: sdk.Options{"domain": "example.com", "users": map[string]any{"ann@corp.example": "ann"}},
		BadConfigs: []plugintest.BadConfig{
			{Config: sdk.Options{}, Key: "domain"},
			{Config: sdk.Options{"domain": 42}, Key: "domain"},
			{Config: sdk.Options{"domain": "example.com", "user": map[string]any{}}, Key: "user"},
			{Config: sdk.Options{"domain": "example.com", "users": map[string]any{"x@y": "not a name"}}, Key: "users.x@y"},
		},
		BadOptions: []plugintest.BadOptions{
			{Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: "staticUsers", Options: sdk.Options{"grop": "x"}}, Key: "grop"},
			{Request: sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: "staticUsers", Options: sdk.Options{"group": true}}, Key: "group"},
		},
		Resolve: []plugintest.ResolveCase{
			{
				Name:    "local part",
				Request: with(profile("JDoe@example.com"), "emailLocalPart", sdk.Options{"group": "team-a"}),
				Want:    &sdk.Identity{UserEntityRef: "user:default/jdoe", OwnershipEntityRefs: []string{"group:default/team-a", "user:default/jdoe"}},
			},
			{Name: "other domain", Request: with(profile("jdoe@elsewhere.example"), "emailLocalPart", nil), Expect: plugintest.ExpectNotFound},
			{Name: "static", Request: with(profile("ann@corp.example"), "staticUsers", nil), Want: &sdk.Identity{UserEntityRef: "user:default/ann", OwnershipEntityRefs: []string{"user:default/ann"}}},
			{Name: "static unknown", Request: with(profile("bob@corp.example"), "staticUsers", nil), Expect: plugintest.ExpectNotFound},
			{Name: "upstream hangs", Request: with(profile("jdoe@example.com"), "emailLocalPart", sdk.Options{"block": true}), Expect: plugintest.ExpectBlock},
		},
		Credential: []plugintest.CredentialCase{{
			Name:    "id token",
			Request: sdk.CredentialRequest{Strategy: "idToken", Cluster: cluster, Session: session},
			Check: func(t plugintest.T, got sdk.Credential) {
				if got.Token != session.IDToken || !got.ExpiresAt.Equal(session.IDTokenExpiresAt) {
					t.Errorf("credential = %v, want the session's ID token", got)
				}
			},
		}},
		ListClusters: []plugintest.ListClustersCase{
			{Name: "static", Check: func(t plugintest.T, got []sdk.Cluster) {
				if len(got) != 1 || got[0].Name != "dev" || got[0].Labels["env"] != "dev" {
					t.Errorf("clusters = %+v, want dev", got)
				}
			}},
			{Name: "upstream hangs", Request: sdk.ListClustersRequest{Options: sdk.Options{"block": true}}, Expect: plugintest.ExpectBlock},
		},
	}
}

// samplePlugin is the sample plugin; its strategy idToken declares the one
// token it uses, and the suite passes it only that one, as the daemon does.
var samplePlugin = sdk.Plugin{Name: "sample", Version: "1.0.0", Impl: &sample{},
	StrategyTokens: map[string][]sdk.Token{"idToken": {sdk.TokenID}}}

// serveEnv makes the test binary serve, as a plugin binary, the sample or
// the broken plugin its value names.
const serveEnv = "PLUGINTEST_SERVE"

func TestMain(m *testing.M) {
	switch name := os.Getenv(serveEnv); name {
	case "":
		os.Exit(m.Run())
	case "sample":
		sdk.Serve(samplePlugin)
	default:
		sdk.Serve(brokenPlugins[name].plugin())
	}
	os.Exit(0)
}

// TestRunBinarySample runs the suite against a plugin binary (this test
// binary, serving the sample): every check over the wire.
func TestRunBinarySample(t *testing.T) {
	t.Setenv(serveEnv, "sample")
	plugintest.RunBinary(t, os.Args[0], sampleSuite())
}

func TestRunSample(t *testing.T) {
	plugintest.Run(t, samplePlugin, sampleSuite())
}

func TestStartServesThroughGRPC(t *testing.T) {
	c := plugintest.Start(t, samplePlugin)
	ctx := context.Background()
	req := sdk.ResolveRequest{Resolver: "emailLocalPart", Profile: sdk.Profile{Email: "jdoe@example.com"}}

	// The SDK holds calls back until Configure succeeds.
	if _, err := c.Resolve(ctx, req); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("Resolve before Configure = %v, want a not-configured error", err)
	}
	if err := c.Configure(ctx, sdk.Config{Values: sdk.Options{"domain": "example.com"}}); err != nil {
		t.Fatal(err)
	}
	id, err := c.Resolve(ctx, req)
	if err != nil || id.UserEntityRef != "user:default/jdoe" {
		t.Fatalf("Resolve = %+v, %v", id, err)
	}
	// A failed Configure puts the plugin back in the unconfigured state.
	if err := c.Configure(ctx, sdk.Config{}); err == nil {
		t.Fatal("Configure without domain succeeded")
	}
	if _, err := c.Resolve(ctx, req); err == nil {
		t.Fatal("Resolve after a failed Configure succeeded")
	}
}

// brokenPlugins are the sample with one conformance bug each, and a piece of
// what the suite must report about it.
var brokenPlugins = map[string]brokenPlugin{
	"uses a token it does not declare": {
		impl:       &sample{},
		undeclared: true,
		want:       "got error invalid input Session.IDToken: is empty, want success",
	},
	"plain error for unknown user": {
		impl: &plainNotFound{&sample{}},
		want: "want an error wrapping sdk.ErrNotFound",
	},
	"ignores its deadline": {
		impl: &ignoresDeadline{&sample{}},
		edit: func(s *plugintest.Suite) { s.Grace = 300 * time.Millisecond },
		want: "did not return within",
	},
	"config error without key": {
		impl: &keylessConfigError{&sample{}},
		want: "want a *sdk.ConfigError naming key",
	},
	"non-canonical ref": {
		impl: &upperCaseKind{&sample{}},
		want: "plugin returned an invalid identity",
	},
	"generic error on huge input": {
		impl: &chokesOnHugeInput{&sample{}},
		want: "want a valid result, sdk.ErrNotFound or an *sdk.InvalidInputError",
	},
	"missing not-found case": {
		impl: &sample{},
		edit: func(s *plugintest.Suite) {
			s.Resolve = []plugintest.ResolveCase{s.Resolve[0], s.Resolve[2], s.Resolve[3]}
		},
		want: `has no case of resolver "emailLocalPart" with Expect not found`,
	},
	"no bad config": {
		impl: &sample{},
		edit: func(s *plugintest.Suite) { s.BadConfigs = nil },
		want: "Suite.BadConfigs is empty",
	},
	"ValidateOptions with a wrong signature": {
		impl: &wrongValidateOptions{&sample{}},
		want: "but sdk.OptionsValidator needs ValidateOptions(context.Context, sdk.ValidateOptionsRequest) error",
	},
	"bad options but no validator": {
		impl: noValidator{Resolver: &sample{}, Configurer: &sample{}},
		want: `Suite.BadOptions has cases but plugin "broken" has no sdk.OptionsValidator`,
	},
	"no bad options": {
		impl: &sample{},
		edit: func(s *plugintest.Suite) { s.BadOptions = nil },
		want: "Suite.BadOptions is empty",
	},
}

type brokenPlugin struct {
	impl       any
	edit       func(*plugintest.Suite)
	undeclared bool // the strategy does not declare the token it uses
	want       string
}

func (b brokenPlugin) plugin() sdk.Plugin {
	p := sdk.Plugin{Name: "broken", Impl: b.impl, StrategyTokens: samplePlugin.StrategyTokens}
	if b.undeclared {
		p.StrategyTokens = nil
	}
	return p
}

// wrongValidateOptions shadows the sample's ValidateOptions with one of
// another signature: no sdk.OptionsValidator any more.
type wrongValidateOptions struct{ *sample }

func (p *wrongValidateOptions) ValidateOptions(_ context.Context, opts sdk.Options) error {
	return opts.RejectUnknown("domain")
}

// noValidator resolves and takes a configuration, and validates no options.
type noValidator struct {
	sdk.Resolver
	sdk.Configurer
}

type plainNotFound struct{ *sample }

func (p *plainNotFound) Resolve(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	id, err := p.sample.Resolve(ctx, req)
	if errors.Is(err, sdk.ErrNotFound) {
		return id, errors.New("no such user")
	}
	return id, err
}

type ignoresDeadline struct{ *sample }

func (p *ignoresDeadline) Resolve(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	if block, _ := req.Options.Bool("block", false); block {
		time.Sleep(2 * time.Second)
		return sdk.Identity{}, errors.New("upstream timed out")
	}
	return p.sample.Resolve(ctx, req)
}

type keylessConfigError struct{ *sample }

func (p *keylessConfigError) Configure(ctx context.Context, cfg sdk.Config) error {
	if err := p.sample.Configure(ctx, cfg); err != nil {
		return errors.New("bad configuration")
	}
	return nil
}

type upperCaseKind struct{ *sample }

func (p *upperCaseKind) Resolve(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	id, err := p.sample.Resolve(ctx, req)
	id.UserEntityRef = strings.Replace(id.UserEntityRef, "user:", "User:", 1)
	return id, err
}

type chokesOnHugeInput struct{ *sample }

func (p *chokesOnHugeInput) Resolve(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	if len(req.Subject) > 1000 {
		return sdk.Identity{}, errors.New("upstream said 414 URI Too Long")
	}
	return p.sample.Resolve(ctx, req)
}

const brokenEnv = "PLUGINTEST_BROKEN_PLUGIN"

// binarySuffix, at the end of a broken plugin's name, runs it as a binary.
const binarySuffix = " (binary)"

// TestRunBrokenHelper runs the suite on one broken plugin, when re-executed
// by TestRunCatchesBrokenPlugins.
func TestRunBrokenHelper(t *testing.T) {
	name := os.Getenv(brokenEnv)
	if name == "" {
		t.Skip("helper for TestRunCatchesBrokenPlugins")
	}
	b := brokenPlugins[strings.TrimSuffix(name, binarySuffix)]
	s := sampleSuite()
	if b.edit != nil {
		b.edit(&s)
	}
	if strings.HasSuffix(name, binarySuffix) {
		t.Setenv(serveEnv, strings.TrimSuffix(name, binarySuffix))
		plugintest.RunBinary(t, os.Args[0], s)
		return
	}
	plugintest.Run(t, b.plugin(), s)
}

// TestRunCatchesBrokenPlugins checks that the suite fails each broken plugin
// for the right reason. A failing suite fails its test, so each runs in a
// child test process.
func TestRunCatchesBrokenPlugins(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child test processes")
	}
	runs := map[string]string{}
	for name, b := range brokenPlugins {
		runs[name] = b.want
	}
	// The same bugs, found over the wire in a plugin binary. (One that
	// ignores its deadline is not among them: over the wire the SDK answers
	// for it in time.)
	for _, name := range []string{"plain error for unknown user", "config error without key", "missing not-found case", "uses a token it does not declare"} {
		runs[name+binarySuffix] = brokenPlugins[name].want
	}
	for name, want := range runs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestRunBrokenHelper$", "-test.v")
			cmd.Env = append(os.Environ(), brokenEnv+"="+name)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a plugin that is broken (%s):\n%s", name, out)
			}
			if !strings.Contains(string(out), want) {
				t.Errorf("the suite failed, but its output lacks %q:\n%s", want, out)
			}
		})
	}
}
