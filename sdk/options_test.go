package sdk

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var testOptions = Options{
	"url":     "https://example.com",
	"empty":   "",
	"count":   float64(3), // as JSON and protobuf Struct give numbers
	"intish":  7,
	"half":    1.5,
	"on":      true,
	"timeout": "30s",
	"bad":     "soon",
	"list":    []any{"a", "b"},
	"mixed":   []any{"a", 2},
	"labels":  map[string]any{"env": "dev"},
	"tls":     map[string]any{"caFile": "/ca.pem", "insecure": false, "depth": map[string]any{"x": "y"}},
	"items":   []any{map[string]any{"email": "a@b"}, "oops"},
	"null":    nil,
}

func TestOptionsGetters(t *testing.T) {
	tests := []struct {
		name    string
		get     func() (any, error)
		want    any
		wantKey string // the key a *ConfigError must name; "" for success
		wantMsg string
	}{
		{name: "String", get: func() (any, error) { return testOptions.String("url") }, want: "https://example.com"},
		{name: "String nested", get: func() (any, error) { return testOptions.String("tls.caFile") }, want: "/ca.pem"},
		{name: "String missing", get: func() (any, error) { return testOptions.String("nope") }, wantKey: "nope", wantMsg: "is required"},
		{name: "String missing nested", get: func() (any, error) { return testOptions.String("tls.certFile") }, wantKey: "tls.certFile", wantMsg: "is required"},
		{name: "String empty", get: func() (any, error) { return testOptions.String("empty") }, wantKey: "empty", wantMsg: "is required"},
		{name: "String null", get: func() (any, error) { return testOptions.String("null") }, wantKey: "null", wantMsg: "is required"},
		{name: "String wrong type", get: func() (any, error) { return testOptions.String("count") }, wantKey: "count", wantMsg: "must be a string, not a number"},
		{name: "StringOr default", get: func() (any, error) { return testOptions.StringOr("nope", "d") }, want: "d"},
		{name: "StringOr set empty", get: func() (any, error) { return testOptions.StringOr("empty", "d") }, want: ""},
		{name: "StringOr wrong type", get: func() (any, error) { return testOptions.StringOr("on", "d") }, wantKey: "on", wantMsg: "not a boolean"},
		{name: "Bool", get: func() (any, error) { return testOptions.Bool("on", false) }, want: true},
		{name: "Bool nested", get: func() (any, error) { return testOptions.Bool("tls.insecure", true) }, want: false},
		{name: "Bool default", get: func() (any, error) { return testOptions.Bool("nope", true) }, want: true},
		{name: "Bool wrong type", get: func() (any, error) { return testOptions.Bool("url", false) }, wantKey: "url", wantMsg: "must be true or false"},
		{name: "Int float", get: func() (any, error) { return testOptions.Int("count", 0) }, want: 3},
		{name: "Int int", get: func() (any, error) { return testOptions.Int("intish", 0) }, want: 7},
		{name: "Int default", get: func() (any, error) { return testOptions.Int("nope", 9) }, want: 9},
		{name: "Int fraction", get: func() (any, error) { return testOptions.Int("half", 0) }, wantKey: "half", wantMsg: "whole number"},
		{name: "Int wrong type", get: func() (any, error) { return testOptions.Int("url", 0) }, wantKey: "url", wantMsg: "whole number"},
		{name: "Duration", get: func() (any, error) { return testOptions.Duration("timeout", 0) }, want: 30 * time.Second},
		{name: "Duration default", get: func() (any, error) { return testOptions.Duration("nope", time.Minute) }, want: time.Minute},
		{name: "Duration bad", get: func() (any, error) { return testOptions.Duration("bad", 0) }, wantKey: "bad", wantMsg: "not a duration"},
		{name: "Duration number", get: func() (any, error) { return testOptions.Duration("count", 0) }, wantKey: "count", wantMsg: "a duration"},
		{name: "Strings", get: func() (any, error) { return testOptions.Strings("list") }, want: []string{"a", "b"}},
		{name: "Strings missing", get: func() (any, error) { return testOptions.Strings("nope") }, want: []string(nil)},
		{name: "Strings element", get: func() (any, error) { return testOptions.Strings("mixed") }, wantKey: "mixed[1]", wantMsg: "must be a string"},
		{name: "Strings not list", get: func() (any, error) { return testOptions.Strings("url") }, wantKey: "url", wantMsg: "a list of strings"},
		{name: "StringMap", get: func() (any, error) { return testOptions.StringMap("labels") }, want: map[string]string{"env": "dev"}},
		{name: "StringMap value", get: func() (any, error) { return testOptions.StringMap("tls") }, wantKey: "tls.depth", wantMsg: "must be a string, not a map"},
		{name: "Sub", get: func() (any, error) { return testOptions.Sub("tls.depth") }, want: Options{"x": "y"}},
		{name: "Sub not map", get: func() (any, error) { return testOptions.Sub("list") }, wantKey: "list", wantMsg: "must be a map, not a list"},
		{name: "List item", get: func() (any, error) { return testOptions.List("items") }, wantKey: "items[1]", wantMsg: "must be a map"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.get()
			if tt.wantKey == "" {
				if err != nil || !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %#v, %v; want %#v", got, err, tt.want)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Key != tt.wantKey || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("got %#v, %v; want a *ConfigError for key %q containing %q", got, err, tt.wantKey, tt.wantMsg)
			}
			if !strings.Contains(err.Error(), `"`+tt.wantKey+`"`) {
				t.Errorf("message %q does not name the key", err)
			}
		})
	}
}

func TestOptionsRejectUnknown(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		known   []string
		wantKey string
	}{
		{name: "all known", opts: Options{"a": 1, "b": 2}, known: []string{"a", "b", "c"}},
		{name: "empty", opts: nil, known: nil},
		{name: "unknown top", opts: Options{"a": 1, "zz": 2, "yy": 3}, known: []string{"a"}, wantKey: "yy"},
		{name: "nothing accepted", opts: Options{"a": 1}, wantKey: "a"},
		{name: "leaf accepts anything beneath", opts: Options{"tls": map[string]any{"whatever": 1}}, known: []string{"tls"}},
		{name: "nested known", opts: Options{"tls": map[string]any{"caFile": "x"}}, known: []string{"tls.caFile", "tls.insecure"}},
		{name: "nested unknown", opts: Options{"tls": map[string]any{"cafile": "x"}}, known: []string{"tls.caFile", "tls.insecure"}, wantKey: "tls.cafile"},
		{name: "leaf and nested", opts: Options{"tls": map[string]any{"other": "x"}}, known: []string{"tls", "tls.caFile"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.RejectUnknown(tt.known...)
			var ce *ConfigError
			switch {
			case tt.wantKey == "" && err != nil:
				t.Fatalf("got %v, want nil", err)
			case tt.wantKey != "" && (!errors.As(err, &ce) || ce.Key != tt.wantKey):
				t.Fatalf("got %v, want a *ConfigError for key %q", err, tt.wantKey)
			}
		})
	}
	err := Options{"tls": map[string]any{"cafile": "x"}}.RejectUnknown("tls.caFile", "tls.insecure")
	if !strings.Contains(err.Error(), "known keys here are caFile, insecure") {
		t.Errorf("message %q does not list the known keys", err)
	}
}

func TestPrefixKey(t *testing.T) {
	items, err := testOptions.List("tls.depth")
	if err == nil {
		t.Fatalf("List of a map = %v, want error", items)
	}
	inner := Options{"email": 3}
	_, err = inner.String("email")
	err = PrefixKey("items[0]", err)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Key != "items[0].email" {
		t.Fatalf("PrefixKey = %v, want key items[0].email", err)
	}
	if got := PrefixKey("p", &ConfigError{Err: errors.New("x")}); got.(*ConfigError).Key != "p" {
		t.Errorf("PrefixKey on a keyless error = %v, want key p", got)
	}
	plain := errors.New("plain")
	if PrefixKey("p", plain) != plain {
		t.Error("PrefixKey changed an error that is not a *ConfigError")
	}
}

func TestErrorsWrap(t *testing.T) {
	cause := errors.New("no such file")
	err := error(&ConfigError{Key: "tls.caFile", Err: cause})
	if err.Error() != `config key "tls.caFile": no such file` || !errors.Is(err, cause) {
		t.Errorf("ConfigError = %q", err)
	}
	if got := (&ConfigError{}).Error(); got != "config: invalid" {
		t.Errorf("empty ConfigError = %q", got)
	}
	err = InvalidInputf("Profile.Email", "not an address: %q", "x")
	if err.Error() != `invalid input Profile.Email: not an address: "x"` {
		t.Errorf("InvalidInputError = %q", err)
	}
	wrapped := errors.Join(errors.New("ctx"), ErrNotFound)
	if !errors.Is(wrapped, ErrNotFound) {
		t.Error("wrapped ErrNotFound not recognised")
	}
}

func TestClaims(t *testing.T) {
	c := Claims{
		"email":          "a@b",
		"groups":         []any{"g1", 2, "g2"},
		"aud":            "client",
		"email_verified": "true",
		"admin":          true,
		"exp":            float64(1700000000.5),
	}
	if c.String("email") != "a@b" || c.String("groups") != "" || c.String("nope") != "" {
		t.Error("String")
	}
	if got := c.Strings("groups"); !reflect.DeepEqual(got, []string{"g1", "g2"}) {
		t.Errorf("Strings(groups) = %q", got)
	}
	if got := c.Strings("aud"); !reflect.DeepEqual(got, []string{"client"}) {
		t.Errorf("Strings(aud) = %q", got)
	}
	if !c.Bool("email_verified") || !c.Bool("admin") || c.Bool("email") || c.Bool("nope") {
		t.Error("Bool")
	}
	if got := c.Time("exp"); !got.Equal(time.Unix(1700000000, 5e8)) {
		t.Errorf("Time(exp) = %v", got)
	}
	if !c.Time("email").IsZero() || !c.Has("admin") || c.Has("nope") {
		t.Error("Time of a string, or Has")
	}
}
