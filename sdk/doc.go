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
//		sdk.Serve(sdk.Plugin{Name: "by-email", Version: "1.0.0", Impl: &byEmail{}})
//	}
//
// Optional behaviour is opt-in by interface: Configurer to take the plugin's
// `config:` block, OptionsValidator to check `options:` when the daemon
// starts. Errors are typed and survive the trip to the daemon: ErrNotFound
// (wrap it with %w), *ConfigError naming the key, *InvalidInputError naming
// the request field. The SDK checks what a plugin returns (Identity.Validate,
// Credential.Validate, ValidateClusters) and the daemon checks it again.
//
// Test a plugin with package sdk/plugintest, which runs it in-process over
// the real transport and holds the conformance suite every plugin must pass.
//
// Under the hood Serve speaks hashicorp/go-plugin's gRPC protocol, version
// ProtocolVersion of the protobuf package spectroauth.plugin.v1 (see
// proto/spectroauth/plugin/v1), which plugins in other languages can
// implement directly. Package sdk/pluginclient is the daemon's side of it.
package sdk
