package pluginhost

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"sync"
	"time"
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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("making the daemon's key for the plugins' mutual TLS: %w", err)
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	template := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"spectroauth"}},
		DNSNames:              []string{"localhost"},
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SerialNumber:          sn,
		NotBefore:             now.Add(-30 * time.Second),
		NotAfter:              now.Add(262980 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("making the daemon's certificate for the plugins' mutual TLS: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &hostCert{
		tls: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
	}, nil
}

// clientTLS is the TLS configuration of one plugin process's connection, as
// AutoMTLS makes it; go-plugin adds the plugin's certificate from its
// handshake line as the only root.
func (c *hostCert) clientTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{c.tls},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
		ServerName:   "localhost",
	}
}
