package catalog

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
)

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig(sdk.Options{"baseUrl": "https://backstage.example.com/api/catalog/", "token": "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.BaseURL.String(); got != "https://backstage.example.com/api/catalog" {
		t.Errorf("BaseURL = %s", got)
	}
	if c.Timeout != 3*time.Second || c.CacheTTL != time.Minute || c.NotFoundCacheTTL != 10*time.Second || c.CacheSize != DefaultCacheSize || c.RootCAs != nil {
		t.Errorf("defaults: %v", c)
	}
	for _, s := range []string{c.String(), fmt.Sprintf("%v %+v %#v", c, c, c)} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("the token shows in %s", s)
		}
	}
	c, err = ParseConfig(sdk.Options{"baseUrl": "http://localhost:7007/api/catalog", "cacheTTL": "5s"})
	if err != nil || c.NotFoundCacheTTL != 5*time.Second {
		t.Errorf("notFoundCacheTTL defaults to at most cacheTTL: %v, %v", c, err)
	}
	c, err = ParseConfig(sdk.Options{"baseUrl": "http://localhost:7007/api/catalog", "cacheTTL": "0s"})
	if err != nil || c.CacheTTL != 0 || c.NotFoundCacheTTL != 0 {
		t.Errorf("cacheTTL 0: %v, %v", c, err)
	}
}

func TestParseConfigErrorsNameTheKey(t *testing.T) {
	base := "https://backstage.example.com/api/catalog"
	for _, tc := range []struct {
		name string
		cfg  sdk.Options
		key  string
	}{
		{"missing baseUrl", sdk.Options{}, "baseUrl"},
		{"relative baseUrl", sdk.Options{"baseUrl": "/api/catalog"}, "baseUrl"},
		{"credentials in baseUrl", sdk.Options{"baseUrl": "https://user:pw@backstage.example.com"}, "baseUrl"},
		{"query in baseUrl", sdk.Options{"baseUrl": base + "?x=1"}, "baseUrl"},
		{"token not a string", sdk.Options{"baseUrl": base, "token": 42}, "token"},
		{"token with a newline", sdk.Options{"baseUrl": base, "token": "abc\n"}, "token"},
		{"timeout zero", sdk.Options{"baseUrl": base, "timeout": "0s"}, "timeout"},
		{"timeout huge", sdk.Options{"baseUrl": base, "timeout": "2h"}, "timeout"},
		{"cacheTTL negative", sdk.Options{"baseUrl": base, "cacheTTL": "-1s"}, "cacheTTL"},
		{"notFoundCacheTTL above cacheTTL", sdk.Options{"baseUrl": base, "cacheTTL": "10s", "notFoundCacheTTL": "20s"}, "notFoundCacheTTL"},
		{"cacheSize not a number", sdk.Options{"baseUrl": base, "cacheSize": "big"}, "cacheSize"},
		{"caFile missing", sdk.Options{"baseUrl": base, "caFile": "/nonexistent/ca.pem"}, "caFile"},
		{"caFile with http", sdk.Options{"baseUrl": "http://backstage.example.com", "caFile": "/etc/hostname"}, "caFile"},
		{"misspelt key", sdk.Options{"baseUrl": base, "baseURL": base}, "baseURL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(tc.cfg)
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Fatalf("got %v, want a *sdk.ConfigError naming %q", err, tc.key)
			}
			if strings.Contains(err.Error(), "abc") {
				t.Errorf("the token shows in %v", err)
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions(ResolverAnnotation, sdk.Options{"allowedDomains": []any{"Example.COM.", "example.com", " spectro.example "}})
	if err != nil {
		t.Fatal(err)
	}
	if o.annotation != DefaultAnnotation || strings.Join(o.allowedDomains, " ") != "example.com spectro.example" {
		t.Errorf("got %+v", o)
	}
	if !o.domainAllowed("EXAMPLE.com") || o.domainAllowed("evil.example") || o.domainAllowed("sub.example.com") {
		t.Errorf("domainAllowed is wrong for %v", o.allowedDomains)
	}
	for _, tc := range []struct {
		resolver string
		opts     sdk.Options
		key      string
	}{
		{ResolverLocalPart, sdk.Options{"allowedDomains": []any{}}, "allowedDomains"},
		{ResolverLocalPart, sdk.Options{"allowedDomains": []any{"a b"}}, "allowedDomains[0]"},
		{ResolverLocalPart, sdk.Options{"allowedDomains": []any{"ok.example", 7}}, "allowedDomains[1]"},
		{ResolverAnnotation, sdk.Options{"annotation": ""}, "annotation"},
		{ResolverAnnotation, sdk.Options{"annotation": "Bad_Prefix/x"}, "annotation"},
		{ResolverAnnotation, sdk.Options{"annotation": "example.com/" + strings.Repeat("x", 64)}, "annotation"},
		{ResolverPreferredUsername, sdk.Options{"annotation": "x"}, "annotation"},
	} {
		_, err := parseOptions(tc.resolver, tc.opts)
		var ce *sdk.ConfigError
		if !errors.As(err, &ce) || ce.Key != tc.key {
			t.Errorf("%s %v: got %v, want a *sdk.ConfigError naming %q", tc.resolver, tc.opts, err, tc.key)
		}
	}
	for _, k := range []string{"spectrocloud.com/email", "microsoft.com/email", "email", "a.b-c.example/Mail_1"} {
		if !validAnnotationKey(k) {
			t.Errorf("annotation key %q refused", k)
		}
	}
}

func TestCAFileIsTheOnlyTrust(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"apiVersion":"backstage.io/v1alpha1","kind":"User","metadata":{"name":"jdoe","namespace":"default"}}`))
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	cert := srv.Certificate()
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	// Without caFile the test server's certificate is not trusted.
	h := newHarness(t, sdk.Options{"baseUrl": srv.URL + "/api/catalog"})
	_, err := h.resolve(t, usernameReq("jdoe", nil))
	var uerr x509.UnknownAuthorityError
	if !errors.As(err, &uerr) {
		t.Errorf("without caFile: got %v, want an unknown-authority error", err)
	}
	// With it, it is.
	h = newHarness(t, sdk.Options{"baseUrl": srv.URL + "/api/catalog", "caFile": caFile})
	id, err := h.resolve(t, usernameReq("jdoe", nil))
	if err != nil || id.UserEntityRef != "user:default/jdoe" {
		t.Errorf("with caFile: got %+v, %v", id, err)
	}
}
