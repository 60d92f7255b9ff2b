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

	"github.com/spectroauth/spectroauth/sdk/internal/transport"
)

// ProtocolVersion is the newest plugin protocol version a plugin built with
// this SDK serves (protobuf package spectroauth.plugin.v1). It is negotiated
// in go-plugin's handshake: the daemon offers every version it speaks, and
// the plugin answers with the newest one it serves too. A daemon that adds a
// version 2 keeps speaking version 1, so a plugin built for version 1 keeps
// working unchanged; the daemon refuses, at start, a plugin that serves none
// of its versions, naming both sides' versions.
const ProtocolVersion = 1

// ProtocolVersions lists every plugin protocol version this SDK speaks,
// oldest first. A plugin built with it serves all of them.
func ProtocolVersions() []int { return []int{1} }

// LogLevelEnv is the environment variable that sets a plugin's log level
// (trace, debug, info, warn, error); the default is info.
const LogLevelEnv = "SPECTROAUTH_PLUGIN_LOG_LEVEL"

func init() {
	transport.NewServeConfig = func(p any, logger hclog.Logger) (*plugin.ServeConfig, error) {
		pl, ok := p.(Plugin)
		if !ok {
			return nil, fmt.Errorf("sdk: serving a %T, not an sdk.Plugin", p)
		}
		return newServeConfig(pl, logger)
	}
}

// Serve serves p as a spectroauth plugin and returns when the daemon is done
// with it. Call it from main:
//
//	func main() {
//		r := &resolver{}
//		sdk.Serve(sdk.Plugin{Name: "example", Version: "1.0.0", Resolver: r, Configurer: r})
//	}
//
// Serve speaks go-plugin's gRPC protocol, every version of ProtocolVersions,
// and serves the services of the capabilities p sets. It makes hclog.Default (and the standard library's
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

	cfg, err := newServeConfig(p, logger)
	if err != nil {
		fmt.Fprintf(os.Stderr, "spectroauth plugin: %v\n", err)
		os.Exit(1)
	}
	plugin.Serve(cfg)
}

// newServeConfig returns the go-plugin configuration that Serve uses for p,
// logging to logger (nil means hclog.Default()). sdk/pluginserver reaches it
// through transport.NewServeConfig, which init sets.
func newServeConfig(p Plugin, logger hclog.Logger) (*plugin.ServeConfig, error) {
	if logger == nil {
		logger = hclog.Default()
	}
	srv, err := newServer(p, logger)
	if err != nil {
		return nil, err
	}
	sets := map[int]plugin.PluginSet{}
	for _, v := range ProtocolVersions() {
		sets[v] = plugin.PluginSet{transport.PluginSetKey: &grpcPlugin{srv: srv}}
	}
	cfg := &plugin.ServeConfig{
		HandshakeConfig:  transport.Handshake,
		VersionedPlugins: sets,
		// The SDK's options come first, so that options passed in (go-plugin
		// passes the TLS credentials) add to them or override them.
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append([]grpc.ServerOption{
				grpc.MaxRecvMsgSize(transport.MaxMessageSize),
				grpc.MaxSendMsgSize(transport.MaxMessageSize),
				grpc.StaticStreamWindowSize(transport.FlowControlWindow),
				grpc.StaticConnWindowSize(transport.FlowControlWindow),
				grpc.ChainUnaryInterceptor(recoverPanics(logger)),
			}, opts...)...)
		},
		Logger: logger,
	}
	// A P-256 certificate, announced on the certificate line, when the
	// daemon reads it; AutoMTLS otherwise (certline.go).
	cfg.TLSProvider = certLineTLS(cfg)
	return cfg, nil
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
