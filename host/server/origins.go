package server

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// originPolicy decides which origins may receive sign-in results and call the
// auth routes with credentials: the app's own origin, exactly, plus the
// configured glob patterns.
type originPolicy struct {
	app      string
	patterns []*regexp.Regexp
}

func newOriginPolicy(appBaseURL string, extra []string) (*originPolicy, error) {
	app, err := normalizeOrigin(appBaseURL)
	if err != nil {
		return nil, fmt.Errorf("app base URL: %w", err)
	}
	p := &originPolicy{app: app}
	for _, pat := range extra {
		re, err := compileOriginGlob(pat)
		if err != nil {
			return nil, fmt.Errorf("extra allowed origin %q: %w", pat, err)
		}
		p.patterns = append(p.patterns, re)
	}
	return p, nil
}

// compileOriginGlob turns a pattern such as https://*.example.com into an
// anchored, case-insensitive expression in which * stands for characters of
// one DNS label: it never crosses a '.', a ':' or a '/', so
// https://*.example.com matches https://a.example.com and not
// https://a.b.example.com or https://evil.com:1.example.com. Whether the
// pattern's fixed part is a registrable domain is checked with the
// configuration (auth.extraAllowedOrigins).
func compileOriginGlob(pattern string) (*regexp.Regexp, error) {
	if pattern == "" || strings.ContainsAny(pattern, " \t\n") {
		return nil, fmt.Errorf("not an origin pattern")
	}
	var b strings.Builder
	b.WriteString("(?i)^")
	for i, part := range strings.Split(pattern, "*") {
		if i > 0 {
			b.WriteString(`[a-z0-9_-]*`)
		}
		b.WriteString(regexp.QuoteMeta(part))
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// allowed reports whether origin (already normalised) may be used.
func (p *originPolicy) allowed(origin string) bool {
	if origin == "" || origin == "null" {
		return false
	}
	if origin == p.app {
		return true
	}
	for _, re := range p.patterns {
		if re.MatchString(origin) {
			return true
		}
	}
	return false
}

// normalizeOrigin reduces a URL to scheme://host[:port], the way the browser's
// URL.origin does, and refuses anything that is not an http(s) origin.
func normalizeOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("origin is not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("origin must be http or https")
	}
	if u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", fmt.Errorf("origin has no plain host")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", fmt.Errorf("origin has no plain host")
	}
	if strings.Contains(host, "%") {
		// An IPv6 zone (fe80::1%eth0): browsers have no such origin, and
		// the result would not parse again.
		return "", fmt.Errorf("origin has an IPv6 zone")
	}
	port := u.Port()
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return u.Scheme + "://" + host, nil
}

// AllowsOrigin reports whether sign-in results may be sent to the origin of
// rawURL (app.baseUrl's origin or one matching auth.extraAllowedOrigins).
func (s *Server) AllowsOrigin(rawURL string) bool {
	o, err := normalizeOrigin(rawURL)
	return err == nil && s.origins.allowed(o)
}
