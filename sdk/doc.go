// Package sdk is what a spectroauth plugin is written against.
//
// spectroauth hands two decisions to plugins, separate programs it starts
// from its configuration: who a person who signed in with SpectroCloud is in
// Backstage (a Resolver), and which Kubernetes clusters exist and what
// credential a user gets for one (a ClusterSource and a ClusterStrategy). A
// plugin is a main package that implements one or more of these interfaces
// with plain Go types and hands itself to Serve:
//
//	type byEmail struct{ domain string }
//
//	func (r *byEmail) Configure(ctx context.Context, cfg sdk.Config) error {
//		if err := cfg.Values.RejectUnknown("domain"); err != nil {
//			return err
//		}
//		domain, err := cfg.Values.String("domain") // a *sdk.ConfigError naming "domain"
//		r.domain = domain
//		return err
//	}
//
//	func (r *byEmail) Resolvers() []string { return []string{"emailLocalPart"} }
//
//	func (r *byEmail) Resolve(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
//		local, domain, ok := strings.Cut(req.Profile.Email, "@")
//		if !ok || domain != r.domain {
//			return sdk.Identity{}, sdk.ErrNotFound // the daemon tries its next resolver
//		}
//		ref, err := sdk.ParseEntityRefDefaults(local, "user", sdk.DefaultNamespace)
//		if err != nil {
//			return sdk.Identity{}, &sdk.InvalidInputError{Field: "Profile.Email", Err: err}
//		}
//		return sdk.Identity{UserEntityRef: ref.String(), OwnershipEntityRefs: []string{ref.String()}}, nil
//	}
//
//	func main() {
//		r := &byEmail{}
//		sdk.Serve(sdk.Plugin{Name: "by-email", Version: "1.0.0", Resolver: r})
//	}
//
// Each capability is a typed field of Plugin, so the compiler checks every
// method's signature; optional behaviour is opt-in the same way: Configurer
// to take the plugin's `config:` block, OptionsValidator to check `options:`
// when the daemon starts. Errors are typed and survive the trip to the daemon: ErrNotFound
// (wrap it with %w), *ConfigError naming the key, *InvalidInputError naming
// the request field. The SDK checks what a plugin returns (Identity.Validate,
// Credential.Validate, ValidateClusters) and the daemon checks it again.
//
// # Deadlines
//
// Every call from the daemon carries a deadline, the plugin's callTimeout
// (2s unless configured). The ctx a method gets ends a little sooner, so
// that the plugin's answer reaches the daemon in time: its deadline is the
// daemon's less a tenth of the time left, at most 250ms and at least 10ms.
// Honour ctx: hand it to every request to an upstream (a catalog, an STS,
// Palette) and to anything else that waits, and once it is done return an
// error, wrapping ctx.Err() or the upstream's error with what was slow:
//
//	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
//	...
//	resp, err := client.Do(req)
//	if err != nil {
//		return sdk.Identity{}, fmt.Errorf("the catalog did not answer: %w", err)
//	}
//
// Whatever error a method returns once ctx's deadline has passed, the SDK
// answers the daemon DEADLINE_EXCEEDED, "the plugin's own work ran out of
// time: " and the method's error (never "not found": a sign-in fails
// closed). The daemon fails that one call with this message, and, as the
// plugin answered, counts no miss against it. A method that ignores ctx and
// outlives the daemon's deadline gets no answer through: the daemon counts a
// miss, and kills and restarts a plugin that misses several calls in a row
// as hung, and with it whatever the plugin had cached. Work a method
// detaches from ctx (a cache fill shared by several calls, say) needs a
// deadline of its own, no later than ctx's.
//
// Test a plugin with package sdk/plugintest, which runs it in-process over
// the real transport and holds the conformance suite every plugin must pass.
//
// Under the hood Serve speaks hashicorp/go-plugin's gRPC protocol, version
// ProtocolVersion of the protobuf package spectroauth.plugin.v1 (see
// proto/spectroauth/plugin/v1), which plugins in other languages can
// implement directly. Package sdk/pluginclient is the daemon's side of it.
package sdk
