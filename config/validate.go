package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"
)

var (
	// entityRefRE is [kind:][namespace/]name with Backstage's name characters.
	entityRefRE   = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9]*:)?([a-z0-9]+([-_.][a-z0-9]+)*/)?[A-Za-z0-9]+([-_.][A-Za-z0-9]+)*$`)
	originLabelRE = regexp.MustCompile(`^[A-Za-z0-9*-]+$`)
)

// The names below are checked by hand rather than by regular expressions:
// compiling a bounded repetition ({0,252}) builds a program as long as the
// bound, which every start of the daemon paid for in its package
// initialisation, before it could launch its plugins.

// isPluginName reports whether s is a plugin name: ^[a-z0-9][a-z0-9-]{0,62}$.
func isPluginName(s string) bool {
	return isName(s, 63, func(c byte, first bool) bool {
		return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && !first
	})
}

// isClusterName reports whether s is a cluster name:
// ^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$.
func isClusterName(s string) bool {
	return isName(s, 253, func(c byte, first bool) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			(c == '.' || c == '_' || c == '-') && !first
	})
}

// isHexSHA256 reports whether s is a SHA-256 digest in hex: ^[0-9a-fA-F]{64}$.
func isHexSHA256(s string) bool {
	return isName(s, 64, func(c byte, _ bool) bool {
		return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
	}) && len(s) == 64
}

// isName reports whether s has 1 to maxLen bytes, each of which ok allows
// (told whether it is the first).
func isName(s string, maxLen int, ok func(c byte, first bool) bool) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := range len(s) {
		if !ok(s[i], i == 0) {
			return false
		}
	}
	return true
}

var (
	tokenEndpointAuthMethods = []string{"client_secret_basic", "client_secret_post"}
	signingAlgorithms        = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
	promptValues             = []string{"none", "login", "consent", "select_account"}
)

// Validate checks the whole configuration and returns every problem at once, as
// [ValidationErrors] in schema order, or nil. Messages name key paths and never
// contain secret values.
func (c *Config) Validate() error {
	v := &validator{origins: c.origins}
	v.server(c)
	v.auth(c)
	v.plugins(c)
	v.kubernetes(c)
	v.paletteAPI(c)
	v.storage(c)
	v.devProvider(c)
	return v.errs.err()
}

// IsLoopbackListen reports whether a host:port listen address only accepts
// connections from this machine: its host is localhost, in 127.0.0.0/8, or ::1.
// An empty host (":7007") listens everywhere and is not loopback.
func IsLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && isLoopbackHost(host)
}

// isLoopbackHost reports whether a host name or IP literal is loopback.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

type validator struct {
	errs    ValidationErrors
	origins map[string][]string
}

func (v *validator) add(path, format string, args ...any) {
	v.errs.add(path, fmt.Sprintf(format, args...))
}

// required reports an empty value; when the value came from empty variables,
// it says which, so the fix is obvious.
func (v *validator) required(path string, empty bool) bool {
	if !empty {
		return true
	}
	msg := "required"
	if vars := v.origins[path]; len(vars) > 0 {
		refs := make([]string, len(vars))
		for i, name := range vars {
			refs[i] = "${" + name + "}"
		}
		msg += fmt.Sprintf(" (it comes from %s, which is empty)", strings.Join(refs, ", "))
	}
	v.errs.add(path, msg)
	return false
}

// urlRule says what a URL key accepts.
type urlRule struct {
	// https requires the https scheme. For a provider URL (provider), http is
	// allowed on a loopback host when insecure (allowInsecureIssuer).
	https, provider, insecure bool
	// query allows a query component (fragments are never allowed).
	query bool
}

// url checks a non-empty URL. Messages do not echo it: a URL can carry secrets.
func (v *validator) url(path, raw string, r urlRule) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		v.add(path, "not a valid URL")
	case !u.IsAbs() || u.Host == "" || u.Opaque != "":
		if r.https {
			v.add(path, "must be an absolute https:// URL")
		} else {
			v.add(path, "must be an absolute http:// or https:// URL")
		}
	case u.Scheme != "http" && u.Scheme != "https":
		if r.https {
			v.add(path, "must use https")
		} else {
			v.add(path, "must use http or https")
		}
	case r.https && u.Scheme == "http" && !r.provider:
		v.add(path, "must use https")
	case r.https && u.Scheme == "http" && !r.insecure:
		v.add(path, "must use https (http needs allowInsecureIssuer: true and a loopback host)")
	case r.https && u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
		v.add(path, "must use https: allowInsecureIssuer permits http only on a loopback host (localhost, 127.0.0.0/8, [::1])")
	case u.User != nil:
		v.add(path, "must not contain a user name or password")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		v.add(path, "must not have a fragment")
	case !r.query && (u.RawQuery != "" || u.ForceQuery):
		v.add(path, "must not have a query")
	}
}

func (v *validator) server(c *Config) {
	s := c.Server
	if v.required("server.listen", s.Listen == "") {
		if msg := checkListen(s.Listen); msg != "" {
			v.add("server.listen", "%s, not %q", msg, s.Listen)
		}
	}
	for i, p := range s.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				v.add(joinIndex("server.trustedProxies", i), "%q is not a CIDR or an IP address", p)
			}
		}
	}
	for _, l := range []struct {
		key string
		val int
	}{
		{"signInsPerClientPerMinute", s.RateLimits.SignInsPerClientPerMinute},
		{"signInBurst", s.RateLimits.SignInBurst},
		{"codeExchangesPerSecond", s.RateLimits.CodeExchangesPerSecond},
	} {
		if l.val < 1 {
			v.add("server.rateLimits."+l.key, "must be at least 1, not %d", l.val)
		}
	}
	if v.required("server.baseUrl", s.BaseURL == "") {
		v.url("server.baseUrl", s.BaseURL, urlRule{})
	}
	if s.ShutdownTimeout < 0 {
		v.add("server.shutdownTimeout", "must not be negative")
	}
	if s.MetricsListen != "" {
		if msg := checkListen(s.MetricsListen); msg != "" {
			v.add("server.metricsListen", "%s, not %q", msg, s.MetricsListen)
		} else if s.MetricsListen == s.Listen {
			v.add("server.metricsListen", "must differ from server.listen: metrics are served on their own listener")
		}
	}
	if s.HostPrefixedCookies {
		su, serr := url.Parse(s.BaseURL)
		au, aerr := url.Parse(c.App.BaseURL)
		switch {
		case serr != nil || su.Scheme != "https":
			v.add("server.hostPrefixedCookies", "needs an https server.baseUrl: __Host- cookies are Secure")
		case aerr == nil && strings.EqualFold(su.Hostname(), au.Hostname()):
			v.add("server.hostPrefixedCookies", "needs a host of the daemon's own: with server.baseUrl on app.baseUrl's host, Path=/ would send the session cookie to every Backstage route")
		}
	}
	if v.required("app.baseUrl", c.App.BaseURL == "") {
		v.url("app.baseUrl", c.App.BaseURL, urlRule{})
	}
}

// checkListen returns what is wrong with a host:port listen address, or "".
func checkListen(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "must be host:port, e.g. 127.0.0.1:7007"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || port == "" {
		return "the port must be a number from 0 to 65535"
	}
	return ""
}

func (v *validator) auth(c *Config) {
	a := c.Auth
	for i, p := range a.ExtraAllowedOrigins {
		switch {
		case !validOriginPattern(p):
			v.add(joinIndex("auth.extraAllowedOrigins", i),
				"must be an origin pattern scheme://host[:port] (http or https, no path) with * only inside host labels, e.g. https://*.example.com, not %q", p)
		case !wildcardBelowDomain(p):
			v.add(joinIndex("auth.extraAllowedOrigins", i),
				"the host labels after a * must be a registrable domain, not a public suffix such as com or co.uk (e.g. https://*.example.com), not %q", p)
		}
	}
	if a.BackstageTokenExpiration < MinBackstageTokenExpiration || a.BackstageTokenExpiration > MaxBackstageTokenExpiration {
		v.add("auth.backstageTokenExpiration", "must be between %s and %s, not %s",
			formatDuration(MinBackstageTokenExpiration), formatDuration(MaxBackstageTokenExpiration), formatDuration(a.BackstageTokenExpiration))
	} else if a.BackstageTokenExpiration%time.Second != 0 {
		// Token lifetimes are whole seconds (exp - iat), as in Backstage.
		v.add("auth.backstageTokenExpiration", "must be a whole number of seconds, not %s", a.BackstageTokenExpiration)
	}
	envs := a.Providers.SpectroCloud
	if len(envs) == 0 {
		v.add("auth.providers.spectrocloud", "at least one environment is required (e.g. development or production)")
	}
	for _, name := range sortedKeys(envs) {
		v.providerEnv("auth.providers.spectrocloud."+name, envs[name], c.Plugins)
	}
}

func (v *validator) providerEnv(path string, e ProviderEnv, plugins map[string]Plugin) {
	at := func(key string) string { return joinKey(path, key) }
	manual := []struct{ key, val string }{
		{"authorizationUrl", e.AuthorizationURL}, {"tokenUrl", e.TokenURL}, {"jwksUrl", e.JWKSURL},
	}
	set := 0
	for _, m := range manual {
		if m.val != "" {
			set++
		}
	}
	if e.Issuer == "" {
		v.add(at("issuer"), "required: the iss every ID token must carry (with manual endpoints too), e.g. https://<palette-host>/v1/oidc/tenant/<tenantUid>")
	}
	if set > 0 && set < len(manual) {
		for _, m := range manual {
			if m.val == "" {
				v.add(at(m.key), "required with manual endpoints: authorizationUrl, tokenUrl and jwksUrl are set together")
			}
		}
	}
	provider := urlRule{https: true, provider: true, insecure: e.AllowInsecureIssuer}
	endpoint := urlRule{https: true, provider: true, insecure: e.AllowInsecureIssuer, query: true}
	for _, u := range []struct {
		key, val string
		rule     urlRule
	}{
		{"issuer", e.Issuer, provider},
		{"authorizationUrl", e.AuthorizationURL, endpoint},
		{"tokenUrl", e.TokenURL, endpoint},
		{"jwksUrl", e.JWKSURL, endpoint},
		{"userinfoUrl", e.UserinfoURL, endpoint},
		{"revocationUrl", e.RevocationURL, endpoint},
		{"logoutUrl", e.LogoutURL, endpoint},
		{"callbackUrl", e.CallbackURL, urlRule{}},
	} {
		if u.val != "" {
			v.url(at(u.key), u.val, u.rule)
		}
	}
	if len(e.SigningAlgorithms) > 0 && set == 0 {
		v.add(at("signingAlgorithms"), "only with manual endpoints (authorizationUrl, tokenUrl, jwksUrl): with discovery the provider's advertised algorithms are used")
	}
	for i, alg := range e.SigningAlgorithms {
		if !slices.Contains(signingAlgorithms, alg) {
			v.add(joinIndex(at("signingAlgorithms"), i), "unsupported algorithm %q; use %s", alg, strings.Join(signingAlgorithms, ", "))
		}
	}
	v.required(at("clientId"), e.ClientID == "")
	v.required(at("clientSecret"), e.ClientSecret == "")
	if !slices.Contains(tokenEndpointAuthMethods, e.TokenEndpointAuthMethod) {
		v.add(at("tokenEndpointAuthMethod"), "must be client_secret_basic or client_secret_post, not %q", e.TokenEndpointAuthMethod)
	}
	if !slices.Contains(e.Scopes, "openid") {
		v.add(at("scopes"), "must contain openid")
	}
	for i, s := range e.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			v.add(joinIndex(at("scopes"), i), "a scope is one word: no spaces, quotes or backslashes")
		}
	}
	for _, p := range strings.Fields(e.Prompt) {
		if !slices.Contains(promptValues, p) {
			v.add(at("prompt"), "unsupported value %q; use space-separated %s", p, strings.Join(promptValues, ", "))
		}
	}
	if e.RefreshMargin < 0 {
		v.add(at("refreshMargin"), "must not be negative")
	}
	switch {
	case e.SessionDuration <= 0:
		v.add(at("sessionDuration"), "must be positive")
	case e.SessionDuration > MaxSessionDuration:
		v.add(at("sessionDuration"), "must be at most 30 days (%s), not %s", formatDuration(MaxSessionDuration), formatDuration(e.SessionDuration))
	case e.RefreshMargin >= e.SessionDuration:
		v.add(at("refreshMargin"), "must be less than sessionDuration (%s)", formatDuration(e.SessionDuration))
	}
	switch {
	case e.RevalidateInterval < MinRevalidateInterval:
		v.add(at("revalidateInterval"), "must be at least %s, not %s", formatDuration(MinRevalidateInterval), formatDuration(e.RevalidateInterval))
	case e.SessionDuration > 0 && e.RevalidateInterval > e.SessionDuration:
		v.add(at("revalidateInterval"), "must be at most sessionDuration (%s), not %s", formatDuration(e.SessionDuration), formatDuration(e.RevalidateInterval))
	}
	resolvers := at("signIn.resolvers")
	if len(e.SignIn.Resolvers) == 0 {
		v.add(resolvers, "at least one resolver is required")
	}
	for i, r := range e.SignIn.Resolvers {
		rp := joinIndex(resolvers, i)
		if v.required(rp+".plugin", r.Plugin == "") && r.Plugin != BuiltinPlugin {
			if _, ok := plugins[r.Plugin]; !ok {
				v.add(rp+".plugin", "unknown plugin %q: not %q and not a key of plugins", r.Plugin, BuiltinPlugin)
			}
		}
		v.required(rp+".resolver", r.Resolver == "")
	}
}

func (v *validator) plugins(c *Config) {
	for _, name := range sortedKeys(c.Plugins) {
		p := c.Plugins[name]
		path := "plugins." + name
		switch {
		case name == BuiltinPlugin:
			v.add(path, "the name %q is reserved for the resolvers compiled into the daemon", BuiltinPlugin)
		case !isPluginName(name):
			v.add(path, "a plugin name is 1 to 63 lowercase letters, digits and -, starting with a letter or digit")
		}
		v.required(path+".command", p.Command == "")
		if p.SHA256 == "" {
			v.add(path+".sha256", "required: the SHA-256 digest of the binary, 64 hex characters (sha256sum prints it)")
		} else if !isHexSHA256(p.SHA256) {
			v.add(path+".sha256", "must be 64 hex characters: the SHA-256 digest of the binary")
		}
		switch {
		case p.CallTimeout <= 0:
			v.add(path+".callTimeout", "must be positive")
		case p.CallTimeout > MaxPluginCallTimeout:
			v.add(path+".callTimeout", "must be at most %s, not %s", formatDuration(MaxPluginCallTimeout), formatDuration(p.CallTimeout))
		}
		for i, rp := range p.ReadPaths {
			if !filepath.IsAbs(rp) {
				v.add(joinIndex(path+".readPaths", i), "must be an absolute path, not %q", rp)
			}
		}
		for _, k := range sortedKeys(p.Env) {
			if !validVarName(k) {
				v.add(joinKey(path+".env", k), "not a valid environment variable name (letters, digits and _, not starting with a digit)")
			}
		}
	}
}

func (v *validator) kubernetes(c *Config) {
	k := c.Kubernetes
	seen := map[string]string{}
	for i, cl := range k.Clusters {
		path := joinIndex("kubernetes.clusters", i)
		if v.required(path+".name", cl.Name == "") {
			if !isClusterName(cl.Name) {
				v.add(path+".name", "a cluster name is letters, digits, ., _ and -, starting with a letter or digit")
			} else if prev, dup := seen[cl.Name]; dup {
				v.add(path+".name", "duplicate cluster name %q (also %s)", cl.Name, prev)
			} else {
				seen[cl.Name] = path + ".name"
			}
		}
		if v.required(path+".url", cl.URL == "") {
			v.url(path+".url", cl.URL, urlRule{https: true})
		}
		if cl.CAData != "" && !validCAData(cl.CAData) {
			v.add(path+".caData", "must be base64-encoded PEM certificates, as in a kubeconfig's certificate-authority-data")
		}
		v.strategy(path+".strategy", cl.Strategy, c.Plugins, true)
	}
	for i, s := range k.Sources {
		path := joinIndex("kubernetes.sources", i)
		v.pluginRef(path+".plugin", s.Plugin, c.Plugins)
		if s.Interval < MinSourceInterval {
			v.add(path+".interval", "must be at least %s, not %s", formatDuration(MinSourceInterval), formatDuration(s.Interval))
		}
		v.strategy(path+".strategy", s.Strategy, c.Plugins, false)
	}
	v.required("kubernetes.audit.sink", k.Audit.Sink == "")
	if v.required("kubernetes.catalog.owner", k.Catalog.Owner == "") && !entityRefRE.MatchString(k.Catalog.Owner) {
		v.add("kubernetes.catalog.owner", "must be a Backstage entity ref such as group:default/platform, not %q", k.Catalog.Owner)
	}
}

func (v *validator) paletteAPI(c *Config) {
	p := c.PaletteAPI
	if p.URL != "" {
		v.url("paletteApi.url", p.URL, urlRule{https: true})
	}
	for i, a := range p.Allow {
		if _, err := ParsePaletteRule(a); err != nil {
			v.add(joinIndex("paletteApi.allow", i), "%v", err)
		}
	}
	if p.Timeout < 0 {
		v.add("paletteApi.timeout", "must not be negative")
	}
}

// strategy checks a strategy reference; an optional one may be left out whole.
func (v *validator) strategy(path string, s StrategyRef, plugins map[string]Plugin, required bool) {
	if !required && s.Plugin == "" && s.Strategy == "" && len(s.Options) == 0 {
		return
	}
	v.pluginRef(path+".plugin", s.Plugin, plugins)
	v.required(path+".strategy", s.Strategy == "")
}

// pluginRef checks a required reference to a key of plugins.
func (v *validator) pluginRef(path, name string, plugins map[string]Plugin) {
	if !v.required(path, name == "") {
		return
	}
	if _, ok := plugins[name]; !ok {
		v.add(path, "unknown plugin %q: not a key of plugins", name)
	}
}

func (v *validator) storage(c *Config) {
	s := c.Storage
	switch s.Type {
	case "":
		v.add("storage.type", "required: file or postgres")
	case "file":
		v.required("storage.path", s.Path == "")
	case "postgres":
		if v.required("storage.postgresUrl", s.PostgresURL == "") {
			u := s.PostgresURL.Reveal()
			if scheme, _, ok := strings.Cut(u, "://"); ok && scheme != "postgres" && scheme != "postgresql" {
				v.add("storage.postgresUrl", "must be a postgres:// or postgresql:// URL, or key=value pairs")
			}
		}
	default:
		v.add("storage.type", "must be file or postgres, not %q", s.Type)
	}
}

func (v *validator) devProvider(c *Config) {
	d := c.DevProvider
	if !d.Enabled {
		return
	}
	if !IsLoopbackListen(c.Server.Listen) {
		v.add("devProvider.enabled", "the development provider only runs on a loopback listen address, not %q", c.Server.Listen)
	}
	// Its issuer is {server.baseUrl}/dev/oidc: a public baseUrl would send
	// browsers and relying parties elsewhere to a provider that signs
	// anyone in.
	if u, err := url.Parse(c.Server.BaseURL); err == nil && u.Host != "" && !isLoopbackHost(u.Hostname()) {
		v.add("server.baseUrl", "must be on a loopback host (localhost, 127.0.0.0/8, [::1]) while devProvider.enabled is true: the development provider's issuer lives under it")
	}
	if len(d.Users) == 0 {
		v.add("devProvider.users", "at least one user is required when the development provider is enabled")
	}
	seen := map[string]string{}
	for i, u := range d.Users {
		path := joinIndex("devProvider.users", i)
		if v.required(path+".username", u.Username == "") {
			if prev, dup := seen[u.Username]; dup {
				v.add(path+".username", "duplicate username %q (also %s)", u.Username, prev)
			}
			seen[u.Username] = path + ".username"
		}
		if u.Email != "" && !strings.Contains(u.Email, "@") {
			v.add(path+".email", "must be an email address")
		}
	}
}

// validOriginPattern reports whether p is scheme://host[:port] with http or
// https, no path, and * only inside host labels (never in the port).
func validOriginPattern(p string) bool {
	scheme, rest, ok := strings.Cut(p, "://")
	if !ok || (!strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https")) {
		return false
	}
	if rest == "" || strings.ContainsAny(rest, "/?#@\\ \t") {
		return false
	}
	host, port, hasPort := rest, "", false
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return false
		}
		host, port = rest[1:end], rest[end+1:]
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Is6() {
			return false
		}
		if port != "" {
			if port, hasPort = strings.CutPrefix(port, ":"); !hasPort {
				return false
			}
		}
	} else {
		if i := strings.LastIndexByte(rest, ':'); i >= 0 {
			host, port, hasPort = rest[:i], rest[i+1:], true
		}
		for _, label := range strings.Split(host, ".") {
			if !originLabelRE.MatchString(label) {
				return false
			}
		}
	}
	if hasPort {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strings.ContainsAny(port, "+-") {
			return false
		}
	}
	return true
}

// wildcardBelowDomain reports whether the * of a valid origin pattern, if any,
// stays below a registrable domain: the labels after the last label with a *
// (the fixed part) must hold a domain someone registered, per the Public
// Suffix List. https://*.example.com passes; https://*, https://*.com,
// https://*.co.uk and https://*.github.io would hand sign-in results to
// anyone who registers a name there, and fail.
func wildcardBelowDomain(p string) bool {
	_, rest, _ := strings.Cut(p, "://")
	if !strings.Contains(rest, "*") {
		return true
	}
	host := rest
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		host = rest[:i]
	}
	labels := strings.Split(strings.ToLower(host), ".")
	last := 0
	for i, l := range labels {
		if strings.Contains(l, "*") {
			last = i
		}
	}
	fixed := strings.Join(labels[last+1:], ".")
	if fixed == "" {
		return false
	}
	_, err := publicsuffix.EffectiveTLDPlusOne(fixed)
	return err == nil
}

// validCAData reports whether s is base64 of one or more PEM certificates.
func validCAData(s string) bool {
	clean := strings.Join(strings.Fields(s), "")
	b, err := base64.StdEncoding.DecodeString(clean)
	return err == nil && strings.Contains(string(b), "-----BEGIN CERTIFICATE-----")
}

// formatDuration writes a duration the way a user would: 5m, 1h, 168h, 1h30m.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
