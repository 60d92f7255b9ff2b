package config

import (
	"strings"
	"testing"
)

func TestParsePaletteRule(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"POST /v1/dashboard/spectroclusters/search", true},
		{"PUT /v1/spectroclusters", true},
		{"post /v1/x", false},
		{"POST", false},
		{"POST v1/x", false},
		{"POST /v1/../x", false},
		{"POST /v1/auth/authenticate", false},
		{"GET /v2/x", false},
	} {
		_, err := ParsePaletteRule(c.in)
		if (err == nil) != c.ok {
			t.Errorf("ParsePaletteRule(%q) err = %v, want ok %v", c.in, err, c.ok)
		}
	}
}

// A bad paletteApi entry is reported under its key path.
func TestValidatePaletteAPI(t *testing.T) {
	var c Config
	c.PaletteAPI = PaletteAPI{URL: "http://palette.example.com", Allow: []string{"POST /v1/ok", "DELETE /v1/auth/x"}, Timeout: -1}
	v := &validator{}
	v.paletteAPI(&c)
	got := v.errs.Error()
	for _, want := range []string{"paletteApi.url", "paletteApi.allow[1]", "paletteApi.timeout"} {
		if !strings.Contains(got, want) {
			t.Errorf("errors %q do not name %s", got, want)
		}
	}
	if strings.Contains(got, "paletteApi.allow[0]") {
		t.Errorf("a good rule was refused: %q", got)
	}
}
