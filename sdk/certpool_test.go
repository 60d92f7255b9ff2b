package sdk

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOptionsCertPool(t *testing.T) {
	certPEM, _ := testCertificate(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := x509.NewCertPool()
	want.AppendCertsFromPEM(certPEM)
	tests := []struct {
		name             string
		opts             Options
		dataKey, fileKey string
		wantPool         bool
		wantKey, wantMsg string // wantKey: the key a *ConfigError must name; "" for success
	}{
		{name: "neither set", opts: Options{}, dataKey: "caData", fileKey: "caFile"},
		{name: "both empty", opts: Options{"caData": "", "caFile": nil}, dataKey: "caData", fileKey: "caFile"},
		{name: "caData", opts: Options{"caData": string(certPEM)}, dataKey: "caData", fileKey: "caFile", wantPool: true},
		{name: "caFile", opts: Options{"caFile": caFile}, dataKey: "caData", fileKey: "caFile", wantPool: true},
		{name: "nested keys", opts: Options{"tls": map[string]any{"ca": string(certPEM)}}, dataKey: "tls.ca", fileKey: "tls.caFile", wantPool: true},
		{name: "file key only", opts: Options{"caFile": caFile, "caData": "ignored"}, fileKey: "caFile", wantPool: true},
		{name: "data key only", opts: Options{"caData": string(certPEM), "caFile": "/ignored"}, dataKey: "caData", wantPool: true},
		{name: "both set", opts: Options{"caData": string(certPEM), "caFile": caFile}, dataKey: "caData", fileKey: "caFile",
			wantKey: "caFile", wantMsg: "set caData or caFile, not both"},
		{name: "caData not PEM", opts: Options{"caData": "nope"}, dataKey: "caData", fileKey: "caFile",
			wantKey: "caData", wantMsg: "holds no PEM certificate"},
		{name: "caData not a string", opts: Options{"caData": 42.0}, dataKey: "caData", fileKey: "caFile",
			wantKey: "caData", wantMsg: "must be a string"},
		{name: "caFile missing", opts: Options{"caFile": filepath.Join(dir, "missing.pem")}, dataKey: "caData", fileKey: "caFile",
			wantKey: "caFile", wantMsg: "no such file"},
		{name: "caFile not PEM", opts: Options{"caFile": notPEM}, dataKey: "caData", fileKey: "caFile",
			wantKey: "caFile", wantMsg: notPEM + " holds no PEM certificate"},
		{name: "caFile not a string", opts: Options{"caFile": true}, dataKey: "caData", fileKey: "caFile",
			wantKey: "caFile", wantMsg: "must be a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := tc.opts.CertPool(tc.dataKey, tc.fileKey)
			if tc.wantKey == "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				if (pool != nil) != tc.wantPool || (pool != nil && !pool.Equal(want)) {
					t.Fatalf("pool = %v, want the test certificate's: %t", pool, tc.wantPool)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Key != tc.wantKey || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("got %v, want a *ConfigError naming %q containing %q", err, tc.wantKey, tc.wantMsg)
			}
			if pool != nil {
				t.Errorf("a pool came with the error")
			}
		})
	}
}
