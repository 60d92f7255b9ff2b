package pluginhost

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

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

// peerKey returns the key type of the certificate the plugin tp of h
// presented on its connection, as the daemon sees it.
func peerKey(t *testing.T, h *Host) string {
	t.Helper()
	g := h.plugins["tp"].cur.Load()
	if g == nil {
		t.Fatal("the plugin is down")
	}
	var p peer.Peer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := g.health.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		t.Fatalf("health check: %v", err)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		t.Fatalf("the connection to the plugin is not mutual TLS: %#v", p.AuthInfo)
	}
	return keyName(info.State.PeerCertificates[0])
}

// TestPluginCertificate: a plugin of this SDK started by the daemon
// announces a P-256 certificate on the certificate line, which the daemon
// pins; a plugin of an older SDK (go-plugin's AutoMTLS, the certificate in
// the handshake line, P-521) still starts. A plugin whose announced
// certificate is not the one its TLS server presents is refused, and so is
// one whose certificate line is malformed, that announces its certificate
// twice (on two lines, or on both), or none: the start fails with a message naming the plugin.
func TestPluginCertificate(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]config.Secret
		key     string // the key of the certificate the daemon sees
		refused string // the start fails with this in its message
	}{
		{name: "certificate line", key: "ECDSA P-256"},
		{name: "handshake line (SDK before 0.2.0)", env: map[string]config.Secret{"TESTPLUGIN_LEGACY_TLS": "1"}, key: "ECDSA P-521"},
		{name: "certificate line names another certificate", env: map[string]config.Secret{"TESTPLUGIN_LIE_CERT": "other"},
			refused: "tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{name: "handshake line names another certificate",
			env:     map[string]config.Secret{"TESTPLUGIN_LEGACY_TLS": "1", "TESTPLUGIN_LIE_CERT": "other"},
			refused: "tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{name: "malformed certificate line", env: map[string]config.Secret{"TESTPLUGIN_LIE_CERT": "malformed"},
			refused: `plugins.tp: plugin "tp" (%s) refused: its certificate line is not base64`},
		{name: "certificate in both lines", env: map[string]config.Secret{"TESTPLUGIN_LIE_CERT": "both"},
			refused: `plugins.tp: plugin "tp" (%s) refused: it announced its certificate both on the certificate line and in go-plugin's handshake line`},
		{name: "two certificate lines", env: map[string]config.Secret{"TESTPLUGIN_LIE_CERT": "twice"},
			refused: `plugins.tp: plugin "tp" (%s) refused: it wrote two certificate lines`},
		{name: "no certificate", env: map[string]config.Secret{"TESTPLUGIN_LIE_CERT": "none"},
			refused: `plugins.tp: plugin "tp" (%s) refused: it announced no TLS certificate`},
		{name: "no certificate (SDK before 0.2.0)",
			env:     map[string]config.Secret{"TESTPLUGIN_LEGACY_TLS": "1", "TESTPLUGIN_LIE_CERT": "none"},
			refused: `plugins.tp: plugin "tp" (%s) refused: it announced no TLS certificate`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, _ := testOptions(t)
			cfg := pluginConfig(t)
			cfg.Env = tt.env
			if tt.refused == "" {
				h := start(t, map[string]config.Plugin{"tp": cfg}, opts)
				if got := peerKey(t, h); got != tt.key {
					t.Errorf("the plugin's certificate has a %s key, want %s", got, tt.key)
				}
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			h, err := Start(ctx, map[string]config.Plugin{"tp": cfg}, opts)
			if err == nil {
				_ = h.Close(context.Background())
				t.Fatal("the plugin was started")
			}
			t.Logf("Start: %v", err)
			want := tt.refused
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, cfg.Command)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("Start = %v\nwant an error with %s", err, want)
			}
		})
	}
}
