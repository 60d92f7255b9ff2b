package pluginhost

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/sdk/pluginclient"
)

// selfSigned returns a self-signed certificate's DER on curve.
func selfSigned(t *testing.T, curve elliptic.Curve) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "localhost"}, SerialNumber: big.NewInt(1),
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestParseCertLine: only a bounded line of unpadded standard base64 of a
// certificate with a P-256 key is taken.
func TestParseCertLine(t *testing.T) {
	p256 := base64.RawStdEncoding.EncodeToString(selfSigned(t, elliptic.P256()))
	p384 := base64.RawStdEncoding.EncodeToString(selfSigned(t, elliptic.P384()))
	tests := []struct {
		name string
		line string
		cut  bool
		err  string // empty: accepted
	}{
		{name: "P-256", line: p256},
		{name: "cut", line: p256, cut: true, err: "longer than 4096 bytes"},
		{name: "too long", line: p256 + strings.Repeat("A", pluginclient.MaxCertLine), err: "longer than 4096 bytes"},
		{name: "padded", line: base64.StdEncoding.EncodeToString([]byte("12345")), err: "not base64"},
		{name: "URL alphabet", line: strings.NewReplacer("+", "-", "/", "_").Replace(p256) + "-_", err: "not base64"},
		{name: "empty", line: "", err: "holds no X.509 certificate"},
		{name: "not a certificate", line: base64.RawStdEncoding.EncodeToString([]byte("hello")), err: "holds no X.509 certificate"},
		{name: "trailing bytes", line: p256 + "AAAA", err: "holds no X.509 certificate"},
		{name: "P-384", line: p384, err: "has an ECDSA P-384 key, want ECDSA P-256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := []byte(pluginclient.CertLinePrefix + tt.line)
			if !isCertLine(line) {
				t.Fatal("not taken for a certificate line")
			}
			cert, err := parseCertLine(line, tt.cut)
			switch {
			case tt.err == "" && (err != nil || cert == nil):
				t.Fatalf("parseCertLine = %v, want the certificate", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("parseCertLine = %v, want an error with %q", err, tt.err)
			}
		})
	}
}

// TestCheckHandshakeCert: exactly one of the certificate line and go-plugin's
// handshake line carries the plugin's certificate; what is no handshake line
// is left to go-plugin.
func TestCheckHandshakeCert(t *testing.T) {
	cert := base64.RawStdEncoding.EncodeToString(selfSigned(t, elliptic.P256()))
	tests := []struct {
		name   string
		line   string
		pinned bool
		err    string
	}{
		{name: "certificate line only", line: "1|1|unix|/tmp/p|grpc|", pinned: true},
		{name: "certificate line, five fields", line: "1|1|unix|/tmp/p|grpc", pinned: true},
		{name: "handshake line only", line: "1|1|unix|/tmp/p|grpc|" + cert},
		{name: "both", line: "1|1|unix|/tmp/p|grpc|" + cert, pinned: true, err: "both"},
		{name: "both, short", line: "1|1|unix|/tmp/p|grpc|x", pinned: true, err: "both"},
		{name: "neither", line: "1|1|unix|/tmp/p|grpc|", err: "no TLS certificate"},
		{name: "neither, five fields", line: "1|1|unix|/tmp/p|grpc", err: "no TLS certificate"},
		{name: "neither, what go-plugin ignores", line: "1|1|unix|/tmp/p|grpc|" + strings.Repeat("A", 50), err: "no TLS certificate"},
		{name: "no handshake line", line: "hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkHandshakeCert([]byte(tt.line), tt.pinned)
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("checkHandshakeCert = %v, want nil", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("checkHandshakeCert = %v, want an error with %q", err, tt.err)
			}
		})
	}
}
