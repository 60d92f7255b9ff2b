package sdk

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/spectroauth/spectroauth/sdk/internal/transport"
)

// daemonPEM is a certificate as the daemon passes it in PLUGIN_CLIENT_CERT.
func daemonPEM(t *testing.T) string {
	t.Helper()
	c, err := transport.NewCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}))
}

// TestServeCertLine: the plugin announces, in one line, a P-256 certificate
// for localhost made as AutoMTLS makes its own, which is the one its TLS
// server presents; the server requires and verifies the daemon's
// certificate, and only that one.
func TestServeCertLine(t *testing.T) {
	var out bytes.Buffer
	cfg, err := serveCertLine(&out, daemonPEM(t))
	if err != nil {
		t.Fatal(err)
	}
	line, ok := strings.CutPrefix(out.String(), transport.CertLinePrefix)
	if !ok || strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") || len(out.String()) > transport.MaxCertLine {
		t.Fatalf("stdout = %q, want one certificate line", out.String())
	}
	der, err := base64.RawStdEncoding.Strict().DecodeString(strings.TrimSuffix(line, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("the certificate's key is %T, want P-256", cert.PublicKey)
	}
	if !cert.IsCA || cert.VerifyHostname("localhost") != nil || len(cert.ExtKeyUsage) != 2 {
		t.Errorf("the certificate is not a CA for localhost, for client and server authentication: %+v", cert)
	}
	if len(cfg.Certificates) != 1 || !bytes.Equal(cfg.Certificates[0].Certificate[0], der) {
		t.Error("the TLS server does not present the announced certificate")
	}
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil || cfg.RootCAs != cfg.ClientCAs || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("TLS configuration %+v: want the daemon's certificate required and verified, TLS 1.2 at least", cfg)
	}

	if _, err := serveCertLine(io.Discard, "not PEM"); err == nil {
		t.Error("a PLUGIN_CLIENT_CERT that is no certificate was taken")
	}
}

// TestCertLineTLS: the plugin announces its certificate on the certificate
// line only when the daemon says it reads it and sent its own certificate,
// and not in go-plugin's test mode; otherwise go-plugin's AutoMTLS serves
// as before (an older daemon, go-plugin's own runner as in
// plugintest.RunBinary).
func TestCertLineTLS(t *testing.T) {
	pemCert := daemonPEM(t)
	tests := []struct {
		name       string
		certLine   string
		clientCert string
		test       bool
		want       bool
	}{
		{name: "daemon reads the line", certLine: "1", clientCert: pemCert, want: true},
		{name: "go-plugin's runner", clientCert: pemCert},
		{name: "another value", certLine: "yes", clientCert: pemCert},
		{name: "no client certificate", certLine: "1"},
		{name: "test mode", certLine: "1", clientCert: pemCert, test: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(transport.CertLineEnv, tt.certLine)
			t.Setenv("PLUGIN_CLIENT_CERT", tt.clientCert)
			cfg := &plugin.ServeConfig{}
			if tt.test {
				cfg.Test = &plugin.ServeTestConfig{}
			}
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout := os.Stdout
			os.Stdout = w
			tlsCfg, err := certLineTLS(cfg)()
			os.Stdout = stdout
			w.Close()
			out, _ := io.ReadAll(r)
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
			if got := tlsCfg != nil; got != tt.want {
				t.Errorf("TLS configured by the SDK: %v, want %v", got, tt.want)
			}
			if got := strings.HasPrefix(string(out), transport.CertLinePrefix); got != tt.want {
				t.Errorf("stdout = %q; certificate line written: %v, want %v", out, got, tt.want)
			}
		})
	}
}
