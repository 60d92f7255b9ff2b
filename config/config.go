// Package config is spectroauth's configuration: the typed schema, the embedded
// defaults, loading (YAML file, ${VAR} substitution, SPECTROAUTH_ environment
// overrides) and validation that names the exact key path of every problem.
//
// The key names are a public contract: users depend on them. Add keys; never
// rename one.
package config

import "time"

// Config is the whole daemon configuration.
type Config struct {
	Server      Server            `koanf:"server"`
	App         App               `koanf:"app"`
	Auth        Auth              `koanf:"auth"`
	Plugins     map[string]Plugin `koanf:"plugins"`
	Kubernetes  Kubernetes        `koanf:"kubernetes"`
	Storage     Storage           `koanf:"storage"`
	DevProvider DevProvider       `koanf:"devProvider"`
}

// Server is where the daemon listens and how it is reached from outside.
type Server struct {
	// Listen is the TCP address the daemon binds, e.g. 127.0.0.1:7007.
	Listen string `koanf:"listen"`
	// BaseURL is the daemon's external URL; auth routes live under {BaseURL}/api/auth.
	BaseURL string `koanf:"baseUrl"`
	// ShutdownTimeout bounds the graceful drain of in-flight requests.
	ShutdownTimeout time.Duration `koanf:"shutdownTimeout"`
}

// App describes the Backstage app whose origin may receive sign-in results.
type App struct {
	// BaseURL is the Backstage app's URL; its origin is always allowed.
	BaseURL string `koanf:"baseUrl"`
}

// Auth holds Backstage auth settings and the SpectroCloud provider.
type Auth struct {
	// ExtraAllowedOrigins are glob patterns (case-insensitive; * never crosses a /)
	// of further origins allowed to receive sign-in results.
	ExtraAllowedOrigins []string `koanf:"extraAllowedOrigins"`
	// BackstageTokenExpiration is the lifetime of issued Backstage tokens (10m to 24h).
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
	// to its provider settings.
	SpectroCloud map[string]ProviderEnv `koanf:"spectrocloud"`
}

// ProviderEnv is the SpectroCloud OpenID Connect client of one Backstage environment.
type ProviderEnv struct {
	// Issuer enables discovery; the discovered issuer must equal it exactly.
	Issuer string `koanf:"issuer"`
	// AuthorizationURL, TokenURL and JWKSURL are given by hand for tenants that
	// serve no discovery document (all three, or none).
	AuthorizationURL string `koanf:"authorizationUrl"`
	TokenURL         string `koanf:"tokenUrl"`
	JWKSURL          string `koanf:"jwksUrl"`
	// UserinfoURL, RevocationURL and LogoutURL are optional manual endpoints.
	UserinfoURL   string `koanf:"userinfoUrl"`
	RevocationURL string `koanf:"revocationUrl"`
	LogoutURL     string `koanf:"logoutUrl"`
	// SigningAlgorithms allowed for ID tokens in manual mode (default RS256).
	SigningAlgorithms []string `koanf:"signingAlgorithms"`

	ClientID     string `koanf:"clientId"`
	ClientSecret Secret `koanf:"clientSecret"`
	// Scopes requested at sign-in (default openid profile email).
	Scopes []string `koanf:"scopes"`
	// Prompt is passed to the authorization endpoint when set (e.g. login, consent).
	Prompt string `koanf:"prompt"`
	// TokenEndpointAuthMethod is client_secret_basic (default) or client_secret_post.
	TokenEndpointAuthMethod string `koanf:"tokenEndpointAuthMethod"`
	// AllowInsecureIssuer permits an http:// issuer on a loopback host (tests, development).
	AllowInsecureIssuer bool `koanf:"allowInsecureIssuer"`
	// TrustEmailWithoutVerifiedClaim accepts `email` when `email_verified` is absent.
	TrustEmailWithoutVerifiedClaim bool `koanf:"trustEmailWithoutVerifiedClaim"`
	// CallbackURL overrides {server.baseUrl}/api/auth/spectrocloud/handler/frame.
	CallbackURL string `koanf:"callbackUrl"`
	// RefreshMargin: upstream tokens are refreshed when the ID token has less left.
	RefreshMargin time.Duration `koanf:"refreshMargin"`
	// SessionDuration bounds a session (and the refresh cookie's max-age).
	SessionDuration time.Duration `koanf:"sessionDuration"`
	// SignIn configures how a SpectroCloud user becomes a Backstage identity.
	SignIn SignIn `koanf:"signIn"`
}

// SignIn is the sign-in resolver chain.
type SignIn struct {
	// Resolvers are tried in order: the first identity wins, "not found" falls
	// through, any other error fails the sign-in.
	Resolvers []ResolverRef `koanf:"resolvers"`
}

// ResolverRef names one resolver offered by a plugin.
type ResolverRef struct {
	// Plugin is a key of plugins:, or "builtin" for the resolvers compiled into the daemon.
	Plugin string `koanf:"plugin"`
	// Resolver is one of the names the plugin offers.
	Resolver string `koanf:"resolver"`
	// Options are passed to the plugin as-is.
	Options map[string]any `koanf:"options"`
}

// BuiltinPlugin is the reserved plugin name of the resolvers compiled into the daemon.
const BuiltinPlugin = "builtin"

// Plugin declares one out-of-process plugin binary.
type Plugin struct {
	// Command is the path to the binary.
	Command string `koanf:"command"`
	// SHA256 is the hex digest of the binary; the daemon refuses any other bytes.
	SHA256 string `koanf:"sha256"`
	Args   []string `koanf:"args"`
	// Env is the only environment the plugin sees.
	Env map[string]Secret `koanf:"env"`
	// Config is handed to the plugin once at start.
	Config map[string]any `koanf:"config"`
	// CallTimeout is the deadline of every call to the plugin (default 2s).
	CallTimeout time.Duration `koanf:"callTimeout"`
}

// Kubernetes configures per-user cluster credentials.
type Kubernetes struct {
	// Clusters are static clusters.
	Clusters []Cluster `koanf:"clusters"`
	// Sources are discovery plugins whose clusters merge with the static ones (static wins).
	Sources []Source `koanf:"sources"`
	// Audit is where grants and refusals are written.
	Audit Audit `koanf:"audit"`
}

// Cluster is one Kubernetes API server.
type Cluster struct {
	Name   string `koanf:"name"`
	URL    string `koanf:"url"`
	CAData string `koanf:"caData"`
	// Strategy decides which credential a user gets for this cluster.
	Strategy StrategyRef `koanf:"strategy"`
}

// StrategyRef names a cluster strategy offered by a plugin.
type StrategyRef struct {
	Plugin   string         `koanf:"plugin"`
	Strategy string         `koanf:"strategy"`
	Options  map[string]any `koanf:"options"`
}

// Source is a cluster discovery plugin.
type Source struct {
	Plugin  string         `koanf:"plugin"`
	Options map[string]any `koanf:"options"`
	// Interval between refreshes of the cluster list (default 5m).
	Interval time.Duration `koanf:"interval"`
	// Strategy applies to discovered clusters that do not name their own.
	Strategy StrategyRef `koanf:"strategy"`
}

// Audit configures the credential audit log.
type Audit struct {
	// Sink is "stderr" (default) or a file path.
	Sink string `koanf:"sink"`
}

// Storage selects where keys and sessions live.
type Storage struct {
	// Type is file (embedded default, one machine) or postgres (replicas).
	Type string `koanf:"type"`
	// Path is the data directory of the file store.
	Path string `koanf:"path"`
	// PostgresURL is the connection string of the postgres store.
	PostgresURL Secret `koanf:"postgresUrl"`
}

// DevProvider is the embedded development OpenID provider used by `make run`.
// It only starts on a loopback listen address.
type DevProvider struct {
	Enabled bool `koanf:"enabled"`
	// Users offered on its login page.
	Users []DevUser `koanf:"users"`
}

// DevUser is one user of the development provider.
type DevUser struct {
	Username      string   `koanf:"username"`
	Email         string   `koanf:"email"`
	EmailVerified *bool    `koanf:"emailVerified"`
	GivenName     string   `koanf:"givenName"`
	FamilyName    string   `koanf:"familyName"`
	Groups        []string `koanf:"groups"`
}

// Secret is a string that never prints: logs, errors and %v show it redacted.
type Secret string

// String redacts the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts the secret under %#v.
func (s Secret) GoString() string { return s.String() }

// MarshalText redacts the secret when the value is encoded.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret's value, for the one place that must use it.
func (s Secret) Reveal() string { return string(s) }
