package config

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// prod and staging give a test a provider environment to change in place.
func prod(c *Config, f func(*ProviderEnv)) {
	e := c.Auth.Providers.SpectroCloud["production"]
	f(&e)
	c.Auth.Providers.SpectroCloud["production"] = e
}

func staging(c *Config, f func(*ProviderEnv)) {
	e := c.Auth.Providers.SpectroCloud["staging"]
	f(&e)
	c.Auth.Providers.SpectroCloud["staging"] = e
}

func plugin(c *Config, name string, f func(*Plugin)) {
	p := c.Plugins[name]
	f(&p)
	c.Plugins[name] = p
}

const (
	pp = "auth.providers.spectrocloud.production"
	sp = "auth.providers.spectrocloud.staging"
)

// TestValidate changes testdata/valid.yaml one thing at a time and expects
// exactly the listed problems.
func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   []string // nil: valid
	}{
		{"valid as is", func(*Config) {}, nil},

		// server, app
		{"listen empty", func(c *Config) { c.Server.Listen = "" }, []string{"server.listen: required"}},
		{"listen without port", func(c *Config) { c.Server.Listen = "localhost" },
			[]string{`server.listen: must be host:port, e.g. 127.0.0.1:7007, not "localhost"`}},
		{"listen port out of range", func(c *Config) { c.Server.Listen = "127.0.0.1:70070" },
			[]string{`server.listen: the port must be a number from 0 to 65535, not "127.0.0.1:70070"`}},
		{"listen named port", func(c *Config) { c.Server.Listen = "127.0.0.1:http" },
			[]string{`server.listen: the port must be a number from 0 to 65535, not "127.0.0.1:http"`}},
		{"listen all interfaces", func(c *Config) { c.Server.Listen = ":7007" }, nil},
		{"listen any port", func(c *Config) { c.Server.Listen = "127.0.0.1:0" }, nil},
		{"baseUrl empty", func(c *Config) { c.Server.BaseURL = "" }, []string{"server.baseUrl: required"}},
		{"baseUrl relative", func(c *Config) { c.Server.BaseURL = "/auth" },
			[]string{"server.baseUrl: must be an absolute http:// or https:// URL"}},
		{"baseUrl scheme", func(c *Config) { c.Server.BaseURL = "ftp://auth.example.com" },
			[]string{"server.baseUrl: must use http or https"}},
		{"baseUrl query", func(c *Config) { c.Server.BaseURL = "https://auth.example.com/?a=1" },
			[]string{"server.baseUrl: must not have a query"}},
		{"baseUrl fragment", func(c *Config) { c.Server.BaseURL = "https://auth.example.com/#x" },
			[]string{"server.baseUrl: must not have a fragment"}},
		{"baseUrl with path", func(c *Config) { c.Server.BaseURL = "https://example.com/auth" }, nil},
		{"app baseUrl userinfo", func(c *Config) { c.App.BaseURL = "https://user:pass@backstage.example.com" },
			[]string{"app.baseUrl: must not contain a user name or password"}},
		{"app baseUrl empty", func(c *Config) { c.App.BaseURL = "" }, []string{"app.baseUrl: required"}},
		{"app baseUrl not a URL", func(c *Config) { c.App.BaseURL = "http://[::1" }, []string{"app.baseUrl: not a valid URL"}},
		{"shutdownTimeout negative", func(c *Config) { c.Server.ShutdownTimeout = -time.Second },
			[]string{"server.shutdownTimeout: must not be negative"}},
		{"metricsListen", func(c *Config) { c.Server.MetricsListen = "127.0.0.1:9464" }, nil},
		{"trustedProxies", func(c *Config) { c.Server.TrustedProxies = []string{"10.0.0.0/8", "::1", "10.0.0.0/33", "proxy.local"} }, []string{
			`server.trustedProxies[2]: "10.0.0.0/33" is not a CIDR or an IP address`,
			`server.trustedProxies[3]: "proxy.local" is not a CIDR or an IP address`,
		}},
		{"hostPrefixedCookies on a host of its own", func(c *Config) {
			c.Server.BaseURL, c.App.BaseURL, c.Server.HostPrefixedCookies = "https://auth.example.com", "https://backstage.example.com", true
		}, nil},
		{"hostPrefixedCookies on Backstage's host", func(c *Config) {
			c.Server.BaseURL, c.App.BaseURL, c.Server.HostPrefixedCookies = "https://backstage.example.com", "https://backstage.example.com", true
		}, []string{"server.hostPrefixedCookies: needs a host of the daemon's own: with server.baseUrl on app.baseUrl's host, Path=/ would send the session cookie to every Backstage route"}},
		{"hostPrefixedCookies over http", func(c *Config) {
			c.Server.BaseURL, c.Server.HostPrefixedCookies = "http://localhost:7007", true
		}, []string{"server.hostPrefixedCookies: needs an https server.baseUrl: __Host- cookies are Secure"}},
		{"rateLimits zero", func(c *Config) { c.Server.RateLimits.SignInBurst, c.Server.RateLimits.CodeExchangesPerSecond = 0, -1 }, []string{
			"server.rateLimits.signInBurst: must be at least 1, not 0",
			"server.rateLimits.codeExchangesPerSecond: must be at least 1, not -1",
		}},
		{"metricsListen not host:port", func(c *Config) { c.Server.MetricsListen = "9464" },
			[]string{`server.metricsListen: must be host:port, e.g. 127.0.0.1:7007, not "9464"`}},
		{"metricsListen is listen", func(c *Config) { c.Server.MetricsListen = c.Server.Listen },
			[]string{"server.metricsListen: must differ from server.listen: metrics are served on their own listener"}},

		// auth
		{"origin patterns", func(c *Config) {
			c.Auth.ExtraAllowedOrigins = []string{
				"https://*.example.com", "http://localhost:3000", "https://pr-*.preview.example.com:8443", "https://[::1]:3000",
				"https://example.com/path", "*://example.com", "https://example.com:*", "example.com", "https://*", "https://a..b", "ftp://example.com",
				"https://*.com:443", "https://example.*", "HTTPS://*.Example.COM",
				"https://*.co.uk", "https://*.github.io", "https://a.*.example.com", "https://*.*.co.uk", "https://*.example.co.uk",
			}
		}, []string{
			`auth.extraAllowedOrigins[4]: must be an origin pattern scheme://host[:port] (http or https, no path) with * only inside host labels, e.g. https://*.example.com, not "https://example.com/path"`,
			`auth.extraAllowedOrigins[5]: must be an origin pattern scheme://host[:port] (http or https, no path) with * only inside host labels, e.g. https://*.example.com, not "*://example.com"`,
			`auth.extraAllowedOrigins[6]: must be an origin pattern scheme://host[:port] (http or https, no path) with * only inside host labels, e.g. https://*.example.com, not "https://example.com:*"`,
			`auth.extraAllowedOrigins[7]: must be an origin pattern scheme://host[:port] (http or https, no path) with * only inside host labels, e.g. https://*.example.com, not "example.com"`,
			`auth.extraAllowedOrigins[8]: the host labels after a * must be a registrable domain, not a public suffix such as com or co.uk (e.g. https://*.example.com), not "https://*"`,
			`auth.extraAllowedOrigins[9]: must be an origin pattern scheme://host[:port] (http or https, no path) with * only inside host labels, e.g. https://*.example.com, not "https://a..b"`,
			`auth.extraAllowedOrigins[10]: must be an origin pattern scheme://host[:port] (http or https, no path) with * only inside host labels, e.g. https://*.example.com, not "ftp://example.com"`,
			`auth.extraAllowedOrigins[11]: the host labels after a * must be a registrable domain, not a public suffix such as com or co.uk (e.g. https://*.example.com), not "https://*.com:443"`,
			`auth.extraAllowedOrigins[12]: the host labels after a * must be a registrable domain, not a public suffix such as com or co.uk (e.g. https://*.example.com), not "https://example.*"`,
			`auth.extraAllowedOrigins[14]: the host labels after a * must be a registrable domain, not a public suffix such as com or co.uk (e.g. https://*.example.com), not "https://*.co.uk"`,
			`auth.extraAllowedOrigins[15]: the host labels after a * must be a registrable domain, not a public suffix such as com or co.uk (e.g. https://*.example.com), not "https://*.github.io"`,
			`auth.extraAllowedOrigins[17]: the host labels after a * must be a registrable domain, not a public suffix such as com or co.uk (e.g. https://*.example.com), not "https://*.*.co.uk"`,
		}},
		{"token expiration too short", func(c *Config) { c.Auth.BackstageTokenExpiration = 5 * time.Minute },
			[]string{"auth.backstageTokenExpiration: must be between 10m and 24h, not 5m"}},
		{"token expiration too long", func(c *Config) { c.Auth.BackstageTokenExpiration = 25 * time.Hour },
			[]string{"auth.backstageTokenExpiration: must be between 10m and 24h, not 25h"}},
		{"token expiration bounds", func(c *Config) { c.Auth.BackstageTokenExpiration = 10 * time.Minute }, nil},
		{"token expiration not whole seconds", func(c *Config) { c.Auth.BackstageTokenExpiration = time.Hour + 500*time.Millisecond },
			[]string{"auth.backstageTokenExpiration: must be a whole number of seconds, not 1h0m0.5s"}},
		{"no environment", func(c *Config) { c.Auth.Providers.SpectroCloud = nil },
			[]string{"auth.providers.spectrocloud: at least one environment is required (e.g. development or production)"}},

		// provider environment: endpoints
		{"no issuer", func(c *Config) { prod(c, func(e *ProviderEnv) { e.Issuer = "" }) },
			[]string{pp + ".issuer: required: the iss every ID token must carry (with manual endpoints too), e.g. https://<palette-host>/v1/oidc/tenant/<tenantUid>"}},
		{"manual endpoints incomplete", func(c *Config) { staging(c, func(e *ProviderEnv) { e.TokenURL, e.JWKSURL = "", "" }) }, []string{
			sp + ".tokenUrl: required with manual endpoints: authorizationUrl, tokenUrl and jwksUrl are set together",
			sp + ".jwksUrl: required with manual endpoints: authorizationUrl, tokenUrl and jwksUrl are set together",
		}},
		{"issuer plus partial endpoints", func(c *Config) { prod(c, func(e *ProviderEnv) { e.JWKSURL = "https://palette.example.com/keys" }) }, []string{
			pp + ".authorizationUrl: required with manual endpoints: authorizationUrl, tokenUrl and jwksUrl are set together",
			pp + ".tokenUrl: required with manual endpoints: authorizationUrl, tokenUrl and jwksUrl are set together",
		}},
		{"issuer http", func(c *Config) {
			prod(c, func(e *ProviderEnv) { e.Issuer = "http://palette.example.com/v1/oidc/tenant/t1" })
		},
			[]string{pp + ".issuer: must use https (http needs allowInsecureIssuer: true and a loopback host)"}},
		{"issuer http loopback without the flag", func(c *Config) { prod(c, func(e *ProviderEnv) { e.Issuer = "http://127.0.0.1:5556" }) },
			[]string{pp + ".issuer: must use https (http needs allowInsecureIssuer: true and a loopback host)"}},
		{"issuer http remote with the flag", func(c *Config) {
			prod(c, func(e *ProviderEnv) { e.Issuer, e.AllowInsecureIssuer = "http://palette.example.com", true })
		}, []string{pp + ".issuer: must use https: allowInsecureIssuer permits http only on a loopback host (localhost, 127.0.0.0/8, [::1])"}},
		{"issuer http loopback with the flag", func(c *Config) {
			prod(c, func(e *ProviderEnv) { e.Issuer, e.AllowInsecureIssuer = "http://127.0.0.2:5556/dev", true })
			staging(c, func(e *ProviderEnv) {
				e.AllowInsecureIssuer = true
				e.AuthorizationURL, e.TokenURL, e.JWKSURL = "http://localhost:1/a", "http://[::1]:1/t", "http://127.0.0.1/k"
			})
		}, nil},
		{"issuer query", func(c *Config) { prod(c, func(e *ProviderEnv) { e.Issuer = "https://palette.example.com/?tenant=1" }) },
			[]string{pp + ".issuer: must not have a query"}},
		{"endpoint query allowed", func(c *Config) {
			staging(c, func(e *ProviderEnv) { e.AuthorizationURL = "https://palette.example.com/auth?p=x" })
		}, nil},
		{"endpoint relative", func(c *Config) { staging(c, func(e *ProviderEnv) { e.JWKSURL = "/keys" }) },
			[]string{sp + ".jwksUrl: must be an absolute https:// URL"}},
		{"optional endpoints checked", func(c *Config) {
			staging(c, func(e *ProviderEnv) {
				e.UserinfoURL, e.RevocationURL, e.LogoutURL = "http://palette.example.com/u", "ftp://x/r", "https://x/l#f"
			})
		}, []string{
			sp + ".userinfoUrl: must use https (http needs allowInsecureIssuer: true and a loopback host)",
			sp + ".revocationUrl: must use https",
			sp + ".logoutUrl: must not have a fragment",
		}},
		{"callbackUrl", func(c *Config) { prod(c, func(e *ProviderEnv) { e.CallbackURL = "auth.example.com/cb" }) },
			[]string{pp + ".callbackUrl: must be an absolute http:// or https:// URL"}},
		{"signing algorithms", func(c *Config) { staging(c, func(e *ProviderEnv) { e.SigningAlgorithms = []string{"ES256", "none"} }) },
			[]string{sp + `.signingAlgorithms[1]: unsupported algorithm "none"; use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA`}},
		{"signing algorithms with discovery", func(c *Config) { prod(c, func(e *ProviderEnv) { e.SigningAlgorithms = []string{"ES256"} }) },
			[]string{pp + ".signingAlgorithms: only with manual endpoints (authorizationUrl, tokenUrl, jwksUrl): with discovery the provider's advertised algorithms are used"}},

		// provider environment: client
		{"clientId", func(c *Config) { prod(c, func(e *ProviderEnv) { e.ClientID = "" }) }, []string{pp + ".clientId: required"}},
		{"clientSecret from an empty variable", func(c *Config) { prod(c, func(e *ProviderEnv) { e.ClientSecret = "" }) },
			[]string{pp + ".clientSecret: required (it comes from ${CLIENT_SECRET}, which is empty)"}},
		{"clientSecret literal", func(c *Config) { staging(c, func(e *ProviderEnv) { e.ClientSecret = "" }) },
			[]string{sp + ".clientSecret: required"}},
		{"token endpoint auth method", func(c *Config) { prod(c, func(e *ProviderEnv) { e.TokenEndpointAuthMethod = "private_key_jwt" }) },
			[]string{pp + `.tokenEndpointAuthMethod: must be client_secret_basic or client_secret_post, not "private_key_jwt"`}},
		{"token endpoint auth method post", func(c *Config) { prod(c, func(e *ProviderEnv) { e.TokenEndpointAuthMethod = "client_secret_post" }) }, nil},
		{"scopes without openid", func(c *Config) { prod(c, func(e *ProviderEnv) { e.Scopes = []string{"profile", "email"} }) },
			[]string{pp + ".scopes: must contain openid"}},
		{"scopes empty", func(c *Config) { prod(c, func(e *ProviderEnv) { e.Scopes = []string{} }) },
			[]string{pp + ".scopes: must contain openid"}},
		{"scope with a space", func(c *Config) { prod(c, func(e *ProviderEnv) { e.Scopes = []string{"openid", "a b"} }) },
			[]string{pp + ".scopes[1]: a scope is one word: no spaces, quotes or backslashes"}},
		{"prompt", func(c *Config) { prod(c, func(e *ProviderEnv) { e.Prompt = "login bogus" }) },
			[]string{pp + `.prompt: unsupported value "bogus"; use space-separated none, login, consent, select_account`}},
		{"prompt ok", func(c *Config) { prod(c, func(e *ProviderEnv) { e.Prompt = "login consent" }) }, nil},

		// provider environment: durations
		{"refreshMargin negative", func(c *Config) { prod(c, func(e *ProviderEnv) { e.RefreshMargin = -time.Minute }) },
			[]string{pp + ".refreshMargin: must not be negative"}},
		{"refreshMargin zero", func(c *Config) { prod(c, func(e *ProviderEnv) { e.RefreshMargin = 0 }) }, nil},
		{"revalidateInterval too short", func(c *Config) { prod(c, func(e *ProviderEnv) { e.RevalidateInterval = 30 * time.Second }) },
			[]string{pp + ".revalidateInterval: must be at least 1m, not 30s"}},
		{"revalidateInterval zero", func(c *Config) { prod(c, func(e *ProviderEnv) { e.RevalidateInterval = 0 }) },
			[]string{pp + ".revalidateInterval: must be at least 1m, not 0s"}},
		{"revalidateInterval over sessionDuration", func(c *Config) {
			prod(c, func(e *ProviderEnv) { e.RevalidateInterval, e.SessionDuration = 2*time.Hour, time.Hour })
		}, []string{pp + ".revalidateInterval: must be at most sessionDuration (1h), not 2h"}},
		{"revalidateInterval 1m", func(c *Config) { prod(c, func(e *ProviderEnv) { e.RevalidateInterval = time.Minute }) }, nil},
		{"refreshMargin not below sessionDuration", func(c *Config) {
			prod(c, func(e *ProviderEnv) { e.RefreshMargin, e.SessionDuration = time.Hour, time.Hour })
		}, []string{pp + ".refreshMargin: must be less than sessionDuration (1h)"}},
		{"sessionDuration zero", func(c *Config) { prod(c, func(e *ProviderEnv) { e.SessionDuration = 0 }) },
			[]string{pp + ".sessionDuration: must be positive"}},
		{"sessionDuration over the cap", func(c *Config) { prod(c, func(e *ProviderEnv) { e.SessionDuration = 31 * 24 * time.Hour }) },
			[]string{pp + ".sessionDuration: must be at most 30 days (720h), not 744h"}},
		{"sessionDuration at the cap", func(c *Config) { prod(c, func(e *ProviderEnv) { e.SessionDuration = MaxSessionDuration }) }, nil},

		// provider environment: resolvers
		{"no resolvers", func(c *Config) { prod(c, func(e *ProviderEnv) { e.SignIn.Resolvers = nil }) },
			[]string{pp + ".signIn.resolvers: at least one resolver is required"}},
		{"resolver plugin empty", func(c *Config) { prod(c, func(e *ProviderEnv) { e.SignIn.Resolvers[1].Plugin = "" }) },
			[]string{pp + ".signIn.resolvers[1].plugin: required"}},
		{"resolver plugin unknown", func(c *Config) { prod(c, func(e *ProviderEnv) { e.SignIn.Resolvers[0].Plugin = "ldap" }) },
			[]string{pp + `.signIn.resolvers[0].plugin: unknown plugin "ldap": not "builtin" and not a key of plugins`}},
		{"resolver name empty", func(c *Config) { prod(c, func(e *ProviderEnv) { e.SignIn.Resolvers[0].Resolver = "" }) },
			[]string{pp + ".signIn.resolvers[0].resolver: required"}},

		// plugins
		{"plugin named builtin", func(c *Config) { c.Plugins["builtin"] = c.Plugins["catalog"] },
			[]string{`plugins.builtin: the name "builtin" is reserved for the resolvers compiled into the daemon`}},
		{"plugin name", func(c *Config) { c.Plugins["Catalog_2"] = c.Plugins["catalog"] },
			[]string{"plugins.Catalog_2: a plugin name is 1 to 63 lowercase letters, digits and -, starting with a letter or digit"}},
		{"plugin name too long", func(c *Config) { c.Plugins[strings.Repeat("a", 64)] = c.Plugins["catalog"] },
			[]string{"plugins." + strings.Repeat("a", 64) + ": a plugin name is 1 to 63 lowercase letters, digits and -, starting with a letter or digit"}},
		{"plugin name longest", func(c *Config) { c.Plugins["a-"+strings.Repeat("9", 61)] = c.Plugins["catalog"] }, nil},
		{"plugin command", func(c *Config) { plugin(c, "catalog", func(p *Plugin) { p.Command = "" }) },
			[]string{"plugins.catalog.command: required"}},
		{"plugin sha256 missing", func(c *Config) { plugin(c, "catalog", func(p *Plugin) { p.SHA256 = "" }) },
			[]string{"plugins.catalog.sha256: required: the SHA-256 digest of the binary, 64 hex characters (sha256sum prints it)"}},
		{"plugin sha256 short", func(c *Config) { plugin(c, "catalog", func(p *Plugin) { p.SHA256 = strings.Repeat("a", 63) }) },
			[]string{"plugins.catalog.sha256: must be 64 hex characters: the SHA-256 digest of the binary"}},
		{"plugin sha256 not hex", func(c *Config) { plugin(c, "catalog", func(p *Plugin) { p.SHA256 = strings.Repeat("g", 64) }) },
			[]string{"plugins.catalog.sha256: must be 64 hex characters: the SHA-256 digest of the binary"}},
		{"plugin callTimeout zero", func(c *Config) { plugin(c, "catalog", func(p *Plugin) { p.CallTimeout = 0 }) },
			[]string{"plugins.catalog.callTimeout: must be positive"}},
		{"plugin callTimeout too long", func(c *Config) { plugin(c, "catalog", func(p *Plugin) { p.CallTimeout = 61 * time.Second }) },
			[]string{"plugins.catalog.callTimeout: must be at most 1m, not 1m1s"}},
		{"plugin callTimeout at the cap", func(c *Config) { plugin(c, "catalog", func(p *Plugin) { p.CallTimeout = time.Minute }) }, nil},
		{"plugin env name", func(c *Config) { plugin(c, "catalog", func(p *Plugin) { p.Env["1BAD"] = "x" }) },
			[]string{"plugins.catalog.env.1BAD: not a valid environment variable name (letters, digits and _, not starting with a digit)"}},

		// kubernetes
		{"cluster name duplicate", func(c *Config) { c.Kubernetes.Clusters[2].Name = "one" },
			[]string{`kubernetes.clusters[2].name: duplicate cluster name "one" (also kubernetes.clusters[0].name)`}},
		{"cluster name empty", func(c *Config) { c.Kubernetes.Clusters[1].Name = "" },
			[]string{"kubernetes.clusters[1].name: required"}},
		{"cluster name charset", func(c *Config) { c.Kubernetes.Clusters[1].Name = "a/b" },
			[]string{"kubernetes.clusters[1].name: a cluster name is letters, digits, ., _ and -, starting with a letter or digit"}},
		{"cluster url http", func(c *Config) { c.Kubernetes.Clusters[2].URL = "http://three.example.com" },
			[]string{"kubernetes.clusters[2].url: must use https"}},
		{"cluster url empty", func(c *Config) { c.Kubernetes.Clusters[2].URL = "" },
			[]string{"kubernetes.clusters[2].url: required"}},
		{"cluster caData", func(c *Config) { c.Kubernetes.Clusters[0].CAData = "-----BEGIN CERTIFICATE-----" },
			[]string{"kubernetes.clusters[0].caData: must be base64-encoded PEM certificates, as in a kubeconfig's certificate-authority-data"}},
		{"cluster strategy missing", func(c *Config) { c.Kubernetes.Clusters[1].Strategy = StrategyRef{} }, []string{
			"kubernetes.clusters[1].strategy.plugin: required",
			"kubernetes.clusters[1].strategy.strategy: required",
		}},
		{"cluster strategy plugin unknown", func(c *Config) { c.Kubernetes.Clusters[1].Strategy.Plugin = "builtin" },
			[]string{`kubernetes.clusters[1].strategy.plugin: unknown plugin "builtin": not a key of plugins`}},
		{"source plugin unknown", func(c *Config) { c.Kubernetes.Sources[0].Plugin = "rancher" },
			[]string{`kubernetes.sources[0].plugin: unknown plugin "rancher": not a key of plugins`}},
		{"source plugin empty", func(c *Config) { c.Kubernetes.Sources[0].Plugin = "" },
			[]string{"kubernetes.sources[0].plugin: required"}},
		{"source interval", func(c *Config) { c.Kubernetes.Sources[0].Interval = 9 * time.Second },
			[]string{"kubernetes.sources[0].interval: must be at least 10s, not 9s"}},
		{"source interval floor", func(c *Config) { c.Kubernetes.Sources[0].Interval = 10 * time.Second }, nil},
		{"source strategy half set", func(c *Config) { c.Kubernetes.Sources[0].Strategy = StrategyRef{Plugin: "palette"} },
			[]string{"kubernetes.sources[0].strategy.strategy: required"}},
		{"source strategy options only", func(c *Config) { c.Kubernetes.Sources[0].Strategy = StrategyRef{Options: map[string]any{"a": 1}} }, []string{
			"kubernetes.sources[0].strategy.plugin: required",
			"kubernetes.sources[0].strategy.strategy: required",
		}},
		{"audit sink", func(c *Config) { c.Kubernetes.Audit.Sink = "" }, []string{"kubernetes.audit.sink: required"}},
		{"catalog owner", func(c *Config) { c.Kubernetes.Catalog.Owner = "" }, []string{"kubernetes.catalog.owner: required"}},
		{"catalog owner shape", func(c *Config) { c.Kubernetes.Catalog.Owner = "group:default/a b" },
			[]string{`kubernetes.catalog.owner: must be a Backstage entity ref such as group:default/platform, not "group:default/a b"`}},
		{"catalog owner ok", func(c *Config) { c.Kubernetes.Catalog.Owner = "user:alice" }, nil},

		// storage
		{"storage type empty", func(c *Config) { c.Storage.Type = "" }, []string{"storage.type: required: file or postgres"}},
		{"storage type unknown", func(c *Config) { c.Storage.Type = "s3" }, []string{`storage.type: must be file or postgres, not "s3"`}},
		{"storage file path", func(c *Config) { c.Storage.Path = "" }, []string{"storage.path: required"}},
		{"storage postgres url", func(c *Config) { c.Storage = Storage{Type: "postgres"} }, []string{"storage.postgresUrl: required"}},
		{"storage postgres scheme", func(c *Config) { c.Storage = Storage{Type: "postgres", PostgresURL: "mysql://u:pw-SECRET@db/x"} },
			[]string{"storage.postgresUrl: must be a postgres:// or postgresql:// URL, or key=value pairs"}},
		{"storage postgres ok", func(c *Config) {
			c.Storage = Storage{Type: "postgres", PostgresURL: "host=db user=u password=pw-SECRET"}
		}, nil},

		// devProvider
		{"devProvider on all interfaces", func(c *Config) {
			c.Server.Listen = "0.0.0.0:7007"
			c.Server.BaseURL = "http://localhost:7007"
			c.DevProvider = DevProvider{Enabled: true, Users: []DevUser{{Username: "alice"}}}
		}, []string{`devProvider.enabled: the development provider only runs on a loopback listen address, not "0.0.0.0:7007"`}},
		{"devProvider on an empty host", func(c *Config) {
			c.Server.Listen = ":7007"
			c.Server.BaseURL = "http://localhost:7007"
			c.DevProvider = DevProvider{Enabled: true, Users: []DevUser{{Username: "alice"}}}
		}, []string{`devProvider.enabled: the development provider only runs on a loopback listen address, not ":7007"`}},
		{"devProvider on loopback", func(c *Config) {
			c.Server.Listen = "[::1]:7007"
			c.Server.BaseURL = "http://localhost:7007"
			c.DevProvider = DevProvider{Enabled: true, Users: []DevUser{{Username: "alice"}}}
		}, nil},
		{"devProvider disabled anywhere", func(c *Config) {
			c.Server.Listen = "0.0.0.0:7007"
			c.DevProvider = DevProvider{Users: []DevUser{{Username: "alice"}}}
		}, nil},
		{"devProvider with a public baseUrl", func(c *Config) {
			c.Server.BaseURL = "https://auth.example.com"
			c.DevProvider = DevProvider{Enabled: true, Users: []DevUser{{Username: "alice"}}}
		}, []string{"server.baseUrl: must be on a loopback host (localhost, 127.0.0.0/8, [::1]) while devProvider.enabled is true: the development provider's issuer lives under it"}},
		{"devProvider users", func(c *Config) {
			c.Server.BaseURL = "http://127.0.0.1:7007"
			c.DevProvider = DevProvider{Enabled: true}
		},
			[]string{"devProvider.users: at least one user is required when the development provider is enabled"}},
		{"devProvider user problems", func(c *Config) {
			c.Server.BaseURL = "http://[::1]:7007"
			c.DevProvider = DevProvider{Enabled: true, Users: []DevUser{{Username: "a"}, {Username: ""}, {Username: "a", Email: "not-an-email"}}}
		}, []string{
			"devProvider.users[1].username: required",
			`devProvider.users[2].username: duplicate username "a" (also devProvider.users[0].username)`,
			"devProvider.users[2].email: must be an email address",
		}},

		// all at once
		{"every problem at once", func(c *Config) {
			c.Server.Listen = ""
			prod(c, func(e *ProviderEnv) { e.ClientID = "" })
			c.Kubernetes.Clusters[2].URL = "http://x"
			c.Storage.Type = "s3"
		}, []string{
			"server.listen: required",
			pp + ".clientId: required",
			"kubernetes.clusters[2].url: must use https",
			`storage.type: must be file or postgres, not "s3"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := loadValid(t)
			tt.change(c)
			err := c.Validate()
			got := errorLines(t, err)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Validate:\n got:\n  %s\n want:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			if err != nil {
				assertNoSecrets(t, "the error", err.Error(),
					clientSecretValue, catalogTokenValue, paletteAPIKeyValue, stagingSecretValue, "pw-SECRET")
			}
		})
	}
}

func TestValidationErrorsType(t *testing.T) {
	c := loadValid(t)
	c.Server.Listen = ""
	c.Storage.Type = ""
	err := c.Validate()
	var ve ValidationErrors
	if !errors.As(err, &ve) || len(ve) != 2 {
		t.Fatalf("Validate() = %#v", err)
	}
	if ve[0].Path != "server.listen" || ve[0].Message != "required" {
		t.Errorf("first = %+v", ve[0])
	}
	if err.Error() != "server.listen: required\nstorage.type: required: file or postgres" {
		t.Errorf("Error() = %q", err.Error())
	}
	var fe FieldError
	if !errors.As(err, &fe) || fe.Path != "server.listen" {
		t.Errorf("errors.As(FieldError) = %+v", fe)
	}
	if err := loadValid(t).Validate(); err != nil {
		t.Errorf("a valid configuration returned %#v, want a nil error", err)
	}
}

func TestIsLoopbackListen(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7007":        true,
		"127.1.2.3:80":          true,
		"localhost:7007":        true,
		"LOCALHOST:7007":        true,
		"[::1]:7007":            true,
		"[::ffff:127.0.0.1]:80": true,
		"0.0.0.0:7007":          false,
		":7007":                 false,
		"[::]:7007":             false,
		"10.0.0.1:7007":         false,
		"example.com:7007":      false,
		"localhost.example:1":   false,
		"127.0.0.1":             false,
		"":                      false,
	} {
		if got := IsLoopbackListen(addr); got != want {
			t.Errorf("IsLoopbackListen(%q) = %v, want %v", addr, got, want)
		}
	}
}

// The hand-written name checks accept exactly what the regular expressions
// they replace accept.
func TestNameChecksMatchTheirPatterns(t *testing.T) {
	long := func(n int, c string) string { return strings.Repeat(c, n) }
	inputs := []string{"", "a", "A", "0", "-", ".", "_", "a-", "-a", "a.b", "a_b", "A-b.c_d", "claims", "oidc-cluster",
		"my plugin", "a/b", "é", "a\x00", "a\n", "ab-", "9lives", "Upper",
		long(63, "a"), long(64, "a"), "a" + long(62, "-"), "a" + long(63, "-"),
		long(253, "b"), long(254, "b"), "x" + long(252, "."), "x" + long(253, "."),
		long(64, "f"), long(63, "f"), long(65, "f"), long(64, "F"), long(63, "0") + "g", long(64, "A") + "\n",
	}
	for _, tc := range []struct {
		name    string
		pattern string
		check   func(string) bool
	}{
		{"isPluginName", `^[a-z0-9][a-z0-9-]{0,62}$`, isPluginName},
		{"isClusterName", `^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`, isClusterName},
		{"isHexSHA256", `^[0-9a-fA-F]{64}$`, isHexSHA256},
	} {
		re := regexp.MustCompile(tc.pattern)
		for _, s := range inputs {
			if got, want := tc.check(s), re.MatchString(s); got != want {
				t.Errorf("%s(%q) = %v, want %v (%s)", tc.name, s, got, want, tc.pattern)
			}
		}
	}
}
