package config

import (
	_ "embed"
	"time"
)

// The general defaults. They apply whether the configuration comes from a file
// or from the embedded development configuration.
const (
	// DefaultListen is server.listen.
	DefaultListen = "127.0.0.1:7007"
	// DefaultShutdownTimeout is server.shutdownTimeout.
	DefaultShutdownTimeout = 15 * time.Second
	// DefaultBackstageTokenExpiration is auth.backstageTokenExpiration.
	DefaultBackstageTokenExpiration = time.Hour
	// MinBackstageTokenExpiration and MaxBackstageTokenExpiration bound
	// auth.backstageTokenExpiration.
	MinBackstageTokenExpiration = 10 * time.Minute
	MaxBackstageTokenExpiration = 24 * time.Hour
	// DefaultTokenEndpointAuthMethod is each provider environment's tokenEndpointAuthMethod.
	DefaultTokenEndpointAuthMethod = "client_secret_basic"
	// DefaultSignInsPerClientPerMinute, DefaultSignInBurst and
	// DefaultCodeExchangesPerSecond are server.rateLimits.
	DefaultSignInsPerClientPerMinute = 60
	DefaultSignInBurst               = 30
	DefaultCodeExchangesPerSecond    = 20
	// DefaultRefreshMargin is each provider environment's refreshMargin.
	DefaultRefreshMargin = 5 * time.Minute
	// DefaultRevalidateInterval is each provider environment's
	// revalidateInterval: at most four provider calls per session-hour.
	DefaultRevalidateInterval = 15 * time.Minute
	// MinRevalidateInterval bounds revalidateInterval from below.
	MinRevalidateInterval = time.Minute
	// DefaultSessionDuration is each provider environment's sessionDuration (7 days).
	DefaultSessionDuration = 7 * 24 * time.Hour
	// MaxSessionDuration caps sessionDuration (30 days).
	MaxSessionDuration = 30 * 24 * time.Hour
	// DefaultPluginCallTimeout is each plugin's callTimeout.
	DefaultPluginCallTimeout = 2 * time.Second
	// MaxPluginCallTimeout caps a plugin's callTimeout.
	MaxPluginCallTimeout = time.Minute
	// DefaultSourceInterval is each cluster source's interval.
	DefaultSourceInterval = 5 * time.Minute
	// MinSourceInterval is the shortest allowed source interval.
	MinSourceInterval = 10 * time.Second
	// DefaultAuditSink is kubernetes.audit.sink.
	DefaultAuditSink = "stderr"
	// DefaultCatalogOwner is kubernetes.catalog.owner.
	DefaultCatalogOwner = "group:default/platform"
	// DefaultStorageType and DefaultStoragePath are storage.type and storage.path.
	DefaultStorageType = "file"
	DefaultStoragePath = "./data"
)

// DefaultScopes returns each provider environment's default scopes.
func DefaultScopes() []string { return []string{"openid", "profile", "email"} }

// DefaultSigningAlgorithms returns the ID token algorithms allowed by default
// with manual endpoints.
func DefaultSigningAlgorithms() []string { return []string{"RS256"} }

// devConfig is the embedded development configuration, loaded when Load is
// given no path. See defaults.yaml.
//
//go:embed defaults.yaml
var devConfig []byte

// Defaults returns the general defaults: the lowest layer of every load. Values
// that live in maps or lists (per provider environment, per plugin, per source)
// cannot be layered and are filled in after decoding; they are the Default*
// constants and functions of this package.
func Defaults() *Config {
	return &Config{
		Server: Server{
			Listen:          DefaultListen,
			ShutdownTimeout: DefaultShutdownTimeout,
			RateLimits: RateLimits{
				SignInsPerClientPerMinute: DefaultSignInsPerClientPerMinute,
				SignInBurst:               DefaultSignInBurst,
				CodeExchangesPerSecond:    DefaultCodeExchangesPerSecond,
			},
		},
		Auth: Auth{
			BackstageTokenExpiration: DefaultBackstageTokenExpiration,
		},
		Kubernetes: Kubernetes{
			Audit:   Audit{Sink: DefaultAuditSink},
			Catalog: Catalog{Owner: DefaultCatalogOwner},
		},
		Storage: Storage{
			Type: DefaultStorageType,
			Path: DefaultStoragePath,
		},
	}
}

// applyDefaults fills in the defaults that live inside maps and lists. raw is
// the merged, substituted configuration: a key that is present there, even with
// a zero value (refreshMargin: 0), is the user's choice and stays.
func (c *Config) applyDefaults(raw map[string]any) {
	for name, env := range c.Auth.Providers.SpectroCloud {
		at := func(key string) bool {
			return present(raw, "auth", "providers", "spectrocloud", name, key)
		}
		if !at("scopes") {
			env.Scopes = DefaultScopes()
		}
		if !at("tokenEndpointAuthMethod") {
			env.TokenEndpointAuthMethod = DefaultTokenEndpointAuthMethod
		}
		if !at("refreshMargin") {
			env.RefreshMargin = DefaultRefreshMargin
		}
		if !at("revalidateInterval") {
			env.RevalidateInterval = DefaultRevalidateInterval
		}
		if !at("sessionDuration") {
			env.SessionDuration = DefaultSessionDuration
		}
		if !at("signingAlgorithms") && env.ManualEndpoints() {
			env.SigningAlgorithms = DefaultSigningAlgorithms()
		}
		c.Auth.Providers.SpectroCloud[name] = env
	}
	for name, p := range c.Plugins {
		if !present(raw, "plugins", name, "callTimeout") {
			p.CallTimeout = DefaultPluginCallTimeout
		}
		c.Plugins[name] = p
	}
	sources, _ := lookup(raw, "kubernetes", "sources").([]any)
	for i := range c.Kubernetes.Sources {
		var src map[string]any
		if i < len(sources) {
			src, _ = sources[i].(map[string]any)
		}
		if src["interval"] == nil {
			c.Kubernetes.Sources[i].Interval = DefaultSourceInterval
		}
	}
}

// lookup returns the value at a key path of nested maps, or nil.
func lookup(m map[string]any, keys ...string) any {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

// present reports whether a key path holds a non-null value.
func present(m map[string]any, keys ...string) bool {
	return lookup(m, keys...) != nil
}
