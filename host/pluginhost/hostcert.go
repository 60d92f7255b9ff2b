package pluginhost

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"sync"

	"github.com/spectroauth/spectroauth/sdk/pluginclient"
)

// The daemon's side of the plugins' mutual TLS.
//
// go-plugin's AutoMTLS makes a P-521 key pair and a certificate on the
// daemon's side for every plugin process it starts, before it executes it:
// on the 2-vCPU VM of the benchmarks about 7 ms of CPU each on a busy
// machine, three times for three plugins, on every start's critical path,
// and again at every restart. The host does the same handshake itself
// instead: one key pair and certificate of the daemon's for the life of the
// process (made while the first binaries are verified), handed to each
// plugin in PLUGIN_CLIENT_CERT exactly as AutoMTLS does, the plugin's own
// certificate pinned from its handshake line by go-plugin as before, and
// the same TLS configuration (client certificate required and verified,
// TLS 1.2 at least, server name localhost). The key is P-256, as TLS
// itself prefers: its signature in every handshake costs a fraction of
// P-521's, and the key never leaves the daemon's memory. A plugin cannot
// pose as the daemon to another plugin (it does not have the key), nor as
// another plugin to the daemon (each plugin's certificate is pinned).
//
// The plugin's side is cut the same way (certline.go). The runner sets
// SPECTROAUTH_PLUGIN_CERT_LINE=1 (pluginclient.CertLineEnv); a plugin of SDK
// 0.2.0 or later then makes its own P-256 key and self-signed certificate
// instead of AutoMTLS's P-521 ones (about 7 ms of CPU less per plugin start,
// and a cheaper signature for the daemon to verify in each handshake),
// serves requiring and verifying the daemon's certificate, and announces its
// certificate on stdout in one line,
//
//	spectroauth-plugin-cert|<DER, base64 standard encoding without padding>
//
// before go-plugin's handshake line, whose certificate field is then empty.
// The runner takes that line out of what go-plugin reads, checks it (at most
// pluginclient.MaxCertLine bytes, strict base64, an X.509 certificate with a
// P-256 key) and pins the certificate on this process's TLS configuration
// as go-plugin pins the handshake line's: the only root, and the only client
// CA. Other plugins (SDK 0.1.0, the Node.js SDK) announce their certificate
// in the handshake line, and go-plugin pins it as before. A plugin that
// announces none, both, or a malformed line is refused: the daemon never
// connects trusting the system's roots or nothing.
//
// This is as secure as AutoMTLS: each private key is made in, and never
// leaves, its own process; each side's certificate is pinned by the other
// (the daemon's through PLUGIN_CLIENT_CERT, the plugin's through its line);
// and the certificate line travels as the handshake line does, on the
// plugin's stdout pipe, which only the daemon reads; no other process can
// write a plugin's line or read what the daemon pins. A plugin that lies on
// its line only fails its own handshake.

// hostCert is the daemon's certificate and key for the plugins' mutual TLS.
type hostCert struct {
	tls tls.Certificate
	pem string // the certificate, PEM-encoded, as PLUGIN_CLIENT_CERT
}

// hostCertificate returns the daemon's certificate, made at the first call.
var hostCertificate = sync.OnceValues(newHostCert)

// newHostCert makes a key pair and a self-signed certificate as go-plugin's
// AutoMTLS does (a CA for localhost, for client and server authentication,
// valid for 30 years), but on P-256.
func newHostCert() (*hostCert, error) {
	cert, err := pluginclient.NewCertificate()
	if err != nil {
		return nil, fmt.Errorf("the daemon's certificate for the plugins' mutual TLS: %w", err)
	}
	return &hostCert{
		tls: cert,
		pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})),
	}, nil
}

// clientTLS is the TLS configuration of one plugin process's connection, as
// AutoMTLS makes it, new for each process: the runner (from the certificate
// line) or go-plugin (from the handshake line) adds the plugin's certificate
// as the only root.
func (c *hostCert) clientTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{c.tls},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
		ServerName:   "localhost",
	}
}
