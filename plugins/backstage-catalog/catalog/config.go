package catalog

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
)

// Defaults and bounds of the plugin's configuration.
const (
	// DefaultTimeout bounds one catalog lookup (all its HTTP requests).
	DefaultTimeout = 3 * time.Second
	// DefaultCacheTTL is how long a user found in the catalog is remembered.
	DefaultCacheTTL = 60 * time.Second
	// DefaultNotFoundCacheTTL is how long "no such user" is remembered, when
	// cacheTTL is at least that long.
	DefaultNotFoundCacheTTL = 10 * time.Second
	// DefaultCacheSize is how many lookups the cache holds at most.
	DefaultCacheSize = 10000

	maxTimeout   = time.Minute
	maxCacheTTL  = 24 * time.Hour
	maxCacheSize = 1_000_000
)

// Config is the plugin's configuration: its `config:` block in the daemon's
// configuration, checked.
type Config struct {
	// BaseURL is the catalog's base URL, e.g.
	// https://backstage.example.com/api/catalog, without a trailing slash.
	BaseURL *url.URL
	// Token is the service token sent as "Authorization: Bearer"; empty
	// sends none. Never logged.
	Token string
	// Timeout bounds one lookup.
	Timeout time.Duration
	// CacheTTL is how long a found user is cached; 0 disables the cache.
	CacheTTL time.Duration
	// NotFoundCacheTTL is how long a "not found" is cached; at most
	// CacheTTL.
	NotFoundCacheTTL time.Duration
	// CacheSize bounds the number of cached lookups.
	CacheSize int
	// RootCAs, when set (from caFile), are the only certificate authorities
	// trusted for BaseURL; otherwise the system's are.
	RootCAs *x509.CertPool
}

// String describes the configuration without the token.
func (c Config) String() string {
	base := ""
	if c.BaseURL != nil {
		base = c.BaseURL.String()
	}
	return fmt.Sprintf("Config{BaseURL:%s Token:%s Timeout:%s CacheTTL:%s NotFoundCacheTTL:%s CacheSize:%d CustomCA:%t}",
		base, redact(c.Token), c.Timeout, c.CacheTTL, c.NotFoundCacheTTL, c.CacheSize, c.RootCAs != nil)
}

// GoString is String, so that %#v hides the token too.
func (c Config) GoString() string { return c.String() }

func redact(s string) string {
	if s == "" {
		return `""`
	}
	return "[redacted]"
}

// configKeys are the keys of the `config:` block.
var configKeys = []string{"baseUrl", "token", "timeout", "cacheTTL", "notFoundCacheTTL", "cacheSize", "caFile"}

// ParseConfig checks a `config:` block and returns it as a Config. Errors
// are *sdk.ConfigError values naming the key.
func ParseConfig(values sdk.Options) (Config, error) {
	var c Config
	if err := values.RejectUnknown(configKeys...); err != nil {
		return c, err
	}
	raw, err := values.String("baseUrl")
	if err != nil {
		return c, err
	}
	if c.BaseURL, err = parseBaseURL(raw); err != nil {
		return c, sdk.ConfigErrorf("baseUrl", "%v", err)
	}
	if c.Token, err = values.StringOr("token", ""); err != nil {
		return c, err
	}
	if strings.ContainsFunc(c.Token, func(r rune) bool { return r <= ' ' || r > '~' }) {
		// The value itself is never quoted: it is a secret.
		return c, sdk.ConfigErrorf("token", "has spaces, line breaks or characters other than printable ASCII (is the variable it comes from quoted or followed by a newline?)")
	}
	if c.Timeout, err = durationIn(values, "timeout", DefaultTimeout, time.Millisecond, maxTimeout); err != nil {
		return c, err
	}
	if c.CacheTTL, err = durationIn(values, "cacheTTL", DefaultCacheTTL, 0, maxCacheTTL); err != nil {
		return c, err
	}
	if c.NotFoundCacheTTL, err = durationIn(values, "notFoundCacheTTL", min(DefaultNotFoundCacheTTL, c.CacheTTL), 0, maxCacheTTL); err != nil {
		return c, err
	}
	if c.NotFoundCacheTTL > c.CacheTTL {
		return c, sdk.ConfigErrorf("notFoundCacheTTL", "is %s, longer than cacheTTL (%s)", c.NotFoundCacheTTL, c.CacheTTL)
	}
	if c.CacheSize, err = values.Int("cacheSize", DefaultCacheSize); err != nil {
		return c, err
	}
	if c.CacheSize < 1 || c.CacheSize > maxCacheSize {
		return c, sdk.ConfigErrorf("cacheSize", "is %d, want 1 to %d (set cacheTTL to 0 to disable the cache)", c.CacheSize, maxCacheSize)
	}
	caFile, err := values.StringOr("caFile", "")
	if err != nil {
		return c, err
	}
	if caFile != "" && c.BaseURL.Scheme != "https" {
		return c, sdk.ConfigErrorf("caFile", "is set but baseUrl is not https")
	}
	if c.RootCAs, err = values.CertPool("", "caFile"); err != nil {
		return c, err
	}
	return c, nil
}

func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL", raw)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("%q is not an http or https URL", raw)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%q has no host", raw)
	case u.User != nil:
		return nil, fmt.Errorf("has credentials in it: put the service token under token instead")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("%q has a query or fragment", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// isLoopback reports whether u's host is a loopback name or address.
func isLoopback(u *url.URL) bool {
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func durationIn(values sdk.Options, key string, def, lo, hi time.Duration) (time.Duration, error) {
	d, err := values.Duration(key, def)
	if err != nil {
		return 0, err
	}
	if d < lo || d > hi {
		return 0, sdk.ConfigErrorf(key, "is %s, want %s to %s", d, lo, hi)
	}
	return d, nil
}

// tlsConfig is the TLS configuration of the catalog client: certificates
// are always verified.
func (c Config) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.RootCAs}
}
