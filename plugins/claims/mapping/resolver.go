package mapping

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/sdk"
)

// PluginName is the name the plugin describes itself with.
const PluginName = "claims"

// ResolverName is the plugin's one resolver: it applies the mapping its
// option "mapping" names.
const ResolverName = "mapping"

// optMapping is the resolver option naming the mapping.
const optMapping = "mapping"

// Plugin returns the plugin, ready for sdk.Serve.
func Plugin() sdk.Plugin {
	// The CEL environment is built while the daemon connects and describes
	// the plugin, rather than when the configuration arrives.
	warmEnv()
	m := New()
	return sdk.Plugin{Name: PluginName, Resolver: m, Configurer: m, OptionsValidator: m}
}

// What Plugin registers, checked by the compiler.
var (
	_ sdk.Resolver         = (*Mapper)(nil)
	_ sdk.Configurer       = (*Mapper)(nil)
	_ sdk.OptionsValidator = (*Mapper)(nil)
)

// Mapper signs users in with identities computed from their claims by the
// mappings of its configuration. It implements sdk.Resolver, sdk.Configurer
// and sdk.OptionsValidator; create it with New. It is safe for concurrent
// use.
type Mapper struct {
	// Logger receives the plugin's logs; nil means hclog.Default(), which
	// sdk.Serve points at stderr.
	Logger hclog.Logger

	cfg atomic.Pointer[Config]
}

// New returns an unconfigured Mapper.
func New() *Mapper { return &Mapper{} }

var (
	_ sdk.Resolver         = (*Mapper)(nil)
	_ sdk.Configurer       = (*Mapper)(nil)
	_ sdk.OptionsValidator = (*Mapper)(nil)
)

func (m *Mapper) log() hclog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return hclog.Default()
}

// Resolvers lists the one resolver, "mapping".
func (m *Mapper) Resolvers() []string { return []string{ResolverName} }

// Configure compiles the mappings of the plugin's `config:` block and
// checks every example; a failing example fails it, naming the example.
func (m *Mapper) Configure(ctx context.Context, cfg sdk.Config) error {
	parsed, err := ParseConfig(cfg.Values)
	if err != nil {
		return err
	}
	log := m.log()
	for _, name := range slices.Sorted(maps.Keys(parsed.Mappings)) {
		mp := parsed.Mappings[name]
		if err := mp.CheckExamples(ctx, parsed.Timeout, log); err != nil {
			return err
		}
		if len(mp.examples) == 0 {
			log.Warn("mapping has no examples: nothing checks it before users sign in with it", "mapping", name)
		}
	}
	m.cfg.Store(parsed)
	log.Info("configured", "instance", cfg.InstanceName, "mappings", strings.Join(slices.Sorted(maps.Keys(parsed.Mappings)), ","),
		"costLimit", parsed.CostLimit, "timeout", parsed.Timeout)
	return nil
}

// ValidateOptions checks the resolver's options: "mapping" must name a
// mapping of the configuration (it may be left out when there is one).
func (m *Mapper) ValidateOptions(_ context.Context, req sdk.ValidateOptionsRequest) error {
	cfg := m.cfg.Load()
	if cfg == nil {
		return errors.New("plugin is not configured: no Configure call has succeeded")
	}
	_, err := cfg.pick(req.Options)
	return err
}

// pick returns the mapping the options name.
func (c *Config) pick(o sdk.Options) (*Mapping, error) {
	if err := o.RejectUnknown(optMapping); err != nil {
		return nil, err
	}
	name, err := o.StringOr(optMapping, "")
	if err != nil {
		return nil, err
	}
	names := slices.Sorted(maps.Keys(c.Mappings))
	if name == "" {
		if len(names) == 1 {
			return c.Mappings[names[0]], nil
		}
		return nil, sdk.ConfigErrorf(optMapping, "is required: the plugin's config defines several mappings (%s)", strings.Join(names, ", "))
	}
	mp, ok := c.Mappings[name]
	if !ok {
		return nil, sdk.ConfigErrorf(optMapping, "%q is not a mapping of the plugin's config (it defines %s)", name, strings.Join(names, ", "))
	}
	return mp, nil
}

// Resolve applies the mapping the options name to the request's claims. See
// Mapping.Apply for its outcomes.
func (m *Mapper) Resolve(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	cfg := m.cfg.Load()
	if cfg == nil {
		return sdk.Identity{}, errors.New("plugin is not configured: no Configure call has succeeded")
	}
	if req.Resolver != ResolverName {
		return sdk.Identity{}, sdk.InvalidInputf("Resolver", "%q is not offered by this plugin (it offers %s)", req.Resolver, ResolverName)
	}
	mp, err := cfg.pick(req.Options)
	if err != nil {
		return sdk.Identity{}, err
	}
	if err := ctx.Err(); err != nil {
		return sdk.Identity{}, fmt.Errorf("mapping %s: %w", mp.Name, err)
	}
	return mp.Apply(ctx, req, cfg.Timeout, m.log())
}
