package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEnvOverrides(t *testing.T) {
	valid := filepath.Join("testdata", "valid.yaml")
	tests := []struct {
		name  string
		file  string // "" is the embedded development configuration
		env   []string
		check func(t *testing.T, c *Config)
	}{
		{"the brief's example on the embedded configuration", "",
			[]string{"SPECTROAUTH_AUTH__PROVIDERS__SPECTROCLOUD__DEVELOPMENT__CLIENTID", "from-env"},
			func(t *testing.T, c *Config) {
				if got := c.Auth.Providers.SpectroCloud["development"].ClientID; got != "from-env" {
					t.Errorf("clientId = %q", got)
				}
			}},
		{"levels in any case; env beats the file", valid,
			[]string{"SPECTROAUTH_Server__BaseUrl", "https://other.example.com", "SPECTROAUTH_SERVER__SHUTDOWNTIMEOUT", "30s"},
			func(t *testing.T, c *Config) {
				if c.Server.BaseURL != "https://other.example.com" || c.Server.ShutdownTimeout != 30*time.Second {
					t.Errorf("server = %+v", c.Server)
				}
			}},
		{"an existing map key keeps its spelling", valid,
			[]string{"SPECTROAUTH_AUTH__PROVIDERS__SPECTROCLOUD__STAGING__SIGNIN__RESOLVERS__0__RESOLVER", "other"},
			func(t *testing.T, c *Config) {
				if got := c.Auth.Providers.SpectroCloud["staging"].SignIn.Resolvers[0].Resolver; got != "other" {
					t.Errorf("resolver = %q", got)
				}
				if _, ok := c.Auth.Providers.SpectroCloud["STAGING"]; ok {
					t.Error("created STAGING next to staging")
				}
			}},
		{"a secret from the environment, with ${VAR} inside", valid,
			[]string{"SPECTROAUTH_AUTH__PROVIDERS__SPECTROCLOUD__PRODUCTION__CLIENTSECRET", "prefix-${CATALOG_TOKEN}"},
			func(t *testing.T, c *Config) {
				if got := c.Auth.Providers.SpectroCloud["production"].ClientSecret.Reveal(); got != "prefix-"+catalogTokenValue {
					t.Errorf("clientSecret = %q", got)
				}
			}},
		{"a list element by index, and appending at the next index", valid, []string{
			"SPECTROAUTH_KUBERNETES__CLUSTERS__1__URL", "https://two.other.example.com",
			"SPECTROAUTH_KUBERNETES__CLUSTERS__3__NAME", "four",
			"SPECTROAUTH_KUBERNETES__CLUSTERS__3__URL", "https://four.example.com",
			"SPECTROAUTH_KUBERNETES__CLUSTERS__3__STRATEGY__PLUGIN", "palette",
			"SPECTROAUTH_KUBERNETES__CLUSTERS__3__STRATEGY__STRATEGY", "oidc",
			"SPECTROAUTH_KUBERNETES__CLUSTERS__4__NAME", "five",
			"SPECTROAUTH_KUBERNETES__CLUSTERS__4__URL", "https://five.example.com",
			"SPECTROAUTH_KUBERNETES__CLUSTERS__4__STRATEGY__PLUGIN", "palette",
			"SPECTROAUTH_KUBERNETES__CLUSTERS__4__STRATEGY__STRATEGY", "oidc",
		}, func(t *testing.T, c *Config) {
			cl := c.Kubernetes.Clusters
			if len(cl) != 5 || cl[1].URL != "https://two.other.example.com" || cl[1].Name != "two" ||
				cl[3].Name != "four" || cl[4].Strategy.Plugin != "palette" {
				t.Errorf("clusters = %+v", cl)
			}
		}},
		{"a list of strings, comma-separated or by index", valid, []string{
			"SPECTROAUTH_AUTH__EXTRAALLOWEDORIGINS", "https://a.example.com, https://b.example.com",
			"SPECTROAUTH_AUTH__PROVIDERS__SPECTROCLOUD__PRODUCTION__SCOPES", "openid,groups",
			"SPECTROAUTH_PLUGINS__PALETTE__ARGS__1", "--other",
		}, func(t *testing.T, c *Config) {
			if got := c.Auth.ExtraAllowedOrigins; !slices.Equal(got, []string{"https://a.example.com", "https://b.example.com"}) {
				t.Errorf("extraAllowedOrigins = %q", got)
			}
			if got := c.Auth.Providers.SpectroCloud["production"].Scopes; !slices.Equal(got, []string{"openid", "groups"}) {
				t.Errorf("scopes = %q", got)
			}
			if got := c.Plugins["palette"].Args; !slices.Equal(got, []string{"--key", "--other", "--verbose"}) {
				t.Errorf("args = %q", got)
			}
		}},
		{"new map entries", valid, []string{
			"SPECTROAUTH_PLUGINS__AUDITOR__COMMAND", "/opt/plugins/auditor",
			"SPECTROAUTH_PLUGINS__AUDITOR__SHA256", strings.Repeat("a", 64),
			"SPECTROAUTH_PLUGINS__AUDITOR__CALLTIMEOUT", "1m",
			"SPECTROAUTH_PLUGINS__CATALOG__ENV__EXTRA_VAR", "extra",
			"SPECTROAUTH_PLUGINS__CATALOG__ENV__catalog_token", "replaced",
		}, func(t *testing.T, c *Config) {
			p, ok := c.Plugins["auditor"]
			if !ok || p.Command != "/opt/plugins/auditor" || p.CallTimeout != time.Minute {
				t.Errorf("plugins.auditor = %+v", p)
			}
			env := c.Plugins["catalog"].Env
			if env["EXTRA_VAR"] != "extra" || env["CATALOG_TOKEN"] != "replaced" || len(env) != 2 {
				t.Errorf("plugin env names keep their case: %v", env)
			}
		}},
		{"free-form options and config", valid, []string{
			"SPECTROAUTH_AUTH__PROVIDERS__SPECTROCLOUD__PRODUCTION__SIGNIN__RESOLVERS__0__OPTIONS__APITOKEN", "t",
			"SPECTROAUTH_AUTH__PROVIDERS__SPECTROCLOUD__PRODUCTION__SIGNIN__RESOLVERS__0__OPTIONS__NEWKEY", "n",
			"SPECTROAUTH_PLUGINS__PALETTE__CONFIG__PROJECTS__0__NAME", "ops",
			"SPECTROAUTH_PLUGINS__PALETTE__CONFIG__PROJECTS__1__NAME", "payments",
		}, func(t *testing.T, c *Config) {
			opts := c.Auth.Providers.SpectroCloud["production"].SignIn.Resolvers[0].Options
			if opts["apiToken"] != "t" || opts["newkey"] != "n" || opts["namespace"] != "default" {
				t.Errorf("options = %v", opts)
			}
			projects, _ := c.Plugins["palette"].Config["projects"].([]any)
			if len(projects) != 2 {
				t.Fatalf("projects = %v", projects)
			}
			first, _ := projects[0].(map[string]any)
			second, _ := projects[1].(map[string]any)
			if first["name"] != "ops" || first["header"] != "ApiKey "+paletteAPIKeyValue || second["name"] != "payments" {
				t.Errorf("projects = %v", projects)
			}
		}},
		{"booleans and durations as text", "", []string{
			"SPECTROAUTH_DEVPROVIDER__ENABLED", "false",
			"SPECTROAUTH_SERVER__LISTEN", "0.0.0.0:7007",
			"SPECTROAUTH_AUTH__PROVIDERS__SPECTROCLOUD__DEVELOPMENT__SESSIONDURATION", "2d",
			"SPECTROAUTH_DEVPROVIDER__USERS__0__EMAILVERIFIED", "false",
		}, func(t *testing.T, c *Config) {
			if c.DevProvider.Enabled {
				t.Error("devProvider.enabled is still true")
			}
			if got := c.Auth.Providers.SpectroCloud["development"].SessionDuration; got != 48*time.Hour {
				t.Errorf("sessionDuration = %v", got)
			}
			if v := c.DevProvider.Users[0].EmailVerified; v == nil || *v {
				t.Errorf("emailVerified = %v", v)
			}
		}},
		{"unrelated variables are ignored", valid, []string{"SPECTROAUTHX", "1", "spectroauth_server__listen", "x", "HOME", "/root"},
			func(t *testing.T, c *Config) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.file, WithEnv(with(validEnv(), tt.env...)))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestEnvOverrideErrors(t *testing.T) {
	valid := filepath.Join("testdata", "valid.yaml")
	tests := []struct {
		name string
		file string
		env  []string
		want []string
	}{
		{"unknown top-level key", valid, []string{"SPECTROAUTH_LOGLEVEL", "debug"},
			[]string{`SPECTROAUTH_LOGLEVEL: does not name a config key: the configuration has no key "loglevel"`}},
		{"unknown nested key", valid, []string{"SPECTROAUTH_SERVER__LISTN", "x"},
			[]string{`SPECTROAUTH_SERVER__LISTN: does not name a config key: server has no key "listn"`}},
		{"unknown key in a map entry", valid, []string{"SPECTROAUTH_AUTH__PROVIDERS__SPECTROCLOUD__PRODUCTION__SECRET", "x"},
			[]string{`SPECTROAUTH_AUTH__PROVIDERS__SPECTROCLOUD__PRODUCTION__SECRET: does not name a config key: auth.providers.spectrocloud.production has no key "secret"`}},
		{"a section", valid, []string{"SPECTROAUTH_SERVER", "x"},
			[]string{"SPECTROAUTH_SERVER: server is a section; set its keys with SPECTROAUTH_SERVER__<KEY>"}},
		{"a mapping", valid, []string{"SPECTROAUTH_PLUGINS__CATALOG__ENV", "x"},
			[]string{"SPECTROAUTH_PLUGINS__CATALOG__ENV: plugins.catalog.env is a mapping; set its entries with SPECTROAUTH_PLUGINS__CATALOG__ENV__<KEY>"}},
		{"a list of sections", valid, []string{"SPECTROAUTH_KUBERNETES__CLUSTERS", "x"},
			[]string{"SPECTROAUTH_KUBERNETES__CLUSTERS: kubernetes.clusters is a list of sections; set an element's keys with SPECTROAUTH_KUBERNETES__CLUSTERS__0__<KEY>"}},
		{"a list needs an index", valid, []string{"SPECTROAUTH_KUBERNETES__CLUSTERS__FIRST__URL", "x"},
			[]string{"SPECTROAUTH_KUBERNETES__CLUSTERS__FIRST__URL: does not name a config key: kubernetes.clusters is a list; the level after it must be an index (0, 1, …)"}},
		{"below a value", valid, []string{"SPECTROAUTH_SERVER__LISTEN__HOST", "x"},
			[]string{"SPECTROAUTH_SERVER__LISTEN__HOST: does not name a config key: server.listen is a value, not a section"}},
		{"an empty level", valid, []string{"SPECTROAUTH_SERVER____LISTEN", "x"},
			[]string{"SPECTROAUTH_SERVER____LISTEN: does not name a config key: levels are letters, digits, _, - and ., separated by __"}},
		{"an index past the end", valid, []string{"SPECTROAUTH_KUBERNETES__CLUSTERS__5__URL", "https://x.example.com"},
			[]string{"kubernetes.clusters[5]: index 5 is past the end of the list, which has 3 elements; the next free index is 3"}},
		{"two variables for one key", valid, []string{"SPECTROAUTH_SERVER__LISTEN", "127.0.0.1:1", "SPECTROAUTH_server__listen", "127.0.0.1:2"},
			[]string{"SPECTROAUTH_server__listen: sets server.listen, which SPECTROAUTH_SERVER__LISTEN sets too"}},
		{"the dev provider cannot be exposed", "", []string{"SPECTROAUTH_SERVER__LISTEN", "0.0.0.0:7007"},
			[]string{`devProvider.enabled: the development provider only runs on a loopback listen address, not "0.0.0.0:7007"`}},
		{"a bad value names the key, not the value", valid, []string{"SPECTROAUTH_PLUGINS__CATALOG__CALLTIMEOUT", "env-SECRET-value"},
			[]string{"plugins.catalog.callTimeout: expected a duration such as 90s, 5m, 1h or 7d"}},
		{"a missing variable inside an override", valid, []string{"SPECTROAUTH_APP__BASEURL", "https://${APP_HOST}"},
			[]string{"app.baseUrl: environment variable APP_HOST is not set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.file, WithEnv(with(validEnv(), tt.env...)))
			if err == nil {
				t.Fatal("loaded without error")
			}
			sameLines(t, errorLines(t, err), tt.want)
			assertNoSecrets(t, "the error", err.Error(), "env-SECRET-value", clientSecretValue)
		})
	}
}

func TestWithLookupEnvAndEnvironSeparately(t *testing.T) {
	lookups := 0
	c, err := Load(filepath.Join("testdata", "valid.yaml"),
		WithLookupEnv(func(k string) (string, bool) { lookups++; v, ok := validEnv()[k]; return v, ok }),
		WithEnviron(func() []string { return []string{"SPECTROAUTH_SERVER__LISTEN=127.0.0.1:9999", "NOT_EQUALS"} }),
	)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.Listen != "127.0.0.1:9999" || lookups == 0 {
		t.Errorf("listen = %q, lookups = %d", c.Server.Listen, lookups)
	}
}

// The variables Kubernetes sets for a Service named spectroauth (or
// spectroauth-<something>) in the same namespace are not overrides and do
// not stop the daemon; a typo that is not of their shape still does.
func TestKubernetesServiceLinksAreNotOverrides(t *testing.T) {
	links := []string{
		"SPECTROAUTH_SERVICE_HOST", "10.96.0.12",
		"SPECTROAUTH_SERVICE_PORT", "7007",
		"SPECTROAUTH_SERVICE_PORT_HTTP", "7007",
		"SPECTROAUTH_PORT", "tcp://10.96.0.12:7007",
		"SPECTROAUTH_PORT_7007_TCP", "tcp://10.96.0.12:7007",
		"SPECTROAUTH_PORT_7007_TCP_PROTO", "tcp",
		"SPECTROAUTH_PORT_7007_TCP_PORT", "7007",
		"SPECTROAUTH_PORT_7007_TCP_ADDR", "10.96.0.12",
		"SPECTROAUTH_METRICS_SERVICE_HOST", "10.96.0.13",
		"SPECTROAUTH_METRICS_PORT_9464_TCP", "tcp://10.96.0.13:9464",
		"SPECTROAUTH_DB_SERVICE_PORT_POSTGRES", "5432",
	}
	c, err := Load(filepath.Join("testdata", "valid.yaml"), WithEnv(with(validEnv(), links...)))
	if err != nil {
		t.Fatalf("service link variables stopped the load: %v", err)
	}
	if c.Server.Listen == "tcp://10.96.0.12:7007" {
		t.Error("a service link variable was read as an override")
	}
	if _, err := Load(filepath.Join("testdata", "valid.yaml"), WithEnv(with(validEnv(), "SPECTROAUTH_SERVER_LISTEN", "x"))); err == nil {
		t.Error("a typo (one underscore) was ignored")
	}
}
