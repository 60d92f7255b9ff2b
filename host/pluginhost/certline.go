package pluginhost

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/spectroauth/spectroauth/sdk/pluginclient"
)

// The plugin's certificate, read from its stdout before go-plugin reads the
// handshake line.
//
// A plugin of SDK 0.2.0 or later that is told so (pluginclient.CertLineEnv)
// announces its certificate, P-256, on a line of its own before the
// handshake line, whose certificate field it leaves empty; other plugins
// (older SDKs, the Node.js SDK) put it in the handshake line, where
// go-plugin pins it. The runner pins the line's certificate on the
// process's TLS configuration exactly as go-plugin's loadServerCert pins the
// handshake line's, strips the line, and passes the handshake line on.
// Exactly one of the two lines must carry a certificate: with neither,
// go-plugin would connect trusting the system's roots; with both, which one
// is pinned would depend on go-plugin's order of work.

// minHandshakeCert is the shortest certificate field go-plugin takes for a
// certificate in the handshake line (it ignores 50 bytes or fewer, which
// some old servers wrote there).
const minHandshakeCert = 51

// isCertLine reports whether line is meant as the certificate line.
func isCertLine(line []byte) bool {
	return bytes.HasPrefix(line, []byte(pluginclient.CertLinePrefix))
}

// parseCertLine returns the certificate of the certificate line: DER, in
// base64 standard encoding without padding, of a P-256 ECDSA key's
// certificate. cut says the line was longer than what was read of it.
func parseCertLine(line []byte, cut bool) (*x509.Certificate, error) {
	if cut || len(line) > pluginclient.MaxCertLine {
		return nil, fmt.Errorf("its certificate line is longer than %d bytes", pluginclient.MaxCertLine)
	}
	enc := bytes.TrimSuffix(line[len(pluginclient.CertLinePrefix):], []byte("\r"))
	der := make([]byte, base64.RawStdEncoding.DecodedLen(len(enc)))
	n, err := base64.RawStdEncoding.Strict().Decode(der, enc)
	if err != nil {
		return nil, fmt.Errorf("its certificate line is not base64 (standard, unpadded): %w", err)
	}
	cert, err := x509.ParseCertificate(der[:n])
	if err != nil {
		return nil, fmt.Errorf("its certificate line holds no X.509 certificate: %w", err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("its certificate line's certificate has an %s key, want ECDSA P-256", keyName(cert))
	}
	return cert, nil
}

// keyName names a certificate's key type, for messages.
func keyName(cert *x509.Certificate) string {
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); ok {
		return "ECDSA " + pub.Curve.Params().Name
	}
	return cert.PublicKeyAlgorithm.String()
}

// pinCert makes cert the one certificate the plugin process's connection
// trusts, as go-plugin's loadServerCert does with the handshake line's.
func pinCert(cfg *tls.Config, cert *x509.Certificate) {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	cfg.RootCAs = pool
	cfg.ClientCAs = pool
}

// checkHandshakeCert checks that go-plugin's handshake line carries a
// certificate if and only if the certificate line did not (pinned). A line
// that is no handshake line (fewer than 4 fields) is left to go-plugin,
// which refuses it.
func checkHandshakeCert(line []byte, pinned bool) error {
	parts := bytes.Split(bytes.TrimSpace(line), []byte("|"))
	if len(parts) < 4 {
		return nil
	}
	var field []byte
	if len(parts) >= 6 {
		field = parts[5]
	}
	switch {
	case pinned && len(field) > 0:
		return errors.New("it announced its certificate both on the certificate line and in go-plugin's handshake line")
	case !pinned && len(field) < minHandshakeCert:
		return errors.New("it announced no TLS certificate (neither a certificate line nor one in go-plugin's handshake line): the daemon does not connect to a plugin it cannot authenticate")
	}
	return nil
}
