package sdk

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"runtime/debug"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ProtocolVersion is the plugin protocol version a plugin built with this SDK
// serves, and the only one (protobuf package spectroauth.plugin.v1). It is
// negotiated in the go-plugin handshake, where both ends list their versions
// in VersionedPlugins (Handshake leaves ProtocolVersion out): the daemon
// offers every version it speaks, and the plugin answers with the newest one
// it serves too. A daemon that adds a version 2 keeps speaking version 1, so
// a plugin built for version 1 keeps working unchanged; the daemon refuses,
// at start, a plugin that serves none of its versions, naming both sides'
// versions.
const ProtocolVersion = 1

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
// go-plugin plugin sets of both ends. Plugin authors do not need it.
const PluginSetKey = "spectroauth"

// LogLevelEnv is the environment variable that sets a plugin's log level
// (trace, debug, info, warn, error); the default is info.
const LogLevelEnv = "SPECTROAUTH_PLUGIN_LOG_LEVEL"

// Handshake is the go-plugin handshake shared by the daemon and its plugins.
// The magic cookie is no security measure: it only keeps a plugin binary from
// being run by hand by mistake.
var Handshake = plugin.HandshakeConfig{
	MagicCookieKey:   "SPECTROAUTH_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "6f1d2c3b-spectroauth-plugin-d6a94e1c87b2",
}

// Serve serves p as a spectroauth plugin and returns when the daemon is done
// with it. Call it from main:
//
//	func main() {
//		sdk.Serve(sdk.Plugin{Name: "example", Impl: &resolver{}})
//	}
//
// Serve speaks go-plugin's gRPC protocol and serves the services of every
// role p.Impl implements. It makes hclog.Default (and the standard library's
// log package) write JSON to stderr, which the daemon turns into its own log
// lines; log with hclog.L() or hclog.Default(). A plugin must never write to
// stdout: before the handshake that corrupts it, and after it the output is
// thrown away.
//
// When p is unusable, or the program is run by hand, Serve writes why to
// stderr and exits with status 1.
func Serve(p Plugin) {
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       p.Name,
		Level:      hclog.LevelFromString(os.Getenv(LogLevelEnv)), // unset: info
		Output:     os.Stderr,
		JSONFormat: true,
	})
	hclog.SetDefault(logger)
	log.SetFlags(0)
	log.SetOutput(logger.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true}))

	cfg, err := NewServeConfig(p, logger)
	if err != nil {
		fmt.Fprintf(os.Stderr, "spectroauth plugin: %v\n", err)
		os.Exit(1)
	}
	plugin.Serve(cfg)
}

// NewServeConfig returns the go-plugin configuration that Serve uses for p,
// logging to logger (nil means hclog.Default()). Most plugins call Serve
// instead; sdk/plugintest uses this to serve a plugin in-process, with
// ServeConfig.Test set.
func NewServeConfig(p Plugin, logger hclog.Logger) (*plugin.ServeConfig, error) {
	if logger == nil {
		logger = hclog.Default()
	}
	srv, err := newServer(p, logger)
	if err != nil {
		return nil, err
	}
	return &plugin.ServeConfig{
		HandshakeConfig: Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{
			ProtocolVersion: {PluginSetKey: &grpcPlugin{srv: srv}},
		},
		// The SDK's options come first, so that options passed in (go-plugin
		// passes the TLS credentials) add to them or override them.
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append([]grpc.ServerOption{
				grpc.MaxRecvMsgSize(MaxMessageSize),
				grpc.MaxSendMsgSize(MaxMessageSize),
				grpc.StaticStreamWindowSize(FlowControlWindow),
				grpc.StaticConnWindowSize(FlowControlWindow),
				grpc.ChainUnaryInterceptor(recoverPanics(logger)),
			}, opts...)...)
		},
		Logger: logger,
	}, nil
}

// grpcPlugin is the plugin side of the protocol in go-plugin's terms.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	srv *server
}

// GRPCServer registers the services of the plugin.
func (g *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	g.srv.register(s)
	return nil
}

// GRPCClient is not used on the plugin side.
func (g *grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("sdk: this is the plugin side of the protocol; hosts use sdk/pluginclient")
}

// recoverPanics turns a panic in a call into an Internal error, so that one
// bad request does not take the plugin down.
func recoverPanics(logger hclog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				logger.Error("plugin panicked", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				resp, err = nil, status.Errorf(codes.Internal, "plugin panicked in %s: %v", info.FullMethod, r)
			}
		}()
		return handler(ctx, req)
	}
}
