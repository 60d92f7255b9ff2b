package pluginhost

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/config"
)

// TestHostCertificate: the daemon's certificate for the plugins' mutual
// TLS is made once, on P-256, as a CA for client authentication; a plugin
// configured as go-plugin's AutoMTLS server configures itself (only the
// daemon's certificate as client CA, verified) accepts the daemon's
// connection and refuses one with another certificate, and the daemon
// accepts only the plugin certificate it pinned.
func TestHostCertificate(t *testing.T) {
	hc, err := hostCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := hostCertificate(); again != hc {
		t.Error("a second certificate was made")
	}
	leaf := hc.tls.Leaf
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("the daemon's key is %T, want P-256", leaf.PublicKey)
	}
	if !leaf.IsCA || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("the certificate is not a CA for client authentication: %+v", leaf)
	}

	plugin, err := newHostCert() // stands for the plugin's own certificate
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := newHostCert()
	if err != nil {
		t.Fatal(err)
	}
	handshake := func(client *hostCert, pinned *hostCert) error {
		clientCAs := x509.NewCertPool()
		if !clientCAs.AppendCertsFromPEM([]byte(hc.pem)) { // PLUGIN_CLIENT_CERT
			t.Fatal("PLUGIN_CLIENT_CERT does not parse")
		}
		server := &tls.Config{
			Certificates: []tls.Certificate{plugin.tls},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    clientCAs,
			MinVersion:   tls.VersionTLS12,
		}
		cfg := client.clientTLS()
		roots := x509.NewCertPool()
		roots.AddCert(pinned.tls.Leaf) // go-plugin's loadServerCert
		cfg.RootCAs = roots
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		errc := make(chan error, 1)
		go func() {
			s := tls.Server(b, server)
			errc <- s.Handshake()
			s.Close()
		}()
		c := tls.Client(a, cfg)
		cerr := c.Handshake()
		if cerr == nil {
			// TLS 1.3: the server's verdict on the client certificate
			// arrives with the first read.
			_, cerr = c.Read(make([]byte, 1))
		}
		c.Close()
		serr := <-errc
		if serr != nil {
			return serr
		}
		if cerr != nil && cerr.Error() != "EOF" {
			return cerr
		}
		return nil
	}
	if err := handshake(hc, plugin); err != nil {
		t.Errorf("the daemon's connection to its plugin: %v", err)
	}
	if err := handshake(stranger, plugin); err == nil {
		t.Error("the plugin accepted a client with another certificate")
	}
	if err := handshake(hc, stranger); err == nil {
		t.Error("the daemon accepted a plugin certificate it did not pin")
	}
}

// TestPinnedPluginCertificate: a real plugin process whose handshake line
// names another certificate than the one its TLS server presents is
// refused: the host pins the line's certificate, and the start fails.
func TestPinnedPluginCertificate(t *testing.T) {
	opts, _ := testOptions(t)
	cfg := pluginConfig(t)
	cfg.Env = map[string]config.Secret{"TESTPLUGIN_LIE_CERT": "1"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, err := Start(ctx, map[string]config.Plugin{"tp": cfg}, opts)
	if err == nil {
		_ = h.Close(context.Background())
		t.Fatal("a plugin whose TLS certificate is not the one of its handshake line was started")
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Start = %v, want a certificate verification failure", err)
	}

	// The same plugin, honest, starts: the refusal is the certificate's.
	cfg.Env = nil
	h, err = Start(ctx, map[string]config.Plugin{"tp": cfg}, opts)
	if err != nil {
		t.Fatalf("the honest plugin: %v", err)
	}
	_ = h.Close(context.Background())
}
