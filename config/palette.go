package config

import (
	"fmt"
	"path"
	"strings"
)

// PaletteRule is one paletteApi.allow entry.
type PaletteRule struct {
	// Method is an upper-case HTTP method.
	Method string
	// Prefix is a clean path under /v1/; it matches itself and the paths below it.
	Prefix string
}

// ParsePaletteRule reads a "METHOD /v1/path/prefix" rule of paletteApi.allow.
func ParsePaletteRule(s string) (PaletteRule, error) {
	method, prefix, ok := strings.Cut(strings.TrimSpace(s), " ")
	prefix = strings.TrimSpace(prefix)
	switch {
	case !ok || method == "" || prefix == "":
		return PaletteRule{}, fmt.Errorf("%q is not of the form \"METHOD /v1/path/prefix\"", s)
	case method != strings.ToUpper(method) || strings.ContainsAny(method, " \t/"):
		return PaletteRule{}, fmt.Errorf("%q: the method must be an upper-case HTTP method such as POST", s)
	case !strings.HasPrefix(prefix, "/v1/") || path.Clean(prefix) != prefix:
		return PaletteRule{}, fmt.Errorf("%q: the prefix must be a clean path under /v1/, such as /v1/spectroclusters", s)
	case prefix == "/v1/auth" || strings.HasPrefix(prefix, "/v1/auth/"):
		return PaletteRule{}, fmt.Errorf("%q: /v1/auth (Palette's sign-in and token renewal) is never reachable as the user", s)
	}
	return PaletteRule{Method: method, Prefix: prefix}, nil
}
