package sdk

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/go-plugin"

	"github.com/spectroauth/spectroauth/sdk/internal/transport"
)

// The plugin's side of its mutual TLS with the daemon.
//
// go-plugin's AutoMTLS makes the plugin's key on P-521, which costs a plugin
// about 7 ms of CPU at every start and the daemon a P-521 signature check in
// every TLS handshake. When the daemon reads the certificate line
// (transport.CertLineEnv), the plugin does what AutoMTLS does on P-256
// instead, and announces its certificate on that line: see transport's
// documentation of the line. Without the variable (go-plugin's own runner,
// an older daemon), AutoMTLS serves as before.

// certLineTLS returns go-plugin's ServeConfig.TLSProvider for cfg. It
// returns no configuration, leaving TLS to AutoMTLS, unless the daemon reads
// the certificate line, sent its certificate in PLUGIN_CLIENT_CERT, and cfg
// is not in go-plugin's test mode (where stdout carries no handshake). It
// writes the line to stdout: go-plugin calls the provider after it has
// checked the magic cookie and before it writes its handshake line and
// takes os.Stdout over (go-plugin v1.8.0's Serve).
func certLineTLS(cfg *plugin.ServeConfig) func() (*tls.Config, error) {
	return func() (*tls.Config, error) {
		clientPEM := os.Getenv("PLUGIN_CLIENT_CERT")
		if cfg.Test != nil || os.Getenv(transport.CertLineEnv) != "1" || clientPEM == "" {
			return nil, nil
		}
		return serveCertLine(os.Stdout, clientPEM)
	}
}

// serveCertLine makes the plugin's key and certificate, writes the
// certificate line to stdout and returns the TLS configuration of the
// plugin's server: the daemon's certificate (clientPEM) is the only one it
// accepts, and it must present it.
func serveCertLine(stdout io.Writer, clientPEM string) (*tls.Config, error) {
	daemon := x509.NewCertPool()
	if !daemon.AppendCertsFromPEM([]byte(clientPEM)) {
		return nil, errors.New("PLUGIN_CLIENT_CERT holds no PEM certificate")
	}
	cert, err := transport.NewCertificate()
	if err != nil {
		return nil, err
	}
	// One write: the daemon reads the line whole, before the handshake line.
	line := transport.CertLinePrefix + base64.RawStdEncoding.EncodeToString(cert.Certificate[0]) + "\n"
	if _, err := io.WriteString(stdout, line); err != nil {
		return nil, fmt.Errorf("writing the certificate line: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    daemon,
		RootCAs:      daemon,
		MinVersion:   tls.VersionTLS12,
		ServerName:   "localhost",
	}, nil
}
