// Package config is spectroauth's configuration: the typed schema, the embedded
// defaults, loading (YAML file, ${VAR} substitution, SPECTROAUTH_ environment
// overrides) and validation that names the exact key path of every problem.
//
// The key names are a public contract: users depend on them. Add keys; never
// rename one.
//
// # Layers
//
// [Load] builds a [Config] from, lowest first:
//
//  1. the general defaults of [Defaults] (listen address, storage, durations);
//  2. a YAML file, or, when no path is given, the embedded development
//     configuration (defaults.yaml: the dev OpenID provider and its demo users);
//  3. SPECTROAUTH_ environment variables, "__" between levels, matched
//     case-insensitively against the schema: SPECTROAUTH_SERVER__LISTEN sets
//     server.listen, SPECTROAUTH_AUTH__PROVIDERS__SPECTROCLOUD__PRODUCTION__CLIENTID
//     sets auth.providers.spectrocloud.production.clientId, and a number selects a
//     list element (SPECTROAUTH_KUBERNETES__CLUSTERS__0__URL; the next free index
//     appends). A list of strings also takes a comma-separated value. Every
//     SPECTROAUTH_ variable must name a key: a typo is an error, not a no-op;
//  4. ${VAR} substitution in every string value, including lists, maps and the
//     free-form options/config of plugins. $${ is a literal ${. A variable that
//     is not set is an error naming the key and the variable; an empty one is
//     allowed. Substituted text is not scanned again. Beware: a variable named
//     SPECTROAUTH_… is also read by layer 3, so do not use that prefix for ${VAR}.
//
// Then the per-environment, per-plugin and per-source defaults are filled in (they
// live in maps and lists, which a defaults layer cannot reach), and [Config.Validate]
// reports every problem at once, each with its key path.
//
// Durations take Go syntax (90s, 5m, 1h30m) plus whole days (7d). Keys are matched
// exactly; an unknown key is an error naming its path. Only the options of
// resolvers, strategies and sources and the config of plugins are free-form.
package config

import (
	"log/slog"
	"time"
)

// Config is the whole daemon configuration. Get one from [Load]; the zero value
// is not valid.
type Config struct {
	Server Server `koanf:"server"`
	App    App    `koanf:"app"`
	Auth   Auth   `koanf:"auth"`
	// Plugins are the out-of-process plugins by name (lowercase letters, digits
	// and -; "builtin" is reserved).
	Plugins     map[string]Plugin `koanf:"plugins"`
	Kubernetes  Kubernetes        `koanf:"kubernetes"`
	PaletteAPI  PaletteAPI        `koanf:"paletteApi"`
	Storage     Storage           `koanf:"storage"`
	DevProvider DevProvider       `koanf:"devProvider"`

	// origins records, by key path, the variables that ${VAR} substitution put
	// into a value: errors mention them and Dump redacts such free-form values.
	origins map[string][]string
}

// Server is where the daemon listens and how it is reached from outside.
type Server struct {
	// Listen is the TCP address (host:port) the daemon binds.
	// Default 127.0.0.1:7007.
	Listen string `koanf:"listen"`
	// BaseURL is the daemon's external http(s) URL, with no query or fragment;
	// auth routes live under {BaseURL}/api/auth. Required.
	BaseURL string `koanf:"baseUrl"`
	// ShutdownTimeout bounds the graceful drain of in-flight requests. Default 15s.
	ShutdownTimeout time.Duration `koanf:"shutdownTimeout"`
	// MetricsListen, when set, is a second TCP address (host:port) that
	// serves Prometheus metrics at /metrics, without authentication: bind it
	// to loopback or an address only the scraper reaches. Default off.
	MetricsListen string `koanf:"metricsListen"`
	// TrustedProxies are the reverse proxies (CIDRs or addresses) whose
	// X-Forwarded-For names the client; from anyone else the header is
	// ignored and the connection's peer is the client. Default none.
	TrustedProxies []string `koanf:"trustedProxies"`
	// HostPrefixedCookies names the session cookies __Host-spectrocloud-…
	// (Path=/, Secure, host-only): no sibling subdomain can plant one. Only
	// for a daemon on an https host of its own, not Backstage's host. Default
	// false (Backstage's own cookie names).
	HostPrefixedCookies bool `koanf:"hostPrefixedCookies"`
	// RateLimits bound the unauthenticated sign-in routes.
	RateLimits RateLimits `koanf:"rateLimits"`
}

// RateLimits bound what clients may ask of the sign-in routes (/start, the
// callback, the command-line and device routes).
type RateLimits struct {
	// SignInsPerClientPerMinute is each client address's sustained rate
	// (IPv6: per /64). Default 60.
	SignInsPerClientPerMinute int `koanf:"signInsPerClientPerMinute"`
	// SignInBurst is how many requests a client may make at once. Default 30.
	SignInBurst int `koanf:"signInBurst"`
	// CodeExchangesPerSecond bounds the calls to the provider's token
	// endpoint for sign-ins, all clients together (burst: one second's
	// worth times five). Default 20.
	CodeExchangesPerSecond int `koanf:"codeExchangesPerSecond"`
}

// App describes the Backstage app whose origin may receive sign-in results.
type App struct {
	// BaseURL is the Backstage app's http(s) URL; its origin is always allowed
	// to receive sign-in results. Required.
	BaseURL string `koanf:"baseUrl"`
}

// Auth holds Backstage auth settings and the SpectroCloud provider.
type Auth struct {
	// ExtraAllowedOrigins are patterns (case-insensitive) of further origins
	// allowed to receive sign-in results: scheme://host[:port], where * may
	// appear only inside host labels and never crosses a dot or a slash, and
	// the last two labels stay literal: https://*.example.com or
	// https://pr-*.preview.example.com:8443, never https://* or https://*.com.
	ExtraAllowedOrigins []string `koanf:"extraAllowedOrigins"`
	// BackstageTokenExpiration is the lifetime of issued Backstage tokens,
	// 10m to 24h. Default 1h.
	BackstageTokenExpiration time.Duration `koanf:"backstageTokenExpiration"`
	// IncludeOwnershipClaim puts `ent` into Backstage tokens. Current Backstage
	// leaves it out and serves ownership from /v1/userinfo; so do we by default.
	IncludeOwnershipClaim bool `koanf:"includeOwnershipClaim"`
	// Providers holds the auth providers by id; only spectrocloud exists.
	Providers Providers `koanf:"providers"`
}

// Providers maps a provider id to its environments.
type Providers struct {
	// SpectroCloud maps a Backstage environment name (development, production, …)
	// to its provider settings. At least one environment is required.
	SpectroCloud map[string]ProviderEnv `koanf:"spectrocloud"`
}

// ProviderEnv is the SpectroCloud OpenID Connect client of one Backstage environment.
//
// Endpoints come either from discovery (set Issuer alone) or by hand (set all of
// AuthorizationURL, TokenURL and JWKSURL; see [ProviderEnv.ManualEndpoints]).
// Every provider URL must be absolute https; http is accepted only with
// AllowInsecureIssuer on a loopback host.
type ProviderEnv struct {
	// Issuer is required: it is the `iss` every ID token must carry. Without
	// manual endpoints it also enables discovery, and the discovered issuer must
	// equal it exactly.
	Issuer string `koanf:"issuer"`
	// AuthorizationURL, TokenURL and JWKSURL are given by hand for tenants that
	// serve no discovery document (all three, or none). Setting them skips discovery.
	AuthorizationURL string `koanf:"authorizationUrl"`
	TokenURL         string `koanf:"tokenUrl"`
	JWKSURL          string `koanf:"jwksUrl"`
	// UserinfoURL, RevocationURL and LogoutURL are optional manual endpoints.
	UserinfoURL   string `koanf:"userinfoUrl"`
	RevocationURL string `koanf:"revocationUrl"`
	LogoutURL     string `koanf:"logoutUrl"`
	// SigningAlgorithms allowed for ID tokens in manual mode. Default [RS256]
	// with manual endpoints; with discovery, unset means what the provider advertises.
	SigningAlgorithms []string `koanf:"signingAlgorithms"`

	// ClientID is the OAuth client id registered with the tenant. Required.
	ClientID string `koanf:"clientId"`
	// ClientSecret is the OAuth client secret. Required; never printed.
	ClientSecret Secret `koanf:"clientSecret"`
	// Scopes requested at sign-in; must contain openid. Default [openid, profile, email].
	Scopes []string `koanf:"scopes"`
	// Prompt is passed to the authorization endpoint when set: space-separated
	// values among none, login, consent, select_account.
	Prompt string `koanf:"prompt"`
	// TokenEndpointAuthMethod is client_secret_basic or client_secret_post.
	// Default client_secret_basic.
	TokenEndpointAuthMethod string `koanf:"tokenEndpointAuthMethod"`
	// AllowInsecureIssuer permits http:// provider URLs on a loopback host
	// (localhost, 127.0.0.0/8, ::1): tests and development only.
	AllowInsecureIssuer bool `koanf:"allowInsecureIssuer"`
	// TrustEmailWithoutVerifiedClaim accepts `email` when `email_verified` is absent.
	TrustEmailWithoutVerifiedClaim bool `koanf:"trustEmailWithoutVerifiedClaim"`
	// CallbackURL overrides {server.baseUrl}/api/auth/spectrocloud/handler/frame.
	CallbackURL string `koanf:"callbackUrl"`
	// RefreshMargin: upstream tokens are refreshed when the ID token has less
	// left. At least 0 and less than SessionDuration. Default 5m.
	RefreshMargin time.Duration `koanf:"refreshMargin"`
	// RevalidateInterval: each session asks the provider at least this often
	// (a refresh grant, or userinfo without one), however long its ID token
	// lives, so a user disabled upstream loses access within it. From 1m to
	// sessionDuration. Default 15m.
	RevalidateInterval time.Duration `koanf:"revalidateInterval"`
	// SessionDuration bounds a session (and the refresh cookie's max-age).
	// Default 7 days (168h); at most 30 days.
	SessionDuration time.Duration `koanf:"sessionDuration"`
	// SignIn configures how a SpectroCloud user becomes a Backstage identity.
	SignIn SignIn `koanf:"signIn"`
}

// SignIn is the sign-in resolver chain.
type SignIn struct {
	// Resolvers are tried in order: the first identity wins, "not found" falls
	// through, any other error fails the sign-in. At least one is required.
	Resolvers []ResolverRef `koanf:"resolvers"`
}

// ResolverRef names one resolver offered by a plugin.
type ResolverRef struct {
	// Plugin is a key of plugins:, or "builtin" for the resolvers compiled into the daemon.
	Plugin string `koanf:"plugin"`
	// Resolver is one of the names the plugin offers. Required.
	Resolver string `koanf:"resolver"`
	// Options are passed to the plugin as-is (free-form).
	Options map[string]any `koanf:"options"`
}

// BuiltinPlugin is the reserved plugin name of the resolvers compiled into the daemon.
const BuiltinPlugin = "builtin"

// Plugin declares one out-of-process plugin binary.
type Plugin struct {
	// Command is the path to the binary. Required.
	Command string `koanf:"command"`
	// SHA256 is the hex digest of the binary (64 hex characters); the daemon
	// refuses any other bytes. Required.
	SHA256 string `koanf:"sha256"`
	// Args are the binary's command-line arguments.
	Args []string `koanf:"args" redact:"substituted"`
	// Env is the only environment the plugin sees. Its values are treated as
	// secrets; the keys must be valid variable names.
	Env map[string]Secret `koanf:"env"`
	// Config is handed to the plugin once at start (free-form).
	Config map[string]any `koanf:"config"`
	// CallTimeout is the deadline of every call to the plugin: more than 0, at
	// most 1m. Default 2s.
	CallTimeout time.Duration `koanf:"callTimeout"`
	// ReadPaths are absolute paths (files or directories) the plugin may
	// read and execute besides the system's (/usr, /lib, /etc/ssl, …),
	// where the kernel restricts plugins with Landlock: for instance the
	// folder of a script plugin's program.
	ReadPaths []string `koanf:"readPaths"`
}

// Kubernetes configures per-user cluster credentials.
type Kubernetes struct {
	// Clusters are static clusters.
	Clusters []Cluster `koanf:"clusters"`
	// Sources are discovery plugins whose clusters merge with the static ones (static wins).
	Sources []Source `koanf:"sources"`
	// Audit is where grants and refusals are written.
	Audit Audit `koanf:"audit"`
	// Catalog shapes the Backstage entities served at
	// {baseUrl}/api/auth/spectrocloud/kubernetes/catalog-info.yaml.
	Catalog Catalog `koanf:"catalog"`
}

// PaletteAPI configures {baseUrl}/api/auth/spectrocloud/palette/<path>:
// calls to SpectroCloud Palette's REST API as the signed-in user, with the
// Palette session token the provider handed out at sign-in.
type PaletteAPI struct {
	// Enabled mounts the route. Default false.
	Enabled bool `koanf:"enabled"`
	// URL is Palette's API (https://api.spectrocloud.com, or a dedicated
	// console's origin) for every environment. Default: the origin of each
	// environment's issuer.
	URL string `koanf:"url"`
	// Allow lists "METHOD /v1/path/prefix" rules for methods beyond GET and
	// HEAD, e.g. "POST /v1/dashboard/spectroclusters/search".
	Allow []string `koanf:"allow"`
	// Timeout bounds each call to Palette. Default 10s.
	Timeout time.Duration `koanf:"timeout"`
}

// Catalog configures the clusters' Backstage catalog entities (kind Resource,
// spec.type kubernetes-cluster).
type Catalog struct {
	// Owner is every entity's spec.owner, an entity ref such as
	// group:default/platform. Default group:default/platform.
	Owner string `koanf:"owner"`
	// Public serves catalog-info.yaml without a Backstage token, so that
	// Backstage's catalog (whose URL reader sends no credentials) can read it
	// as a location. The entities hold API server URLs and CA certificates,
	// never credentials. Default false: a Backstage user token is required.
	Public bool `koanf:"public"`
}

// Cluster is one Kubernetes API server.
type Cluster struct {
	// Name identifies the cluster; unique among the static clusters.
	Name string `koanf:"name"`
	// URL is the API server's https URL.
	URL string `koanf:"url"`
	// CAData is the base64-encoded PEM bundle that signs the API server's
	// certificate, as in a kubeconfig; empty means the system roots.
	CAData string `koanf:"caData"`
	// Strategy decides which credential a user gets for this cluster. Required.
	Strategy StrategyRef `koanf:"strategy"`
}

// StrategyRef names a cluster strategy offered by a plugin.
type StrategyRef struct {
	// Plugin is a key of plugins:.
	Plugin string `koanf:"plugin"`
	// Strategy is one of the names the plugin offers.
	Strategy string `koanf:"strategy"`
	// Options are passed to the plugin as-is (free-form).
	Options map[string]any `koanf:"options"`
}

// Source is a cluster discovery plugin.
type Source struct {
	// Plugin is a key of plugins: that discovers clusters.
	Plugin string `koanf:"plugin"`
	// Options are passed to the plugin as-is (free-form).
	Options map[string]any `koanf:"options"`
	// Interval between refreshes of the cluster list, at least 10s. Default 5m.
	Interval time.Duration `koanf:"interval"`
	// Strategy applies to discovered clusters that do not name their own.
	// Optional; when its plugin is set, its strategy is required.
	Strategy StrategyRef `koanf:"strategy"`
}

// Audit configures the credential audit log.
type Audit struct {
	// Sink is "stderr" or a file path. Default stderr.
	Sink string `koanf:"sink"`
}

// Storage selects where keys and sessions live.
type Storage struct {
	// Type is file (embedded default, one machine) or postgres (replicas).
	// Default file.
	Type string `koanf:"type"`
	// Path is the data directory of the file store (required for file).
	// Default ./data.
	Path string `koanf:"path"`
	// PostgresURL is the connection string of the postgres store (required for
	// postgres); a URL (postgres://…) or key=value pairs. Never printed.
	PostgresURL Secret `koanf:"postgresUrl"`
}

// DevProvider is the embedded development OpenID provider used by `make run`.
// It only starts on a loopback listen address.
type DevProvider struct {
	// Enabled serves the development provider under {server.baseUrl}/dev/oidc.
	// Allowed only when server.listen is a loopback address.
	Enabled bool `koanf:"enabled"`
	// Users offered on its login page; at least one when enabled, usernames unique.
	Users []DevUser `koanf:"users"`
}

// DevUser is one user of the development provider.
type DevUser struct {
	// Username is what the login page shows and the `sub` claim.
	Username string `koanf:"username"`
	// Email is the `email` claim.
	Email string `koanf:"email"`
	// EmailVerified is the `email_verified` claim; unset (nil) leaves the claim
	// out, to exercise trustEmailWithoutVerifiedClaim.
	EmailVerified *bool `koanf:"emailVerified"`
	// GivenName and FamilyName are the `given_name` and `family_name` claims.
	GivenName  string `koanf:"givenName"`
	FamilyName string `koanf:"familyName"`
	// Groups is the `groups` claim.
	Groups []string `koanf:"groups"`
}

// Secret is a string that never prints: logs, errors, %v, JSON, YAML and slog
// show it redacted. Use [Secret.Reveal] where the value itself is needed.
type Secret string

// String redacts the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return RedactedText
}

// GoString redacts the secret under %#v.
func (s Secret) GoString() string { return s.String() }

// MarshalText redacts the secret when the value is encoded.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LogValue redacts the secret in log/slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Reveal returns the secret's value, for the one place that must use it.
func (s Secret) Reveal() string { return string(s) }

// ManualEndpoints reports whether the endpoints are given by hand (all of
// authorizationUrl, tokenUrl and jwksUrl set), which skips discovery.
func (p ProviderEnv) ManualEndpoints() bool {
	return p.AuthorizationURL != "" && p.TokenURL != "" && p.JWKSURL != ""
}
