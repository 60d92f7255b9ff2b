package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/pluginclient"
)

// Suite describes a plugin to the conformance suite: configurations, and
// requests with the outcome each must have. What it must hold depends on the
// roles the plugin has; Run reports what is missing.
type Suite struct {
	// Config is a configuration Configure must accept; the other checks run
	// with it applied. Leave it empty for a plugin that is not a
	// sdk.Configurer.
	Config sdk.Options
	// BadConfigs are configurations Configure must refuse, naming the
	// offending key. A sdk.Configurer needs at least one.
	BadConfigs []BadConfig
	// BadOptions are options ValidateOptions must refuse, naming the
	// offending key. A sdk.OptionsValidator needs at least one.
	BadOptions []BadOptions

	// Resolve are the cases of a sdk.Resolver: for every resolver it offers,
	// at least one ExpectFound and one ExpectNotFound case.
	Resolve []ResolveCase
	// Credential are the cases of a sdk.ClusterStrategy: for every strategy
	// it offers, at least one ExpectFound case. A case's Session reaches the
	// strategy as the daemon passes it: with only the tokens the strategy
	// declares (sdk.Plugin.StrategyTokens).
	Credential []CredentialCase
	// ListClusters are the cases of a sdk.ClusterSource: at least one
	// ExpectFound case.
	ListClusters []ListClustersCase

	// Grace is how long a call may go on once its context is done; 2s when
	// zero.
	Grace time.Duration
	// CallTimeout bounds every call that should succeed; 30s when zero.
	CallTimeout time.Duration
}

// BadConfig is a configuration Configure must refuse.
type BadConfig struct {
	// Name names the case; Key when empty.
	Name string
	// Config is the configuration.
	Config sdk.Options
	// Key is the dotted key path the *sdk.ConfigError must name.
	Key string
}

// BadOptions are options ValidateOptions must refuse.
type BadOptions struct {
	// Name names the case; Key when empty.
	Name string
	// Request holds the role, name and options.
	Request sdk.ValidateOptionsRequest
	// Key is the dotted key path the *sdk.ConfigError must name.
	Key string
}

// Expect is the outcome a case must have.
type Expect int

const (
	// ExpectFound: the call succeeds, with a valid result.
	ExpectFound Expect = iota
	// ExpectNotFound: the call fails with an error wrapping sdk.ErrNotFound.
	ExpectNotFound
	// ExpectBlock: the call waits on something that never answers (an
	// upstream test server that hangs, say) until its context is done. The
	// suite checks that a short deadline stops it and that the error says
	// so (errors.Is(err, context.DeadlineExceeded)).
	ExpectBlock
)

// String names the outcome, for messages.
func (e Expect) String() string {
	switch e {
	case ExpectFound:
		return "found"
	case ExpectNotFound:
		return "not found"
	case ExpectBlock:
		return "block"
	}
	return fmt.Sprintf("Expect(%d)", int(e))
}

// UnmarshalText reads an outcome from its name: "found", "notFound" (or
// "not found") or "block", for cases written in a file.
func (e *Expect) UnmarshalText(b []byte) error {
	switch strings.ReplaceAll(strings.ToLower(string(b)), " ", "") {
	case "found":
		*e = ExpectFound
	case "notfound":
		*e = ExpectNotFound
	case "block":
		*e = ExpectBlock
	default:
		return fmt.Errorf("unknown outcome %q: want found, notFound or block", b)
	}
	return nil
}

// ResolveCase is a request to a resolver and its expected outcome.
type ResolveCase struct {
	// Name names the case.
	Name string
	// Request is the request; Request.Resolver picks the resolver.
	Request sdk.ResolveRequest
	// Expect is the outcome.
	Expect Expect
	// Want, when set for ExpectFound, is the identity the call must return
	// (ownership refs in any order).
	Want *sdk.Identity
}

// CredentialCase is a request to a strategy and its expected outcome.
type CredentialCase struct {
	// Name names the case.
	Name string
	// Request is the request; Request.Strategy picks the strategy.
	Request sdk.CredentialRequest
	// Expect is the outcome.
	Expect Expect
	// Check, when set for ExpectFound, checks the credential further.
	Check func(t T, got sdk.Credential)
}

// ListClustersCase is a request to a cluster source and its expected
// outcome.
type ListClustersCase struct {
	// Name names the case.
	Name string
	// Request is the request.
	Request sdk.ListClustersRequest
	// Expect is the outcome: ExpectFound or ExpectBlock.
	Expect Expect
	// Check, when set for ExpectFound, checks the clusters further.
	Check func(t T, got []sdk.Cluster)
}

// blockDeadline is the deadline of calls to ExpectBlock cases.
const blockDeadline = 100 * time.Millisecond

// concurrency is how many times each case runs at once in the concurrency
// check.
const concurrency = 4

// hugeString is the size of the strings of the bad-input checks.
const hugeString = 64 << 10

// Run checks p against the conformance suite, in checks of t (subtests, in
// a Go test: see sdk/plugintest):
//
//   - Describe: the plugin describes itself over the wire as p.Info does.
//   - Configure: s.Config is accepted; every bad configuration is refused
//     with a *sdk.ConfigError naming its key (a plugin that takes no
//     configuration must refuse any).
//   - ValidateOptions (sdk.OptionsValidator): the options of every found
//     case are accepted, every BadOptions refused naming its key.
//   - Resolve, Credential, ListClusters (per role): every case has its
//     outcome through the real gRPC path, with valid results (entity refs
//     are canonical Backstage refs); a request with empty and one with huge
//     inputs gives a valid result, sdk.ErrNotFound or *sdk.InvalidInputError,
//     never another error; the plugin returns promptly from a cancelled
//     context and from an ExpectBlock case's deadline; the cases give the
//     same outcomes when run concurrently.
func Run(t Tester, p sdk.Plugin, s Suite) {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	if p, err = p.Typed(); err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	runSuite(t, &run{p: p, info: info, inProcess: true, c: Start(t, p)}, s)
}

// RunBinary checks the plugin binary at path, written in any language,
// against the same suite as Run: it starts the binary as the daemon starts a
// plugin (go-plugin's handshake, mutual TLS, the protocol's message limits;
// see StartBinary) and makes every check over the wire, deadlines and
// cancellation included. What the plugin offers is what its Describe call
// says.
func RunBinary(t Tester, path string, s Suite, args ...string) {
	t.Helper()
	RunClient(t, StartBinary(t, path, args...), s)
}

// RunClient checks the plugin c is a client of, started by the caller in
// any way (the daemon's own runner, say), against the same suite as
// RunBinary, every check over the wire. c must be described
// (pluginclient.Open does it) and not yet configured.
func RunClient(t Tester, c *pluginclient.Client, s Suite) {
	t.Helper()
	info, ok := c.Info()
	if !ok {
		t.Fatalf("plugintest: the plugin was not described")
	}
	runSuite(t, &run{info: info, c: c}, s)
}

// T is what a check reports to and what the Check functions of cases get:
// the methods of testing.TB the suite uses, so that a *testing.T is one, and
// so is a check of CheckBinary, outside a Go test.
type T interface {
	Helper()
	Log(args ...any)
	Logf(format string, args ...any)
	Error(args ...any)
	Errorf(format string, args ...any)
	// Fatal and Fatalf end the check (its goroutine), as testing.TB's do.
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
	Name() string
	Cleanup(f func())
}

// Tester is a T that runs checks of its own: in a Go test, a *testing.T and
// its subtests (sdk/plugintest adapts one); outside, a check of
// CheckBinary.
type Tester interface {
	T
	// Run runs f as the check called name, and reports whether it passed,
	// as (*testing.T).Run does.
	Run(name string, f func(Tester)) bool
}

// runSuite runs the suite of Run on r.
func runSuite(t Tester, r *run, s Suite) {
	t.Helper()
	if s.Grace == 0 {
		s.Grace = 2 * time.Second
	}
	if s.CallTimeout == 0 {
		s.CallTimeout = 30 * time.Second
	}
	r.s = s
	name := r.info.Name
	t.Run("Describe", r.describe)
	t.Run("Configure", r.configure)
	if !r.configured {
		t.Fatalf("the plugin refused Suite.Config, which the other checks need")
	}
	// Cases for a capability the plugin lacks fail the suite: they would
	// otherwise be skipped, and a plugin whose method has a wrong signature
	// pass.
	if r.info.Has(sdk.CapabilityValidateOptions) {
		t.Run("ValidateOptions", r.validateOptions)
	} else if len(s.BadOptions) > 0 {
		t.Errorf("Suite.BadOptions has cases but plugin %q has no sdk.OptionsValidator", name)
	}
	if r.info.Has(sdk.CapabilityResolver) {
		t.Run("Resolve", func(t Tester) { r.resolve(t, r.p.Resolver) })
	} else if len(s.Resolve) > 0 {
		t.Errorf("Suite.Resolve has cases but plugin %q has no sdk.Resolver", name)
	}
	if r.info.Has(sdk.CapabilityClusterStrategy) {
		t.Run("Credential", func(t Tester) { r.credential(t, r.p.ClusterStrategy) })
	} else if len(s.Credential) > 0 {
		t.Errorf("Suite.Credential has cases but plugin %q has no sdk.ClusterStrategy", name)
	}
	if r.info.Has(sdk.CapabilityClusterSource) {
		t.Run("ListClusters", func(t Tester) { r.listClusters(t, r.p.ClusterSource) })
	} else if len(s.ListClusters) > 0 {
		t.Errorf("Suite.ListClusters has cases but plugin %q has no sdk.ClusterSource", name)
	}
}

type run struct {
	// p is the plugin, with its typed fields set, when it runs in this
	// process; inProcess says so. A binary's is the zero Plugin: every
	// check goes over the wire.
	p          sdk.Plugin
	inProcess  bool
	s          Suite
	info       sdk.Info
	c          *pluginclient.Client
	configured bool // Suite.Config was accepted
}

func (r *run) ctx(t T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), r.s.CallTimeout)
	t.Cleanup(cancel)
	return ctx
}

func (r *run) describe(t Tester) {
	got, err := r.c.Describe(r.ctx(t))
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if r.inProcess && !reflect.DeepEqual(normalizeInfo(got), normalizeInfo(r.info)) {
		t.Errorf("Describe over the wire = %+v, want %+v", got, r.info)
	}
	if !slices.Contains(sdk.ProtocolVersions(), got.ProtocolVersion) {
		t.Errorf("protocol version %d, want one of %v", got.ProtocolVersion, sdk.ProtocolVersions())
	}
}

func normalizeInfo(i sdk.Info) sdk.Info {
	for _, l := range []*[]string{&i.Resolvers, &i.Strategies} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return i
}

func (r *run) configure(t Tester) {
	configurer := r.info.Has(sdk.CapabilityConfigure)
	bad := r.s.BadConfigs
	if !configurer {
		if len(r.s.Config) > 0 {
			t.Errorf("Suite.Config is set but plugin %q has no sdk.Configurer", r.info.Name)
		}
		bad = append(slices.Clone(bad), BadConfig{Name: "takes no configuration", Config: sdk.Options{"unexpectedKey": true}, Key: "unexpectedKey"})
	} else if len(bad) == 0 {
		t.Errorf("Suite.BadConfigs is empty: give at least one configuration Configure must refuse")
	}
	for _, bc := range bad {
		name := bc.Name
		if name == "" {
			name = bc.Key
		}
		t.Run("bad/"+name, func(t Tester) {
			err := r.c.Configure(r.ctx(t), sdk.Config{InstanceName: "conformance", Values: bc.Config})
			checkConfigError(t, "Configure", err, bc.Key)
		})
	}
	t.Run("valid", func(t Tester) {
		if err := r.c.Configure(r.ctx(t), sdk.Config{InstanceName: "conformance", Values: r.s.Config}); err != nil {
			t.Fatalf("Configure(Suite.Config) = %v, want success", err)
		}
		r.configured = true
	})
}

func checkConfigError(t T, call string, err error, key string) {
	t.Helper()
	var ce *sdk.ConfigError
	switch {
	case err == nil:
		t.Errorf("%s succeeded, want a *sdk.ConfigError naming key %q", call, key)
	case !errors.As(err, &ce):
		t.Errorf("%s = %v (%T), want a *sdk.ConfigError naming key %q", call, err, err, key)
	case ce.Key != key:
		t.Errorf("%s = %v: names key %q, want %q", call, err, ce.Key, key)
	case ce.Err == nil || ce.Err.Error() == "":
		t.Errorf("%s = %v: says nothing about what is wrong", call, err)
	}
}

func (r *run) validateOptions(t Tester) {
	var good []sdk.ValidateOptionsRequest
	for _, rc := range r.s.Resolve {
		if rc.Expect == ExpectFound {
			good = append(good, sdk.ValidateOptionsRequest{Role: sdk.CapabilityResolver, Name: rc.Request.Resolver, Options: rc.Request.Options})
		}
	}
	for _, cc := range r.s.Credential {
		if cc.Expect == ExpectFound {
			good = append(good, sdk.ValidateOptionsRequest{Role: sdk.CapabilityClusterStrategy, Name: cc.Request.Strategy, Options: cc.Request.Options})
		}
	}
	for _, lc := range r.s.ListClusters {
		if lc.Expect == ExpectFound {
			good = append(good, sdk.ValidateOptionsRequest{Role: sdk.CapabilityClusterSource, Options: lc.Request.Options})
		}
	}
	for _, req := range good {
		if err := r.c.ValidateOptions(r.ctx(t), req); err != nil {
			t.Errorf("ValidateOptions(%s %q) of a found case = %v, want success", req.Role, req.Name, err)
		}
	}
	if len(r.s.BadOptions) == 0 {
		t.Errorf("Suite.BadOptions is empty: give at least one set of options ValidateOptions must refuse")
	}
	for _, bo := range r.s.BadOptions {
		name := bo.Name
		if name == "" {
			name = bo.Key
		}
		t.Run("bad/"+name, func(t Tester) {
			checkConfigError(t, "ValidateOptions", r.c.ValidateOptions(r.ctx(t), bo.Request), bo.Key)
		})
	}
}

// call is one request of a role, made through the client or directly.
type call struct {
	name   string
	expect Expect
	// remote calls the plugin through gRPC and checks a successful result.
	remote func(ctx context.Context, t T) error
	// direct calls the implementation in-process.
	direct func(ctx context.Context) error
}

// checkCalls runs the checks shared by every role: each case's outcome over
// the wire, prompt return on a cancelled context and on the deadline of
// ExpectBlock cases, and the same outcomes under concurrency.
func (r *run) checkCalls(t Tester, calls []call) {
	t.Run("Cases", func(t Tester) {
		for _, c := range calls {
			t.Run(c.name, func(t Tester) {
				switch c.expect {
				case ExpectFound:
					if err := c.remote(r.ctx(t), t); err != nil {
						t.Errorf("got error %v, want success", err)
					}
				case ExpectNotFound:
					err := c.remote(r.ctx(t), t)
					if !errors.Is(err, sdk.ErrNotFound) {
						t.Errorf("got %v, want an error wrapping sdk.ErrNotFound", err)
					}
				case ExpectBlock:
					r.checkBlock(t, c)
				default:
					t.Fatalf("unknown Expect %v", c.expect)
				}
			})
		}
	})
	t.Run("Cancelled", func(t Tester) {
		for _, c := range calls {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if returned, _ := within(r.s.Grace, ctx, r.direct(t, c)); !returned {
				t.Errorf("case %q: called with a cancelled context, did not return within %s", c.name, r.s.Grace)
			}
		}
	})
	t.Run("Concurrent", func(t Tester) {
		// Every found and not-found case, concurrency times, all at once.
		errs := make([][]error, len(calls))
		var wg sync.WaitGroup
		for i, c := range calls {
			if c.expect == ExpectBlock {
				continue
			}
			errs[i] = make([]error, concurrency)
			for j := range concurrency {
				wg.Go(func() { errs[i][j] = c.remote(r.ctx(t), t) })
			}
		}
		wg.Wait()
		for i, c := range calls {
			for _, err := range errs[i] {
				if c.expect == ExpectFound && err != nil {
					t.Errorf("case %q run concurrently: got error %v, want success", c.name, err)
					break
				}
				if c.expect == ExpectNotFound && !errors.Is(err, sdk.ErrNotFound) {
					t.Errorf("case %q run concurrently: got %v, want sdk.ErrNotFound", c.name, err)
					break
				}
			}
		}
	})
}

// checkBlock checks that a deadline stops an ExpectBlock case, called
// directly (the plugin itself returns) and through gRPC (the error says why).
func (r *run) checkBlock(t Tester, c call) {
	ctx, cancel := context.WithTimeout(context.Background(), blockDeadline)
	defer cancel()
	returned, err := within(blockDeadline+r.s.Grace, ctx, r.direct(t, c))
	switch {
	case !returned:
		t.Errorf("with a %s deadline, did not return within %s more: it must stop when its context is done", blockDeadline, r.s.Grace)
	case !errors.Is(err, context.DeadlineExceeded):
		t.Errorf("with a %s deadline, got %v, want an error wrapping context.DeadlineExceeded", blockDeadline, err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), blockDeadline)
	defer cancel()
	if err := c.remote(ctx, t); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("through gRPC with a %s deadline, got %v, want an error wrapping context.DeadlineExceeded", blockDeadline, err)
	}
}

// direct returns the call of c straight to the implementation, in process;
// for a binary, through gRPC.
func (r *run) direct(t T, c call) func(context.Context) error {
	if r.inProcess {
		return c.direct
	}
	return func(ctx context.Context) error { return c.remote(ctx, t) }
}

// within runs f(ctx) and waits at most d for it to return.
func within(d time.Duration, ctx context.Context, f func(context.Context) error) (returned bool, err error) {
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	select {
	case err := <-done:
		return true, err
	case <-time.After(d):
		return false, nil
	}
}

// checkBadInput calls the plugin with a request it may not be able to use:
// it must return in time with a valid result, sdk.ErrNotFound or an
// *sdk.InvalidInputError.
func (r *run) checkBadInput(t Tester, name string, remote func(ctx context.Context, t T) error) {
	t.Run(name, func(t Tester) {
		ctx, cancel := context.WithTimeout(context.Background(), r.s.CallTimeout)
		defer cancel()
		err := remote(ctx, t)
		var ie *sdk.InvalidInputError
		if err != nil && !errors.Is(err, sdk.ErrNotFound) && !errors.As(err, &ie) {
			t.Errorf("got %v, want a valid result, sdk.ErrNotFound or an *sdk.InvalidInputError", err)
		}
	})
}

// coverage reports the names among offered that have no case of outcome e.
func coverage(t Tester, field, role string, offered, names []string, expects []Expect, e Expect) {
	for _, n := range offered {
		found := false
		for i := range names {
			found = found || (names[i] == n && expects[i] == e)
		}
		if !found {
			t.Errorf("%s has no case of %s %q with Expect %v", field, role, n, e)
		}
	}
	for _, n := range names {
		if !slices.Contains(offered, n) {
			t.Errorf("%s has a case for %s %q, which the plugin does not offer (it offers %s)", field, role, n, strings.Join(offered, ", "))
		}
	}
}

func (r *run) resolve(t Tester, impl sdk.Resolver) {
	var names []string
	var expects []Expect
	var calls []call
	for _, rc := range r.s.Resolve {
		names = append(names, rc.Request.Resolver)
		expects = append(expects, rc.Expect)
		calls = append(calls, call{
			name:   rc.Name,
			expect: rc.Expect,
			remote: func(ctx context.Context, t T) error {
				id, err := r.c.Resolve(ctx, rc.Request)
				if err == nil && rc.Expect == ExpectFound {
					checkIdentity(t, id, rc.Want)
				}
				return err
			},
			direct: func(ctx context.Context) error {
				_, err := impl.Resolve(ctx, rc.Request)
				return err
			},
		})
	}
	t.Run("Coverage", func(t Tester) {
		coverage(t, "Suite.Resolve", "resolver", r.info.Resolvers, names, expects, ExpectFound)
		coverage(t, "Suite.Resolve", "resolver", r.info.Resolvers, names, expects, ExpectNotFound)
	})
	r.checkCalls(t, calls)

	t.Run("BadInput", func(t Tester) {
		for _, name := range r.info.Resolvers {
			base := sdk.ResolveRequest{Resolver: name}
			if i := slices.IndexFunc(r.s.Resolve, func(rc ResolveCase) bool { return rc.Request.Resolver == name && rc.Expect == ExpectFound }); i >= 0 {
				base = r.s.Resolve[i].Request
			}
			resolve := func(req sdk.ResolveRequest) func(context.Context, T) error {
				return func(ctx context.Context, t T) error {
					id, err := r.c.Resolve(ctx, req)
					if err == nil {
						checkIdentity(t, id, nil)
					}
					return err
				}
			}
			r.checkBadInput(t, name+"/empty", resolve(sdk.ResolveRequest{Resolver: name, Options: base.Options}))
			r.checkBadInput(t, name+"/huge", resolve(hugeResolveRequest(base)))
		}
	})
}

// hugeResolveRequest inflates every string of base.
func hugeResolveRequest(base sdk.ResolveRequest) sdk.ResolveRequest {
	huge := strings.Repeat("x", hugeString)
	req := base
	req.Profile = sdk.Profile{
		Email:         huge + "@example.com",
		DisplayName:   huge,
		Picture:       "https://example.com/" + huge,
		EmailVerified: true,
	}
	req.Subject, req.Issuer, req.PreferredUsername = huge, "https://example.com/"+huge, huge
	req.Groups = make([]string, 1000)
	for i := range req.Groups {
		req.Groups[i] = fmt.Sprintf("group-%d-%s", i, huge[:64])
	}
	req.Claims = sdk.Claims{}
	for k, v := range base.Claims {
		req.Claims[k] = v
	}
	for _, k := range []string{"sub", "email", "name", "preferred_username", "huge"} {
		req.Claims[k] = huge
	}
	return req
}

// checkIdentity checks an identity's refs (the client has validated them
// too: this states the requirement) and compares it with want.
func checkIdentity(t T, id sdk.Identity, want *sdk.Identity) {
	t.Helper()
	for _, ref := range append([]string{id.UserEntityRef}, id.OwnershipEntityRefs...) {
		if parsed, err := sdk.ParseEntityRef(ref); err != nil {
			t.Errorf("identity ref %q: %v", ref, err)
		} else if parsed.String() != ref {
			t.Errorf("identity ref %q is not in canonical form %q", ref, parsed.String())
		}
	}
	if want == nil {
		return
	}
	if id.UserEntityRef != want.UserEntityRef {
		t.Errorf("UserEntityRef = %q, want %q", id.UserEntityRef, want.UserEntityRef)
	}
	got, exp := slices.Sorted(slices.Values(id.OwnershipEntityRefs)), slices.Sorted(slices.Values(want.OwnershipEntityRefs))
	if !slices.Equal(got, exp) {
		t.Errorf("OwnershipEntityRefs = %q, want %q (in any order)", got, exp)
	}
	if g, w := jsonNormal(id.Extra), jsonNormal(want.Extra); !reflect.DeepEqual(g, w) {
		t.Errorf("Extra = %v, want %v", g, w)
	}
}

// jsonNormal returns v as it comes out of JSON, so that 1 equals 1.0.
func jsonNormal(v map[string]any) any {
	if len(v) == 0 {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// passedSession is what the daemon passes the strategy of req of its
// Session: only the tokens the strategy declared (all of them when the plugin
// declares none at all, as one built before the declaration existed).
func (r *run) passedSession(req sdk.CredentialRequest) sdk.Session {
	if r.info.StrategyTokens == nil {
		return req.Session
	}
	return req.Session.Only(r.info.StrategyTokens[req.Strategy])
}

func (r *run) credential(t Tester, impl sdk.ClusterStrategy) {
	var names []string
	var expects []Expect
	var calls []call
	for _, cc := range r.s.Credential {
		names = append(names, cc.Request.Strategy)
		expects = append(expects, cc.Expect)
		cc.Request.Session = r.passedSession(cc.Request)
		calls = append(calls, call{
			name:   cc.Name,
			expect: cc.Expect,
			remote: func(ctx context.Context, t T) error {
				cred, err := r.c.Credential(ctx, cc.Request)
				if err == nil && cc.Expect == ExpectFound && cc.Check != nil {
					cc.Check(t, cred)
				}
				return err
			},
			direct: func(ctx context.Context) error {
				_, err := impl.Credential(ctx, cc.Request)
				return err
			},
		})
	}
	t.Run("Coverage", func(t Tester) {
		coverage(t, "Suite.Credential", "strategy", r.info.Strategies, names, expects, ExpectFound)
	})
	r.checkCalls(t, calls)

	t.Run("BadInput", func(t Tester) {
		for _, name := range r.info.Strategies {
			base := sdk.CredentialRequest{Strategy: name}
			if i := slices.IndexFunc(r.s.Credential, func(cc CredentialCase) bool { return cc.Request.Strategy == name && cc.Expect == ExpectFound }); i >= 0 {
				base = r.s.Credential[i].Request
			}
			credential := func(req sdk.CredentialRequest) func(context.Context, T) error {
				return func(ctx context.Context, t T) error {
					_, err := r.c.Credential(ctx, req)
					return err
				}
			}
			empty := sdk.CredentialRequest{Strategy: name, Options: base.Options, Cluster: base.Cluster}
			r.checkBadInput(t, name+"/empty session", credential(empty))
			huge := strings.Repeat("x", hugeString)
			inflated := base
			inflated.Session = sdk.Session{
				UserEntityRef:       "user:default/" + huge[:60],
				Subject:             huge,
				IDToken:             huge,
				IDTokenExpiresAt:    base.Session.IDTokenExpiresAt,
				AccessToken:         huge,
				PaletteSessionToken: huge,
				Claims:              sdk.Claims{"sub": huge, "email": huge, "groups": []any{huge}},
			}
			r.checkBadInput(t, name+"/huge session", credential(inflated))
		}
	})
}

func (r *run) listClusters(t Tester, impl sdk.ClusterSource) {
	var calls []call
	found := false
	for _, lc := range r.s.ListClusters {
		found = found || lc.Expect == ExpectFound
		if lc.Expect == ExpectNotFound {
			t.Errorf("Suite.ListClusters case %q: a cluster source has no not-found outcome", lc.Name)
			continue
		}
		calls = append(calls, call{
			name:   lc.Name,
			expect: lc.Expect,
			remote: func(ctx context.Context, t T) error {
				clusters, err := r.c.ListClusters(ctx, lc.Request)
				if err == nil && lc.Expect == ExpectFound && lc.Check != nil {
					lc.Check(t, clusters)
				}
				return err
			},
			direct: func(ctx context.Context) error {
				_, err := impl.ListClusters(ctx, lc.Request)
				return err
			},
		})
	}
	if !found {
		t.Errorf("Suite.ListClusters has no case with Expect %v", ExpectFound)
	}
	r.checkCalls(t, calls)
}
