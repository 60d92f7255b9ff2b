package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/pluginclient"
	"github.com/spectroauth/spectroauth/sdk/plugintest"
)

// scripted is a plugin whose answers the test sets per call.
type scripted struct {
	resolve    func(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error)
	credential func(ctx context.Context, req sdk.CredentialRequest) (sdk.Credential, error)
	clusters   func(ctx context.Context, req sdk.ListClustersRequest) ([]sdk.Cluster, error)
}

func (s *scripted) Resolvers() []string { return []string{"r"} }
func (s *scripted) Resolve(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	return s.resolve(ctx, req)
}
func (s *scripted) Strategies() []string { return []string{"s"} }
func (s *scripted) Credential(ctx context.Context, req sdk.CredentialRequest) (sdk.Credential, error) {
	return s.credential(ctx, req)
}
func (s *scripted) ListClusters(ctx context.Context, req sdk.ListClustersRequest) ([]sdk.Cluster, error) {
	return s.clusters(ctx, req)
}

var jdoe = sdk.Identity{UserEntityRef: "user:default/jdoe"}

func TestErrorsCrossTheWire(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		check func(t *testing.T, got error)
	}{
		{name: "not found", err: fmt.Errorf("no user with e-mail %q: %w", "a@b", sdk.ErrNotFound), check: func(t *testing.T, got error) {
			if !errors.Is(got, sdk.ErrNotFound) || got.Error() != `no user with e-mail "a@b": not found` {
				t.Errorf("got %q, want sdk.ErrNotFound with the plugin's message", got)
			}
		}},
		{name: "config error", err: sdk.ConfigErrorf("catalog.url", "must be https"), check: func(t *testing.T, got error) {
			var ce *sdk.ConfigError
			if !errors.As(got, &ce) || ce.Key != "catalog.url" || ce.Err.Error() != "must be https" || got.Error() != `config key "catalog.url": must be https` {
				t.Errorf("got %#v (%q), want the *sdk.ConfigError", got, got)
			}
		}},
		{name: "wrapped config error", err: fmt.Errorf("loading catalog: %w", sdk.ConfigErrorf("catalog.url", "must be https")), check: func(t *testing.T, got error) {
			var ce *sdk.ConfigError
			if !errors.As(got, &ce) || ce.Key != "catalog.url" || got.Error() != `loading catalog: config key "catalog.url": must be https` {
				t.Errorf("got %q, want the wrapped *sdk.ConfigError with its message", got)
			}
		}},
		{name: "invalid input", err: sdk.InvalidInputf("Profile.Email", "not an address"), check: func(t *testing.T, got error) {
			var ie *sdk.InvalidInputError
			if !errors.As(got, &ie) || ie.Field != "Profile.Email" {
				t.Errorf("got %#v, want the *sdk.InvalidInputError", got)
			}
		}},
		{name: "plain error", err: errors.New("catalog is down"), check: func(t *testing.T, got error) {
			if errors.Is(got, sdk.ErrNotFound) || !strings.Contains(got.Error(), "catalog is down") {
				t.Errorf("got %q, want a plain error with the plugin's message", got)
			}
		}},
	}
	p := &scripted{}
	c := plugintest.Start(t, sdk.Plugin{Name: "scripted", Impl: p})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.resolve = func(context.Context, sdk.ResolveRequest) (sdk.Identity, error) { return sdk.Identity{}, tt.err }
			_, err := c.Resolve(context.Background(), sdk.ResolveRequest{Resolver: "r"})
			if err == nil {
				t.Fatal("no error")
			}
			tt.check(t, err)
		})
	}
}

func TestDeadlineAndPanic(t *testing.T) {
	p := &scripted{}
	c := plugintest.Start(t, sdk.Plugin{Name: "scripted", Impl: p})
	stopped := make(chan error, 1)
	p.resolve = func(ctx context.Context, _ sdk.ResolveRequest) (sdk.Identity, error) {
		<-ctx.Done()
		stopped <- ctx.Err()
		return sdk.Identity{}, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Resolve(ctx, sdk.ResolveRequest{Resolver: "r"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Resolve past its deadline = %v, want context.DeadlineExceeded", err)
	}
	select {
	case err := <-stopped:
		if err == nil {
			t.Error("the plugin's context ended without an error")
		}
	case <-time.After(5 * time.Second):
		t.Error("the host's deadline did not reach the plugin's context")
	}

	p.resolve = func(context.Context, sdk.ResolveRequest) (sdk.Identity, error) { panic("boom") }
	if _, err := c.Resolve(context.Background(), sdk.ResolveRequest{Resolver: "r"}); err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("Resolve of a panicking plugin = %v, want a panic error", err)
	}
	p.resolve = func(context.Context, sdk.ResolveRequest) (sdk.Identity, error) { return jdoe, nil }
	if _, err := c.Resolve(context.Background(), sdk.ResolveRequest{Resolver: "r"}); err != nil {
		t.Errorf("the plugin did not survive its panic: %v", err)
	}
}

func TestRequestsAndResultsCrossTheWire(t *testing.T) {
	p := &scripted{}
	c := plugintest.Start(t, sdk.Plugin{Name: "scripted", Impl: p})
	ctx := context.Background()

	rreq := sdk.ResolveRequest{
		Resolver:          "r",
		Options:           sdk.Options{"group": "team-a", "n": 2, "nested": map[string]any{"list": []string{"x"}}},
		Claims:            sdk.Claims{"email": "a@b", "groups": []any{"g"}, "exp": 1700000000},
		Profile:           sdk.Profile{Email: "a@b", DisplayName: "A B", Picture: "https://p", EmailVerified: true},
		Subject:           "sub",
		Issuer:            "https://issuer",
		PreferredUsername: "ab",
		Groups:            []string{"g"},
	}
	var gotReq sdk.ResolveRequest
	p.resolve = func(_ context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
		gotReq = req
		return sdk.Identity{
			UserEntityRef:       "user:default/ab",
			OwnershipEntityRefs: []string{"user:default/ab", "group:default/team-a"},
			Extra:               map[string]any{"teams": []string{"team-a"}},
		}, nil
	}
	id, err := c.Resolve(ctx, rreq)
	if err != nil {
		t.Fatal(err)
	}
	// Over the wire numbers are float64 and lists are []any, as from JSON.
	wantReq := rreq
	wantReq.Options = sdk.Options{"group": "team-a", "n": float64(2), "nested": map[string]any{"list": []any{"x"}}}
	wantReq.Claims = sdk.Claims{"email": "a@b", "groups": []any{"g"}, "exp": float64(1700000000)}
	if !reflect.DeepEqual(gotReq, wantReq) {
		t.Errorf("plugin got %#v\nwant %#v", gotReq, wantReq)
	}
	if id.UserEntityRef != "user:default/ab" || len(id.OwnershipEntityRefs) != 2 || !reflect.DeepEqual(id.Extra, map[string]any{"teams": []any{"team-a"}}) {
		t.Errorf("identity = %#v", id)
	}

	exp := time.Now().Add(time.Hour).Truncate(time.Microsecond).UTC()
	creq := sdk.CredentialRequest{
		Strategy: "s",
		Cluster:  sdk.Cluster{Name: "dev", Server: "https://dev:6443", CAData: []byte("ca"), Labels: map[string]string{"a": "b"}, Title: "Dev"},
		Session: sdk.Session{
			UserEntityRef: "user:default/ab", Subject: "sub", IDToken: "id", IDTokenExpiresAt: exp,
			AccessToken: "at", PaletteSessionToken: "pst", Claims: sdk.Claims{"sub": "sub"},
		},
	}
	var gotCreq sdk.CredentialRequest
	p.credential = func(_ context.Context, req sdk.CredentialRequest) (sdk.Credential, error) {
		gotCreq = req
		return sdk.Credential{Token: "tok", ExpiresAt: exp}, nil
	}
	cred, err := c.Credential(ctx, creq)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotCreq, creq) {
		t.Errorf("plugin got %#v\nwant %#v", gotCreq, creq)
	}
	if cred.Token != "tok" || !cred.ExpiresAt.Equal(exp) {
		t.Errorf("credential = %v", cred)
	}

	want := []sdk.Cluster{
		{Name: "a", Server: "https://a:6443", Strategy: "s", Labels: map[string]string{"env": "dev"}, Annotations: map[string]string{"x": "y"}, Title: "A", Description: "the A"},
		{Name: "b", Server: "https://b"},
	}
	p.clusters = func(context.Context, sdk.ListClustersRequest) ([]sdk.Cluster, error) { return want, nil }
	got, err := c.ListClusters(ctx, sdk.ListClustersRequest{})
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ListClusters = %#v, %v; want %#v", got, err, want)
	}
}

func TestThePluginSideRefusesBadOutput(t *testing.T) {
	p := &scripted{}
	c := plugintest.Start(t, sdk.Plugin{Name: "scripted", Impl: p})
	ctx := context.Background()

	p.resolve = func(context.Context, sdk.ResolveRequest) (sdk.Identity, error) {
		return sdk.Identity{UserEntityRef: "jdoe"}, nil
	}
	if _, err := c.Resolve(ctx, sdk.ResolveRequest{Resolver: "r"}); err == nil || !strings.Contains(err.Error(), "plugin returned an invalid identity") {
		t.Errorf("Resolve of a bad ref = %v, want refused", err)
	}
	p.credential = func(context.Context, sdk.CredentialRequest) (sdk.Credential, error) { return sdk.Credential{}, nil }
	if _, err := c.Credential(ctx, sdk.CredentialRequest{Strategy: "s"}); err == nil || !strings.Contains(err.Error(), "invalid credential") {
		t.Errorf("Credential of an empty credential = %v, want refused", err)
	}
	p.clusters = func(context.Context, sdk.ListClustersRequest) ([]sdk.Cluster, error) {
		return []sdk.Cluster{{Name: "a", Server: "http://a"}}, nil
	}
	if _, err := c.ListClusters(ctx, sdk.ListClustersRequest{}); err == nil || !strings.Contains(err.Error(), "invalid cluster list") {
		t.Errorf("ListClusters of an http cluster = %v, want refused", err)
	}
	var ie *sdk.InvalidInputError
	if _, err := c.Resolve(ctx, sdk.ResolveRequest{Resolver: "nope"}); !errors.As(err, &ie) || ie.Field != "Resolver" {
		t.Errorf("Resolve of an unknown resolver = %v, want an *sdk.InvalidInputError for Resolver", err)
	}
	if _, err := c.Credential(ctx, sdk.CredentialRequest{Strategy: "nope"}); !errors.As(err, &ie) || ie.Field != "Strategy" {
		t.Errorf("Credential of an unknown strategy = %v, want an *sdk.InvalidInputError for Strategy", err)
	}
}

func TestMessageSizeLimit(t *testing.T) {
	p := &scripted{resolve: func(context.Context, sdk.ResolveRequest) (sdk.Identity, error) { return jdoe, nil }}
	c := plugintest.Start(t, sdk.Plugin{Name: "scripted", Impl: p})
	big := strings.Repeat("x", pluginclient.MaxMessageSize)
	if _, err := c.Resolve(context.Background(), sdk.ResolveRequest{Resolver: "r", Claims: sdk.Claims{"big": big}}); err == nil || !strings.Contains(err.Error(), "larger than max") {
		t.Errorf("Resolve of a %d-byte request = %v, want refused for its size", len(big), err)
	}
	if _, err := c.Resolve(context.Background(), sdk.ResolveRequest{Resolver: "r", Claims: sdk.Claims{"big": big[:pluginclient.MaxMessageSize/2]}}); err != nil {
		t.Errorf("Resolve of a 2 MiB request = %v, want success", err)
	}
}

type configurable struct {
	scripted
	got sdk.Config
}

func (c *configurable) Configure(_ context.Context, cfg sdk.Config) error {
	c.got = cfg
	_, err := cfg.Values.String("url")
	return err
}

func TestConfigure(t *testing.T) {
	ctx := context.Background()
	p := &configurable{}
	c := plugintest.Start(t, sdk.Plugin{Name: "configurable", Impl: p})
	var ce *sdk.ConfigError
	if err := c.Configure(ctx, sdk.Config{InstanceName: "mine"}); !errors.As(err, &ce) || ce.Key != "url" {
		t.Errorf("Configure without url = %v, want a *sdk.ConfigError for url", err)
	}
	if err := c.Configure(ctx, sdk.Config{InstanceName: "mine", Values: sdk.Options{"url": "https://x"}}); err != nil {
		t.Fatal(err)
	}
	if p.got.InstanceName != "mine" || p.got.Values["url"] != "https://x" {
		t.Errorf("plugin got %+v", p.got)
	}

	plain := plugintest.Start(t, sdk.Plugin{Name: "plain", Impl: &scripted{}})
	if err := plain.Configure(ctx, sdk.Config{}); err != nil {
		t.Errorf("empty Configure of a plugin without configuration = %v", err)
	}
	if err := plain.Configure(ctx, sdk.Config{Values: sdk.Options{"b": 1, "a": 2}}); !errors.As(err, &ce) || ce.Key != "a" || !strings.Contains(err.Error(), "takes no configuration") {
		t.Errorf("Configure of a plugin without configuration = %v, want a *sdk.ConfigError for a", err)
	}
	// It has no optional ValidateOptions: the client does not call it.
	if err := plain.ValidateOptions(ctx, sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: "r", Options: sdk.Options{"x": 1}}); err != nil {
		t.Errorf("ValidateOptions of a plugin that does not validate = %v, want nil", err)
	}
}

type validating struct {
	scripted
}

func (v *validating) ValidateOptions(_ context.Context, req sdk.ValidateOptionsRequest) error {
	return req.Options.RejectUnknown("group")
}

func TestValidateOptions(t *testing.T) {
	ctx := context.Background()
	c := plugintest.Start(t, sdk.Plugin{Name: "validating", Impl: &validating{}})
	if info, _ := c.Info(); !info.Has(sdk.CapabilityValidateOptions) {
		t.Fatalf("Info = %+v, want VALIDATE_OPTIONS", info)
	}
	var ie *sdk.InvalidInputError
	var ce *sdk.ConfigError
	tests := []struct {
		name  string
		req   sdk.ValidateOptionsRequest
		check func(error) bool
	}{
		{"good", sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: "r", Options: sdk.Options{"group": "a"}}, func(err error) bool { return err == nil }},
		{"source", sdk.ValidateOptionsRequest{Role: sdk.CapabilityClusterSource}, func(err error) bool { return err == nil }},
		{"bad key", sdk.ValidateOptionsRequest{Role: sdk.CapabilityClusterStrategy, Name: "s", Options: sdk.Options{"grp": "a"}}, func(err error) bool { return errors.As(err, &ce) && ce.Key == "grp" }},
		{"unknown name", sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: "nope"}, func(err error) bool { return errors.As(err, &ie) && ie.Field == "Name" }},
		{"not a role", sdk.ValidateOptionsRequest{Role: sdk.CapabilityConfigure}, func(err error) bool { return errors.As(err, &ie) && ie.Field == "Role" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.ValidateOptions(ctx, tt.req); !tt.check(err) {
				t.Errorf("ValidateOptions = %v", err)
			}
		})
	}
}

// slowConfig is a Configurer whose configuration waits on a slow upstream.
type slowConfig struct{ scripted }

func (*slowConfig) Configure(ctx context.Context, _ sdk.Config) error {
	<-ctx.Done()
	return fmt.Errorf("fetching the keys: %w", ctx.Err())
}

// TestMethodsStopBeforeTheHostsDeadline: a method runs with a deadline a
// margin (a tenth of the time left, at most 250ms) before the host's; a
// method that waits for its context, as for a slow upstream, returns in
// time for its answer, DEADLINE_EXCEEDED saying that the plugin's own work
// ran out of time, to reach the host before the host's deadline.
func TestMethodsStopBeforeTheHostsDeadline(t *testing.T) {
	const timeout = time.Second
	p := &scripted{}
	c := plugintest.Start(t, sdk.Plugin{Name: "scripted", Impl: p})
	owns := make(chan time.Time, 1) // the method's deadline
	upstream := func(ctx context.Context) error {
		own, _ := ctx.Deadline()
		owns <- own
		<-ctx.Done()
		return fmt.Errorf("catalog did not answer: %w", ctx.Err())
	}
	p.resolve = func(ctx context.Context, _ sdk.ResolveRequest) (sdk.Identity, error) {
		return sdk.Identity{}, upstream(ctx)
	}
	p.credential = func(ctx context.Context, _ sdk.CredentialRequest) (sdk.Credential, error) {
		return sdk.Credential{}, upstream(ctx)
	}
	p.clusters = func(ctx context.Context, _ sdk.ListClustersRequest) ([]sdk.Cluster, error) {
		return nil, upstream(ctx)
	}
	calls := map[string]func(context.Context) error{
		"Resolve": func(ctx context.Context) error {
			_, err := c.Resolve(ctx, sdk.ResolveRequest{Resolver: "r"})
			return err
		},
		"Credential": func(ctx context.Context) error {
			_, err := c.Credential(ctx, sdk.CredentialRequest{Strategy: "s"})
			return err
		},
		"ListClusters": func(ctx context.Context) error {
			_, err := c.ListClusters(ctx, sdk.ListClustersRequest{})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			host, _ := ctx.Deadline()
			err := call(ctx)
			if ctx.Err() != nil {
				t.Fatalf("the answer came after the host's deadline: %v", err)
			}
			// The margin is a tenth of what was left when the call
			// arrived; the method's deadline is that much before the
			// plugin's copy of the host's deadline, which is the host's
			// plus the time the call took to get there.
			own := <-owns
			if d := host.Sub(own); d <= 50*time.Millisecond || d > 100*time.Millisecond {
				t.Errorf("the method's deadline is %s before the host's, want about 100ms", d)
			}
			const want = "plugin call: the plugin's own work ran out of time: catalog did not answer: context deadline exceeded"
			if !errors.Is(err, context.DeadlineExceeded) || err.Error() != want {
				t.Errorf("error = %q, want %q matching context.DeadlineExceeded", err, want)
			}
		})
	}

	// A method that answers after its own deadline, but before the host's,
	// has answered.
	p.resolve = func(ctx context.Context, _ sdk.ResolveRequest) (sdk.Identity, error) {
		<-ctx.Done()
		return jdoe, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if id, err := c.Resolve(ctx, sdk.ResolveRequest{Resolver: "r"}); err != nil || id.UserEntityRef != jdoe.UserEntityRef {
		t.Errorf("Resolve answering after its own deadline = %+v, %v", id, err)
	}

	// Without a deadline from the host, the method has none.
	p.resolve = func(ctx context.Context, _ sdk.ResolveRequest) (sdk.Identity, error) {
		if dl, ok := ctx.Deadline(); ok {
			return sdk.Identity{}, fmt.Errorf("a deadline in %s", time.Until(dl))
		}
		return jdoe, nil
	}
	if _, err := c.Resolve(context.Background(), sdk.ResolveRequest{Resolver: "r"}); err != nil {
		t.Errorf("Resolve without a deadline: %v", err)
	}

	// Configure too.
	sc := plugintest.Start(t, sdk.Plugin{Name: "slow-config", Impl: &slowConfig{}})
	ctx, cancel = context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := sc.Configure(ctx, sdk.Config{InstanceName: "slow"})
	if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "the plugin's own work ran out of time: fetching the keys: context deadline exceeded") {
		t.Errorf("Configure waiting on its context = %v (host's context: %v)", err, ctx.Err())
	}
}
