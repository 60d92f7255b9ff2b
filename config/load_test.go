package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEmbeddedDefaultsValidate(t *testing.T) {
	c, err := Load("", WithEnv(nil))
	if err != nil {
		t.Fatalf("the embedded development configuration does not load: %v", err)
	}
	if c.Server.Listen != "127.0.0.1:7007" || c.Server.BaseURL != "http://localhost:7007" || c.App.BaseURL != "http://localhost:7007" {
		t.Errorf("server/app = %+v %+v", c.Server, c.App)
	}
	if c.Storage.Type != "file" || c.Storage.Path != "./data" {
		t.Errorf("storage = %+v", c.Storage)
	}
	dev, ok := c.Auth.Providers.SpectroCloud["development"]
	if !ok {
		t.Fatal("no development provider environment")
	}
	if dev.Issuer != "http://localhost:7007/dev/oidc" || !dev.AllowInsecureIssuer ||
		dev.ClientID != "spectroauth-dev" || dev.ClientSecret.Reveal() != "dev-secret-not-for-production" {
		t.Errorf("development = %+v", dev)
	}
	wantResolvers := []ResolverRef{{Plugin: BuiltinPlugin, Resolver: "emailLocalPartMatchingUserEntityName"}}
	if !reflect.DeepEqual(dev.SignIn.Resolvers, wantResolvers) {
		t.Errorf("resolvers = %+v", dev.SignIn.Resolvers)
	}
	if !c.DevProvider.Enabled || len(c.DevProvider.Users) < 2 {
		t.Fatalf("devProvider = %+v", c.DevProvider)
	}
	alice, bob := c.DevProvider.Users[0], c.DevProvider.Users[1]
	if alice.Email != "alice@example.com" || alice.EmailVerified == nil || !*alice.EmailVerified || !slices.Equal(alice.Groups, []string{"dev", "ops"}) {
		t.Errorf("alice = %+v", alice)
	}
	if bob.EmailVerified == nil || *bob.EmailVerified {
		t.Errorf("bob must have emailVerified: false, got %+v", bob)
	}
	// The general defaults apply to the embedded configuration too; it asks
	// for offline_access so the development provider issues refresh tokens.
	if dev.SessionDuration != DefaultSessionDuration || dev.RefreshMargin != DefaultRefreshMargin || dev.RevalidateInterval != DefaultRevalidateInterval ||
		!slices.Equal(dev.Scopes, append(DefaultScopes(), "offline_access")) || dev.TokenEndpointAuthMethod != DefaultTokenEndpointAuthMethod {
		t.Errorf("per-environment defaults not applied: %+v", dev)
	}
	if !IsLoopbackListen(c.Server.Listen) {
		t.Error("the embedded listen address must be loopback")
	}
}

func TestDefaultsApplyToAFile(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "minimal.yaml"), WithEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	// A file replaces the development parts...
	if c.DevProvider.Enabled || len(c.DevProvider.Users) != 0 {
		t.Errorf("devProvider leaked from the embedded configuration: %+v", c.DevProvider)
	}
	if _, ok := c.Auth.Providers.SpectroCloud["development"]; ok {
		t.Error("the development environment leaked from the embedded configuration")
	}
	// ...but the general defaults still apply.
	d := Defaults()
	if c.Server.Listen != d.Server.Listen || c.Server.ShutdownTimeout != 15*time.Second ||
		c.Auth.BackstageTokenExpiration != time.Hour || c.Kubernetes.Audit.Sink != "stderr" ||
		c.Storage.Type != "file" || c.Storage.Path != "./data" {
		t.Errorf("general defaults not applied: %+v", c)
	}
	p := c.Auth.Providers.SpectroCloud["production"]
	if !slices.Equal(p.Scopes, []string{"openid", "profile", "email"}) || p.TokenEndpointAuthMethod != "client_secret_basic" ||
		p.RefreshMargin != 5*time.Minute || p.SessionDuration != 7*24*time.Hour {
		t.Errorf("per-environment defaults not applied: %+v", p)
	}
	if p.SigningAlgorithms != nil {
		t.Errorf("signingAlgorithms defaulted with discovery: %v", p.SigningAlgorithms)
	}
}

func TestDefaultsInMapsAndLists(t *testing.T) {
	c := loadValid(t)
	if got := c.Plugins["catalog"].CallTimeout; got != 2*time.Second {
		t.Errorf("plugin callTimeout = %v, want 2s", got)
	}
	if got := c.Kubernetes.Sources[0].Interval; got != 5*time.Minute {
		t.Errorf("source interval = %v, want 5m", got)
	}
	if got := c.Auth.Providers.SpectroCloud["staging"].SigningAlgorithms; !slices.Equal(got, []string{"RS256"}) {
		t.Errorf("manual endpoints: signingAlgorithms = %v, want [RS256]", got)
	}
}

func TestExplicitValuesBeatDefaults(t *testing.T) {
	c, err := LoadUnvalidated(filepath.Join("testdata", "explicit-zero.yaml"), WithEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Auth.Providers.SpectroCloud["production"]
	if p.RefreshMargin != 0 {
		t.Errorf("refreshMargin: 0 became %v", p.RefreshMargin)
	}
	if p.SessionDuration != 36*time.Hour {
		t.Errorf("sessionDuration 1d12h = %v", p.SessionDuration)
	}
	if !slices.Equal(p.Scopes, []string{"openid", "groups"}) {
		t.Errorf("scopes from a comma-separated string = %q", p.Scopes)
	}
	if c.Server.ShutdownTimeout != 0 {
		t.Errorf("shutdownTimeout: 0 became %v", c.Server.ShutdownTimeout)
	}
	if got := c.Plugins["p"].CallTimeout; got != 500*time.Millisecond {
		t.Errorf("callTimeout = %v", got)
	}
	if a, b := c.Kubernetes.Sources[0].Interval, c.Kubernetes.Sources[1].Interval; a != DefaultSourceInterval || b != time.Hour {
		t.Errorf("source intervals = %v, %v", a, b)
	}
	// A null does not erase a default.
	if c.Kubernetes.Audit.Sink != "stderr" || c.Storage.Path != "./data" {
		t.Errorf("null erased a default: sink %q, path %q", c.Kubernetes.Audit.Sink, c.Storage.Path)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestLoadFixtures(t *testing.T) {
	env := map[string]string{"PRESENT": "auth.example.com", "EMPTY": ""}
	files, err := filepath.Glob(filepath.Join("testdata", "invalid", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		want := wantLines(t, file)
		if len(want) == 0 {
			continue
		}
		t.Run(filepath.Base(file), func(t *testing.T) {
			_, err := Load(file, WithEnv(env))
			if err == nil {
				t.Fatal("loaded without error")
			}
			sameLines(t, errorLines(t, err), want)
			assertNoSecrets(t, "the error", err.Error(), "wrong-types-SECRET-value")
		})
	}
}

func TestEscapedVariableIsLiteral(t *testing.T) {
	env := map[string]string{"PRESENT": "auth.example.com", "EMPTY": "", "APP_HOST": "h", "APP_PORT": "1",
		"SPECTROCLOUD_CLIENT_SECRET": "x", "PROJECT_TOKEN": "tok", "ARG_ONE": "a"}
	_, err := LoadUnvalidated(filepath.Join("testdata", "invalid", "missing-vars.yaml"), WithEnv(env))
	// Only the malformed and unterminated references remain.
	sameLines(t, errorLines(t, err), []string{
		"plugins.p.env.KEY: malformed ${...}: a variable name is letters, digits and _, not starting with a digit (write $${ for a literal ${)",
		"kubernetes.clusters[0].url: unterminated ${ (write $${ for a literal ${)",
	})
}

func TestLoadErrorsOutsideKeys(t *testing.T) {
	if _, err := Load(filepath.Join("testdata", "does-not-exist.yaml"), WithEnv(nil)); err == nil || !strings.Contains(err.Error(), "does-not-exist.yaml") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Load(filepath.Join("testdata", "invalid", "not-a-mapping.yaml"), WithEnv(nil)); err == nil || !strings.Contains(err.Error(), "not-a-mapping.yaml") {
		t.Errorf("a YAML list at the top: %v", err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("server:\n  listen: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad, WithEnv(nil)); err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Errorf("broken YAML: %v", err)
	}
	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(empty, WithEnv(nil))
	sameLines(t, errorLines(t, err), []string{
		"server.baseUrl: required",
		"app.baseUrl: required",
		"auth.providers.spectrocloud: at least one environment is required (e.g. development or production)",
	})
}

// exampleEnv gives every variable the examples use a plausible fake value.
func exampleEnv() map[string]string {
	return map[string]string{
		"PALETTE_HOST":               "console.spectrocloud.com",
		"PALETTE_TENANT_UID":         "5f4e3d2c1b0a",
		"SPECTROCLOUD_CLIENT_ID":     "spectroauth",
		"SPECTROCLOUD_CLIENT_SECRET": "example-client-SECRET",
		"POSTGRES_URL":               "postgres://spectroauth:example-db-SECRET@db.example.com:5432/spectroauth",
		"CATALOG_PLUGIN_SHA256":      "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
		"PALETTE_PLUGIN_SHA256":      "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
		"OIDC_PLUGIN_SHA256":         "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0",
		"BACKSTAGE_CATALOG_TOKEN":    "example-catalog-SECRET",
		"PALETTE_API_KEY":            "example-apikey-SECRET",
		"PLATFORM_PROD_CA_DATA":      "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJmYWtlZmFrZWZha2UKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=",
	}
}

func TestExamplesLoadAndValidate(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("examples", "*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("examples: %v %v", files, err)
	}
	varRE := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			uses := 0
			for _, m := range varRE.FindAllStringSubmatch(string(b), -1) {
				if strings.HasPrefix(m[1], EnvPrefix) {
					t.Errorf("${%s}: a SPECTROAUTH_ variable would also be read as a key override", m[1])
				}
				if strings.Contains(m[1], "SECRET") || strings.Contains(m[1], "TOKEN") || strings.Contains(m[1], "KEY") {
					uses++
				}
			}
			if uses == 0 {
				t.Error("the example takes no secret from ${VAR}")
			}
			c, err := Load(file, WithEnv(exampleEnv()))
			if err != nil {
				t.Fatal(err)
			}
			out, err := Dump(c)
			if err != nil {
				t.Fatal(err)
			}
			assertNoSecrets(t, "Dump", string(out), "SECRET")
		})
	}
	// Without the variables, each example names what is missing.
	for _, file := range files {
		_, err := Load(file, WithEnv(nil))
		if err == nil || !strings.Contains(err.Error(), "SPECTROCLOUD_CLIENT_SECRET is not set") {
			t.Errorf("%s without its variables: %v", file, err)
		}
	}
}

func TestDefaultsHasNoPerMapValues(t *testing.T) {
	d := Defaults()
	if d.Auth.Providers.SpectroCloud != nil || d.Plugins != nil || d.DevProvider.Enabled {
		t.Errorf("Defaults must hold only general defaults: %+v", d)
	}
	if err := d.Validate(); err == nil {
		t.Error("Defaults alone must not validate: it has no baseUrl and no provider")
	}
}

// The defaults layer is made of nodes built for decoding only; they decode
// as the nodes Dump prints do, for the defaults and for full configurations
// (every kind of value, strings that read as other types among them).
func TestDecodeOnlyNodesDecodeAsPrinted(t *testing.T) {
	values := map[string]*Config{"Defaults()": Defaults()}
	files, _ := filepath.Glob(filepath.Join("examples", "*.yaml"))
	for _, file := range append(files, filepath.Join("testdata", "valid.yaml"), filepath.Join("testdata", "explicit-zero.yaml")) {
		env := exampleEnv()
		env["CLIENT_SECRET"], env["CATALOG_TOKEN"] = "example-SECRET", "example-catalog-SECRET"
		c, err := Load(file, WithEnv(env))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		values[file] = c
	}
	for name, c := range values {
		decode := func(d dumper) map[string]any {
			node, _ := d.node(reflect.ValueOf(c).Elem(), "", false)
			m := map[string]any{}
			if err := node.Decode(&m); err != nil {
				t.Fatalf("%s: decoding: %v", name, err)
			}
			return m
		}
		if got, want := decode(dumper{decodeOnly: true}), decode(dumper{}); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decode-only nodes decode as\n%v\nwant\n%v", name, got, want)
		}
	}
	// Strings that would read as other types stay strings.
	for _, s := range []string{"true", "no", "1", "0x10", "1.5", "null", "~", "", "a: b", "- x", "#c", "line\nline"} {
		var got any
		if err := (dumper{decodeOnly: true}).scalar(s).Decode(&got); err != nil || got != s {
			t.Errorf("scalar %q decodes as %#v (%v)", s, got, err)
		}
	}
}
