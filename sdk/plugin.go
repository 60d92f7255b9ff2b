package sdk

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// Resolver maps a user who signed in upstream to a Backstage identity. A
// plugin may offer several resolvers, told apart by name; the daemon's
// configuration picks one per step of its sign-in chain.
//
// Implementations must be safe for concurrent use.
type Resolver interface {
	// Resolvers lists the names of the resolvers offered, e.g.
	// "emailMatchingUserEntityProfileEmail". It must always return the same
	// non-empty list.
	Resolvers() []string
	// Resolve finds the identity of the user req describes. It returns an
	// error wrapping ErrNotFound when the resolver knows no such user (the
	// daemon then tries its next resolver), an *InvalidInputError or
	// *ConfigError for input it cannot use, and must return promptly once
	// ctx is done. The SDK refuses an Identity that fails Validate.
	Resolve(ctx context.Context, req ResolveRequest) (Identity, error)
}

// ClusterStrategy hands out Kubernetes credentials. A plugin may offer
// several strategies, told apart by name.
//
// Implementations must be safe for concurrent use.
type ClusterStrategy interface {
	// Strategies lists the names of the strategies offered. It must always
	// return the same non-empty list.
	Strategies() []string
	// Credential returns the credential the user of req.Session gets for
	// req.Cluster, or an error wrapping ErrNotFound when the strategy has
	// none for this user. It must return promptly once ctx is done. The SDK
	// refuses a Credential that fails Validate.
	Credential(ctx context.Context, req CredentialRequest) (Credential, error)
}

// ClusterSource discovers Kubernetes clusters.
//
// Implementations must be safe for concurrent use.
type ClusterSource interface {
	// ListClusters returns the clusters the source knows now. It must
	// return promptly once ctx is done. The SDK refuses a list that fails
	// ValidateClusters.
	ListClusters(ctx context.Context, req ListClustersRequest) ([]Cluster, error)
}

// Configurer is implemented by plugins that take a configuration (the
// `config:` block of the plugin in the daemon's configuration). The daemon
// calls Configure once at start, before any other call. The SDK refuses other
// calls until a Configure has succeeded (and again after one fails), and
// never runs Configure concurrently with them, so a plugin needs no lock of
// its own to guard its configuration.
//
// A plugin that does not implement Configurer refuses any non-empty
// configuration.
type Configurer interface {
	// Configure checks and applies cfg. Return a *ConfigError naming the
	// offending key for a bad configuration (the getters of Options do).
	Configure(ctx context.Context, cfg Config) error
}

// OptionsValidator is implemented by plugins that can check the `options:` of
// their resolvers, strategies or source when the daemon starts, rather than
// at first use. It is called after Configure; the SDK has checked that
// req.Name is one the plugin offers for req.Role.
type OptionsValidator interface {
	// ValidateOptions returns a *ConfigError naming the offending key when
	// req.Options are not acceptable.
	ValidateOptions(ctx context.Context, req ValidateOptionsRequest) error
}

// Capability is something a plugin offers; see Info.
type Capability string

// The capabilities. The first three are roles, found by the interfaces a
// plugin's Impl implements; the others flag optional calls. A newer SDK may
// add capabilities: a host calls an optional call only when the plugin lists
// its capability, so older plugins keep working.
const (
	// CapabilityResolver: the plugin implements Resolver.
	CapabilityResolver Capability = "RESOLVER"
	// CapabilityClusterStrategy: the plugin implements ClusterStrategy.
	CapabilityClusterStrategy Capability = "CLUSTER_STRATEGY"
	// CapabilityClusterSource: the plugin implements ClusterSource.
	CapabilityClusterSource Capability = "CLUSTER_SOURCE"
	// CapabilityConfigure: the plugin implements Configurer.
	CapabilityConfigure Capability = "CONFIGURE"
	// CapabilityValidateOptions: the plugin implements OptionsValidator.
	CapabilityValidateOptions Capability = "VALIDATE_OPTIONS"
)

// Info describes a plugin: what its Describe call answers.
type Info struct {
	// Name is the plugin's name.
	Name string
	// Version is the plugin's own version.
	Version string
	// ProtocolVersion is the plugin protocol version it speaks.
	ProtocolVersion int
	// SDKVersion is the version of the SDK it is built with (Version, for
	// this SDK); empty for a plugin whose SDK predates the field or that
	// implements the protocol without an SDK.
	SDKVersion string
	// Capabilities lists what it offers, in a fixed order.
	Capabilities []Capability
	// Resolvers lists its resolver names, when it is a Resolver.
	Resolvers []string
	// Strategies lists its strategy names, when it is a ClusterStrategy.
	Strategies []string
	// StrategyTokens says which of the user's tokens each strategy needs
	// (see Plugin.StrategyTokens); the host passes a strategy only those.
	// A strategy missing from a non-nil map needs none. Nil means the
	// plugin declares nothing (it predates the declaration): the host then
	// passes every token, as before.
	StrategyTokens map[string][]Token
}

// Token names one of the user's tokens in Session, for
// Plugin.StrategyTokens.
type Token string

// The tokens a strategy may need. A newer SDK may add tokens; a host never
// passes a token it does not know a strategy asked for.
const (
	// TokenID is Session.IDToken (with IDTokenExpiresAt).
	TokenID Token = "ID"
	// TokenAccess is Session.AccessToken.
	TokenAccess Token = "ACCESS"
	// TokenPaletteSession is Session.PaletteSessionToken.
	TokenPaletteSession Token = "PALETTE_SESSION"
)

// tokens are the tokens this SDK knows.
var tokens = []Token{TokenID, TokenAccess, TokenPaletteSession}

// Only returns s with the tokens not in tokens left empty: what a strategy
// that declared tokens receives.
func (s Session) Only(tokens []Token) Session {
	if !slices.Contains(tokens, TokenID) {
		s.IDToken, s.IDTokenExpiresAt = "", time.Time{}
	}
	if !slices.Contains(tokens, TokenAccess) {
		s.AccessToken = ""
	}
	if !slices.Contains(tokens, TokenPaletteSession) {
		s.PaletteSessionToken = ""
	}
	return s
}

// Has reports whether the plugin offers c.
func (i Info) Has(c Capability) bool { return slices.Contains(i.Capabilities, c) }

// isName reports whether s has the shape of plugin, resolver and strategy
// names: ^[A-Za-z][A-Za-z0-9._-]{0,62}$. It is checked by hand: compiling
// that pattern's bounded repetition cost every process that links the SDK
// (the daemon and each plugin) a share of its start.
func isName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-')) {
			return false
		}
	}
	return true
}

// Validate checks that the description is coherent: valid, unique names, a
// ProtocolVersion this SDK speaks (one of ProtocolVersions), at least one role, and names listed exactly for
// the roles offered. Capabilities it does not know are allowed.
func (i Info) Validate() error {
	var errs []error
	if !isName(i.Name) {
		errs = append(errs, fmt.Errorf("plugin name %q is not a letter followed by up to 62 letters, digits, '.', '_' or '-'", i.Name))
	}
	if !slices.Contains(ProtocolVersions(), i.ProtocolVersion) {
		errs = append(errs, fmt.Errorf("plugin speaks protocol version %d, this SDK speaks %v", i.ProtocolVersion, ProtocolVersions()))
	}
	if !i.Has(CapabilityResolver) && !i.Has(CapabilityClusterStrategy) && !i.Has(CapabilityClusterSource) {
		errs = append(errs, errors.New("plugin offers none of Resolver, ClusterStrategy and ClusterSource"))
	}
	errs = append(errs, checkNames("resolver", i.Resolvers, i.Has(CapabilityResolver))...)
	errs = append(errs, checkNames("strategy", i.Strategies, i.Has(CapabilityClusterStrategy))...)
	for _, name := range slices.Sorted(maps.Keys(i.StrategyTokens)) {
		if !slices.Contains(i.Strategies, name) {
			errs = append(errs, fmt.Errorf("plugin declares the tokens of strategy %q, which it does not list", name))
		}
		for _, t := range i.StrategyTokens[name] {
			if !slices.Contains(tokens, t) {
				errs = append(errs, fmt.Errorf("strategy %q declares token %q, which is none of %v", name, t, tokens))
			}
		}
	}
	return errors.Join(errs...)
}

func checkNames(kind string, names []string, offered bool) []error {
	var errs []error
	switch {
	case offered && len(names) == 0:
		errs = append(errs, fmt.Errorf("plugin lists no %s names", kind))
	case !offered && len(names) > 0:
		errs = append(errs, fmt.Errorf("plugin lists %s names but does not offer that role", kind))
	}
	seen := map[string]bool{}
	for _, n := range names {
		if !isName(n) {
			errs = append(errs, fmt.Errorf("%s name %q is not a letter followed by up to 62 letters, digits, '.', '_' or '-'", kind, n))
		}
		if seen[n] {
			errs = append(errs, fmt.Errorf("%s name %q is listed twice", kind, n))
		}
		seen[n] = true
	}
	return errs
}

// Plugin is what Serve serves: a name, a version, and the capabilities the
// plugin offers, each in a typed field, so that the compiler checks every
// method's signature:
//
//	r := &byEmail{}
//	sdk.Serve(sdk.Plugin{Name: "by-email", Version: "1.0.0", Resolver: r, OptionsValidator: r})
//
// At least one of Resolver, ClusterStrategy and ClusterSource must be set.
type Plugin struct {
	// Name is the plugin's name, e.g. "palette".
	Name string
	// Version is the plugin's own version; empty means the main module's
	// version from the build information.
	Version string

	// Resolver serves the plugin's sign-in resolvers.
	Resolver Resolver
	// ClusterStrategy serves its cluster credential strategies.
	ClusterStrategy ClusterStrategy
	// ClusterSource serves its cluster discovery.
	ClusterSource ClusterSource
	// Configurer takes its `config:` block; without one, the plugin refuses
	// any non-empty configuration.
	Configurer Configurer
	// OptionsValidator checks the `options:` of its uses at the daemon's
	// start.
	OptionsValidator OptionsValidator
	// StrategyTokens says, per strategy name, which of the user's tokens
	// the strategy needs in CredentialRequest.Session. The host leaves every
	// other token empty: a strategy not in the map gets none of them, only
	// UserEntityRef, Subject and Claims. Keys must be strategies that
	// ClusterStrategy lists.
	StrategyTokens map[string][]Token

	// Impl is the untyped form: a value implementing any of the interfaces
	// above, used for the typed fields left unset. A method of Impl that is
	// named like one of theirs but has another signature is refused (Info
	// and Serve fail), rather than silently leaving the capability out.
	//
	// Deprecated: set the typed fields, which the compiler checks.
	Impl any
}

// roleInterfaces are the interfaces of the typed fields of Plugin.
var roleInterfaces = []reflect.Type{
	reflect.TypeFor[Resolver](), reflect.TypeFor[ClusterStrategy](), reflect.TypeFor[ClusterSource](),
	reflect.TypeFor[Configurer](), reflect.TypeFor[OptionsValidator](),
}

// Typed returns p with Impl moved into the typed fields left unset, and Impl
// cleared. It fails when Impl has a method of one of those interfaces with
// another signature, or only on its pointer.
func (p Plugin) Typed() (Plugin, error) {
	if p.Impl == nil {
		return p, nil
	}
	t := reflect.TypeOf(p.Impl)
	var errs []error
	for _, iface := range roleInterfaces {
		if t.Implements(iface) {
			continue
		}
		for m := range iface.Methods() {
			if got, ok := t.MethodByName(m.Name); ok {
				errs = append(errs, fmt.Errorf("Impl (%s) has method %s%s, but sdk.%s needs %s%s", t, m.Name, signature(got.Type, 1),
					iface.Name(), m.Name, signature(m.Type, 0)))
			} else if t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(iface) {
				errs = append(errs, fmt.Errorf("Impl (%s) implements sdk.%s only on its pointer: pass &value", t, iface.Name()))
				break
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Plugin{}, fmt.Errorf("plugin %q: %w", p.Name, err)
	}
	setIfUnset(&p.Resolver, p.Impl)
	setIfUnset(&p.ClusterStrategy, p.Impl)
	setIfUnset(&p.ClusterSource, p.Impl)
	setIfUnset(&p.Configurer, p.Impl)
	setIfUnset(&p.OptionsValidator, p.Impl)
	p.Impl = nil
	return p, nil
}

// signature formats the parameters and results of the function type f,
// leaving out its first skip parameters (a method's receiver).
func signature(f reflect.Type, skip int) string {
	var in, out []string
	for i := skip; i < f.NumIn(); i++ {
		in = append(in, f.In(i).String())
	}
	for i := range f.NumOut() {
		out = append(out, f.Out(i).String())
	}
	s := "(" + strings.Join(in, ", ") + ")"
	switch len(out) {
	case 0:
		return s
	case 1:
		return s + " " + out[0]
	}
	return s + " (" + strings.Join(out, ", ") + ")"
}

// setIfUnset sets *field to impl when it is unset and impl implements T.
func setIfUnset[T any](field *T, impl any) {
	if v, ok := impl.(T); ok && reflect.ValueOf(field).Elem().IsNil() {
		*field = v
	}
}

// Info describes p as its Describe call will, and checks it (see
// Info.Validate).
func (p Plugin) Info() (Info, error) {
	p, err := p.Typed()
	if err != nil {
		return Info{}, err
	}
	info := Info{Name: p.Name, Version: p.Version, ProtocolVersion: ProtocolVersion, SDKVersion: Version}
	if info.Version == "" {
		info.Version = "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			info.Version = bi.Main.Version
		}
	}
	if p.Resolver != nil {
		info.Capabilities = append(info.Capabilities, CapabilityResolver)
		info.Resolvers = slices.Clone(p.Resolver.Resolvers())
	}
	if p.ClusterStrategy != nil {
		info.Capabilities = append(info.Capabilities, CapabilityClusterStrategy)
		info.Strategies = slices.Clone(p.ClusterStrategy.Strategies())
		info.StrategyTokens = make(map[string][]Token, len(info.Strategies))
		for _, name := range info.Strategies {
			info.StrategyTokens[name] = slices.Clone(p.StrategyTokens[name])
		}
		for name := range p.StrategyTokens {
			if !slices.Contains(info.Strategies, name) {
				info.StrategyTokens[name] = nil // refused by Validate below
			}
		}
	}
	if p.ClusterSource != nil {
		info.Capabilities = append(info.Capabilities, CapabilityClusterSource)
	}
	if p.Configurer != nil {
		info.Capabilities = append(info.Capabilities, CapabilityConfigure)
	}
	if p.OptionsValidator != nil {
		info.Capabilities = append(info.Capabilities, CapabilityValidateOptions)
	}
	if err := info.Validate(); err != nil {
		return Info{}, fmt.Errorf("plugin %q: %w", p.Name, err)
	}
	return info, nil
}
