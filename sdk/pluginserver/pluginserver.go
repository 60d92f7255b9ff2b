// Package pluginserver is the plugin side of the spectroauth plugin
// protocol's transport: the go-plugin configuration sdk.Serve serves a plugin
// with. Plugins call sdk.Serve and do not need it. It is for what needs the
// transport in hand: tests of a host that serve a plugin in their own way (a
// deliberately misbehaving plugin, other protocol versions), or a plugin
// served in go-plugin's test or debug mode.
//
// Package sdk/pluginclient is the host side.
package pluginserver

import (
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/internal/transport"
)

// NewServeConfig returns the go-plugin configuration that sdk.Serve serves p
// with, logging to logger (nil means hclog.Default()): the protocol's
// handshake, one plugin set per version of sdk.ProtocolVersions, and a gRPC
// server with the protocol's message limits that turns a panic of a call into
// an error, and a TLSProvider that serves with a P-256 certificate announced
// on the certificate line when the daemon asks for it
// (pluginclient.CertLineEnv), and leaves TLS to go-plugin's AutoMTLS
// otherwise. Pass it to plugin.Serve, changed as needed; GRPCServer adds the
// options it is given after the SDK's own.
func NewServeConfig(p sdk.Plugin, logger hclog.Logger) (*plugin.ServeConfig, error) {
	return transport.NewServeConfig(p, logger)
}
