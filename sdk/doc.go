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
// the real transport and holds the conformance suite every plugin must pass;
// `spectroauthd plugin test -plugin PATH` runs the same suite against a built
// binary, in any language.
//
// # Module and versions
//
// The SDK is a Go module of its own, github.com/spectroauth/spectroauth/sdk,
// with its own semantic version (Version), released under Git tags
// sdk/vX.Y.Z of the spectroauth repository; sdk/CHANGELOG.md says what each
// release changed. A plugin requires the SDK module only, never the daemon's:
//
//	go get github.com/spectroauth/spectroauth/sdk@v0.2.0
//
// The compatibility promise, from 1.0.0 on: a minor or patch release does
// not break a plugin that compiles against an earlier release of the same
// major version. A minor release may add packages, functions, methods,
// interfaces of optional behaviour, fields of structs (build them with field
// names), constants (new Capability and Token values, new protocol
// versions), and may relax what it checks; a patch release only fixes. A
// change that would break a plugin's build or behaviour is a new major
// version, with a new import path (.../sdk/v2). Before 1.0.0 a minor release
// (0.2.0) may still break the API: CHANGELOG.md says how to move.
//
// What crosses the wire is versioned apart from the SDK: the plugin protocol
// (ProtocolVersion; protobuf package spectroauth.plugin.v1 in proto/ of the
// repository) is negotiated with the daemon at every start. A new release of
// the SDK may add protocol versions (ProtocolVersions lists those it speaks)
// but keeps speaking the old ones, and so does the daemon when it adds one: a
// plugin does not have to be rebuilt when the daemon is upgraded, and a
// daemon refuses, naming both sides' versions, a plugin it cannot speak to. A
// plugin reports the SDK version it is built with (Info.SDKVersion), which
// the daemon logs when it starts the plugin and `spectroauthd plugins` shows.
//
// Under the hood Serve speaks hashicorp/go-plugin's gRPC protocol, with
// mutual TLS, which plugins in other languages can implement directly (see
// the Node.js SDK in sdk/node). Started by the daemon (which sets
// pluginclient.CertLineEnv), a plugin makes its own P-256 key and
// self-signed certificate and announces the certificate on a line of its
// own before go-plugin's handshake line (pluginclient.CertLinePrefix);
// otherwise go-plugin's AutoMTLS makes a P-521 one, announced in the
// handshake line, which costs several milliseconds of CPU more on both
// sides at every start. Either way the private keys never leave their
// process, each side pins the other's certificate, and both lines travel on
// the plugin's stdout, which only the daemon reads. The generated protobuf code is internal to
// this module; package sdk/pluginclient is the daemon's side of the protocol
// and sdk/pluginserver the plugin side's transport, for tests of hosts.
package sdk
