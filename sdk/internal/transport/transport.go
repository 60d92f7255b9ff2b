// Package transport holds what both ends of the spectroauth plugin protocol
// share below the SDK's types: go-plugin's handshake, the plugin set key and
// gRPC's message and flow-control limits, and the hook through which the SDK
// module's other packages build a plugin's go-plugin configuration. Plugin
// authors need none of it: package sdk hides it, sdk/pluginclient and
// sdk/pluginserver expose what hosts and host tests need.
package transport

import (
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// MaxMessageSize is the largest gRPC message either end of the plugin
// protocol sends or accepts, in bytes.
const MaxMessageSize = 4 << 20

// FlowControlWindow is the HTTP/2 flow-control window, per call and per
// connection, that both ends of the plugin protocol receive with, in bytes:
// as large as MaxMessageSize, so that a call of any size the protocol allows
// is not held up waiting for window updates. The window is fixed: that turns
// off gRPC's bandwidth-delay estimation, which otherwise sends a PING, its
// ACK and a WINDOW_UPDATE with nearly every call; on a Unix socket to a local
// process that doubles the writes and wake-ups of a call and estimates
// nothing useful.
const FlowControlWindow = MaxMessageSize

// PluginSetKey is the name under which the protocol is registered in the
// go-plugin plugin sets of both ends.
const PluginSetKey = "spectroauth"

// Handshake is the go-plugin handshake shared by the daemon and its plugins.
// The magic cookie is no security measure: it only keeps a plugin binary from
// being run by hand by mistake. ProtocolVersion is left out: both ends list
// their versions in VersionedPlugins.
var Handshake = plugin.HandshakeConfig{
	MagicCookieKey:   "SPECTROAUTH_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "6f1d2c3b-spectroauth-plugin-d6a94e1c87b2",
}

// NewServeConfig returns the go-plugin configuration that sdk.Serve uses for
// p, an sdk.Plugin, logging to logger (nil: hclog.Default()). Package sdk
// sets it when it is initialized; it takes any because this package cannot
// import sdk.
var NewServeConfig func(p any, logger hclog.Logger) (*plugin.ServeConfig, error)

// The certificate line: how a plugin of this SDK tells the daemon its TLS
// certificate when the daemon says it reads it (CertLineEnv), instead of in
// go-plugin's handshake line, where go-plugin's AutoMTLS puts a P-521
// certificate of its own making.
//
// The plugin makes a P-256 key and a self-signed certificate, configures its
// TLS server itself (go-plugin's ServeConfig.TLSProvider), requiring and
// verifying the daemon's client certificate of PLUGIN_CLIENT_CERT, and
// writes the line CertLinePrefix + the certificate (DER, base64 standard
// encoding without padding) to stdout before go-plugin writes its
// handshake line, whose certificate field is then empty. The daemon pins the
// certificate as the one root of that plugin's connection, as go-plugin
// would pin the handshake line's.
const (
	// CertLineEnv is the environment variable the daemon sets to "1" to say
	// it reads the certificate line.
	CertLineEnv = "SPECTROAUTH_PLUGIN_CERT_LINE"
	// CertLinePrefix starts the certificate line.
	CertLinePrefix = "spectroauth-plugin-cert|"
	// MaxCertLine bounds the certificate line, newline excluded, in bytes:
	// a P-256 certificate for localhost takes about 700.
	MaxCertLine = 4096
)
