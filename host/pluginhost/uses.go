package pluginhost

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/sdk"
)

// Use is one place in the configuration that uses a plugin: a sign-in
// resolver, a cluster strategy or a cluster source, with its options. Start
// checks that the plugin offers it and, when the plugin validates options,
// has it check them, so that a bad option fails the daemon's start naming
// its key.
type Use struct {
	// Key is the configuration path of the reference, e.g.
	// "auth.providers.spectrocloud.development.signIn.resolvers[0]"; errors
	// name Key+".resolver", Key+".options.<key>" and so on.
	Key string
	// Plugin is the plugin's name (a key of plugins:).
	Plugin string
	// Role is sdk.CapabilityResolver, sdk.CapabilityClusterStrategy or
	// sdk.CapabilityClusterSource.
	Role sdk.Capability
	// Name is the resolver or strategy name; empty for a source.
	Name string
	// Options are the options as configured.
	Options map[string]any
}

// nameKey is the key that names the resolver or strategy of u.
func (u Use) nameKey() string {
	switch u.Role {
	case sdk.CapabilityResolver:
		return u.Key + ".resolver"
	case sdk.CapabilityClusterStrategy:
		return u.Key + ".strategy"
	}
	return u.Key + ".plugin"
}

// roleName is how messages call the role of u.
func roleName(c sdk.Capability) string {
	switch c {
	case sdk.CapabilityResolver:
		return "resolver"
	case sdk.CapabilityClusterStrategy:
		return "cluster strategy"
	case sdk.CapabilityClusterSource:
		return "cluster source"
	}
	return strings.ToLower(string(c))
}

// UsesFromConfig lists every use of a plugin in cfg: the sign-in resolvers
// of every environment (but the builtin ones), the strategies of static
// clusters, and the cluster sources with their default strategies. The
// order is stable.
func UsesFromConfig(cfg *config.Config) []Use {
	var uses []Use
	envs := make([]string, 0, len(cfg.Auth.Providers.SpectroCloud))
	for name := range cfg.Auth.Providers.SpectroCloud {
		envs = append(envs, name)
	}
	slices.Sort(envs)
	for _, env := range envs {
		for i, r := range cfg.Auth.Providers.SpectroCloud[env].SignIn.Resolvers {
			if r.Plugin == config.BuiltinPlugin {
				continue
			}
			uses = append(uses, Use{
				Key:    fmt.Sprintf("auth.providers.spectrocloud.%s.signIn.resolvers[%d]", env, i),
				Plugin: r.Plugin, Role: sdk.CapabilityResolver, Name: r.Resolver, Options: r.Options,
			})
		}
	}
	for i, c := range cfg.Kubernetes.Clusters {
		if c.Strategy.Plugin != "" {
			uses = append(uses, Use{
				Key:    fmt.Sprintf("kubernetes.clusters[%d].strategy", i),
				Plugin: c.Strategy.Plugin, Role: sdk.CapabilityClusterStrategy, Name: c.Strategy.Strategy, Options: c.Strategy.Options,
			})
		}
	}
	for i, s := range cfg.Kubernetes.Sources {
		key := fmt.Sprintf("kubernetes.sources[%d]", i)
		if s.Plugin != "" {
			uses = append(uses, Use{Key: key, Plugin: s.Plugin, Role: sdk.CapabilityClusterSource, Options: s.Options})
		}
		if s.Strategy.Plugin != "" {
			uses = append(uses, Use{
				Key:    key + ".strategy",
				Plugin: s.Strategy.Plugin, Role: sdk.CapabilityClusterStrategy, Name: s.Strategy.Strategy, Options: s.Strategy.Options,
			})
		}
	}
	return uses
}

// checkOffered reports whether the plugin described by info offers u.
func checkOffered(name string, info sdk.Info, role sdk.Capability, what string) error {
	if !info.Has(role) {
		return fmt.Errorf("plugin %q is not a %s (it offers: %s)", name, roleName(role), capabilityList(info.Capabilities))
	}
	var names []string
	switch role {
	case sdk.CapabilityResolver:
		names = info.Resolvers
	case sdk.CapabilityClusterStrategy:
		names = info.Strategies
	default:
		return nil
	}
	if !slices.Contains(names, what) {
		return fmt.Errorf("plugin %q offers no %s %q (it offers: %s)", name, roleName(role), what, strings.Join(names, ", "))
	}
	return nil
}

func capabilityList(cs []sdk.Capability) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}
