package server

import "testing"

func TestOriginPatterns(t *testing.T) {
	for _, tc := range []struct {
		pattern, origin string
		want            bool
	}{
		{"https://*.example.com", "https://a.example.com", true},
		{"https://*.example.com", "https://A-1.Example.com", true},
		{"https://*.example.com", "https://a.b.example.com", false},
		{"https://*.example.com", "https://example.com", false},
		{"https://*.example.com", "http://a.example.com", false},
		{"https://*.example.com", "https://a.example.com:8443", false},
		{"https://*.example.com", "https://a.example.com.evil.com", false},
		{"https://*.example.com", "https://evil.com/.example.com", false},
		{"https://pr-*.preview.example.com:8443", "https://pr-12.preview.example.com:8443", true},
		{"https://pr-*.preview.example.com:8443", "https://pr-1.x.preview.example.com:8443", false},
		{"https://a.*.example.com", "https://a.b.example.com", true},
		{"https://a.*.example.com", "https://a.b.c.example.com", false},
		{"http://localhost:3000", "http://localhost:3000", true},
		{"http://localhost:3000", "http://localhost:30001", false},
	} {
		p, err := newOriginPolicy("https://app.example.org", []string{tc.pattern})
		if err != nil {
			t.Fatalf("%s: %v", tc.pattern, err)
		}
		if got := p.allowed(tc.origin); got != tc.want {
			t.Errorf("pattern %s, origin %s: allowed %v, want %v", tc.pattern, tc.origin, got, tc.want)
		}
	}
}
