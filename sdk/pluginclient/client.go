// Package pluginclient is the host side of the spectroauth plugin protocol:
// it turns a go-plugin client into calls on plain sdk types. The daemon's
// plugin supervisor uses it; plugin authors do not (they use sdk and
// sdk/plugintest).
//
// Start a plugin with go-plugin, handing it the protocol's handshake, plugin
// sets and dial options, then Open it:
//
//	pc := plugin.NewClient(&plugin.ClientConfig{
//		HandshakeConfig:  pluginclient.Handshake,
//		VersionedPlugins: pluginclient.VersionedPlugins(),
//		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
//		GRPCDialOptions:  pluginclient.GRPCDialOptions(),
//		Cmd:              exec.Command(path),
//		// SecureConfig, Logger, ...
//	})
//	c, err := pluginclient.Open(ctx, pc)
//	if err != nil {
//		pc.Kill()
//		...
//	}
//	err = c.Configure(ctx, sdk.Config{InstanceName: name, Values: config})
//
// Every call checks what the plugin returns as the plugin side does
// (Identity.Validate, Credential.Validate, sdk.ValidateClusters), so a
// misbehaving plugin is refused with ErrInvalidResponse; and errors come back
// as the plugin returned them: errors.Is(err, sdk.ErrNotFound), errors.As to
// *sdk.ConfigError or *sdk.InvalidInputError, errors.Is(err,
// context.DeadlineExceeded).
package pluginclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/spectroauth/spectroauth/sdk"
	pluginv1 "github.com/spectroauth/spectroauth/sdk/internal/pluginv1"
	"github.com/spectroauth/spectroauth/sdk/internal/transport"
	"github.com/spectroauth/spectroauth/sdk/internal/wire"
)

// Handshake is the go-plugin handshake of the protocol, for
// plugin.ClientConfig.HandshakeConfig. Its magic cookie is no security
// measure: it only keeps a plugin binary from being run by hand by mistake.
var Handshake = transport.Handshake

// MaxMessageSize is the largest gRPC message either end of the protocol
// sends or accepts, in bytes.
const MaxMessageSize = transport.MaxMessageSize

// CertLineEnv is the environment variable a host sets to "1" when it reads a
// plugin's TLS certificate from the certificate line (CertLinePrefix), which
// the plugin then writes to stdout before go-plugin's handshake line, whose
// certificate field it leaves empty. Plugins of SDK 0.2.0 and later do so,
// with a P-256 certificate; others, and plugins the variable is not set
// for, put the certificate in the handshake line as go-plugin's AutoMTLS
// does. A host that sets it must pin the line's certificate, as go-plugin
// pins the handshake line's, and refuse a plugin that announces none.
const CertLineEnv = transport.CertLineEnv

// CertLinePrefix starts the certificate line; the certificate follows, DER
// in base64 standard encoding without padding, as in go-plugin's handshake
// line.
const CertLinePrefix = transport.CertLinePrefix

// MaxCertLine bounds the certificate line, newline excluded, in bytes.
const MaxCertLine = transport.MaxCertLine

// NewCertificate makes a P-256 key and a self-signed certificate for the
// protocol's mutual TLS, as go-plugin's AutoMTLS makes its P-521 ones (a CA
// for localhost, for client and server authentication), and as a plugin of
// this SDK makes its own: for a host's side, passed to the plugin in
// PLUGIN_CLIENT_CERT.
func NewCertificate() (tls.Certificate, error) { return transport.NewCertificate() }

// ErrInvalidResponse is wrapped by the errors of calls whose answer breaks
// the protocol: an invalid identity, credential, cluster list or description.
var ErrInvalidResponse = errors.New("plugin sent an invalid response")

// VersionedPlugins returns the plugin sets of the protocol versions this host
// speaks, keyed by version, for plugin.ClientConfig.VersionedPlugins.
// go-plugin hands the plugin their versions (PLUGIN_PROTOCOL_VERSIONS); the
// plugin answers with the newest one it serves too, or, when it serves none
// of them, with the oldest it serves, and then Open fails with
// ErrProtocolVersion. Once a version 2 of the protocol exists, it is added
// here next to version 1, so that plugins built for version 1 keep working.
func VersionedPlugins() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		sdk.ProtocolVersion: {transport.PluginSetKey: grpcPlugin{}},
	}
}

// ProtocolVersions returns the versions of sets (see VersionedPlugins),
// oldest first.
func ProtocolVersions(sets map[int]plugin.PluginSet) []int {
	return slices.Sorted(maps.Keys(sets))
}

// ErrProtocolVersion is wrapped by the error of Open when the plugin serves
// none of the plugin protocol versions the host speaks.
var ErrProtocolVersion = errors.New("the plugin serves none of the plugin protocol versions this host speaks")

// GRPCDialOptions returns the dial options of the protocol, for
// plugin.ClientConfig.GRPCDialOptions: messages are limited to
// MaxMessageSize (every call of a Client also sets this limit), and the
// flow-control windows are fixed at the size of the largest message.
func GRPCDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(callOptions...),
		grpc.WithStaticStreamWindowSize(transport.FlowControlWindow),
		grpc.WithStaticConnWindowSize(transport.FlowControlWindow),
	}
}

var callOptions = []grpc.CallOption{
	grpc.MaxCallRecvMsgSize(transport.MaxMessageSize),
	grpc.MaxCallSendMsgSize(transport.MaxMessageSize),
}

// grpcPlugin is the host side of the protocol in go-plugin's terms.
type grpcPlugin struct{ plugin.NetRPCUnsupportedPlugin }

// GRPCServer is not used on the host side.
func (grpcPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("pluginclient: this is the host side of the protocol; plugins use sdk.Serve")
}

// GRPCClient returns a *Client on conn.
func (grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return New(conn), nil
}

// Open connects to the plugin pc runs (starting it if needed) on the newest
// protocol version both speak (pc.NegotiatedVersion), and describes it (see
// Client.Info). A plugin that serves none of the versions of pc's
// ClientConfig.VersionedPlugins is refused with an error wrapping
// ErrProtocolVersion. On error, the caller still owns pc and should Kill it.
func Open(ctx context.Context, pc *plugin.Client) (*Client, error) {
	rpc, err := pc.Client()
	if err != nil {
		// go-plugin's only way to say it: "incompatible API version with
		// plugin. Plugin version: 2, Client versions: [1]".
		if strings.Contains(err.Error(), "incompatible API version") {
			return nil, fmt.Errorf("%w: rebuild it with a compatible spectroauth SDK: %w", ErrProtocolVersion, err)
		}
		return nil, fmt.Errorf("starting plugin: %w", err)
	}
	raw, err := rpc.Dispense(transport.PluginSetKey)
	if err != nil {
		return nil, fmt.Errorf("starting plugin: %w", err)
	}
	c, ok := raw.(*Client)
	if !ok {
		return nil, fmt.Errorf("starting plugin: dispensed %T, not a *pluginclient.Client", raw)
	}
	if _, err := c.Describe(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Client calls a plugin. It is safe for concurrent use.
type Client struct {
	plugin   pluginv1.PluginServiceClient
	resolver pluginv1.ResolverServiceClient
	strategy pluginv1.ClusterStrategyServiceClient
	source   pluginv1.ClusterSourceServiceClient

	mu   sync.Mutex
	info *sdk.Info // from the last successful Describe
}

// New returns a Client on an established connection to a plugin. Open is
// the usual way to get one; until Describe succeeds, the Client calls
// whatever it is asked to.
func New(conn grpc.ClientConnInterface) *Client {
	return &Client{
		plugin:   pluginv1.NewPluginServiceClient(conn),
		resolver: pluginv1.NewResolverServiceClient(conn),
		strategy: pluginv1.NewClusterStrategyServiceClient(conn),
		source:   pluginv1.NewClusterSourceServiceClient(conn),
	}
}

// Info returns what the last successful Describe returned, and false before
// one.
func (c *Client) Info() (sdk.Info, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.info == nil {
		return sdk.Info{}, false
	}
	return *c.info, true
}

// Describe asks the plugin who it is and what it offers, and checks the
// answer (sdk.Info.Validate). Later calls use it to refuse what the plugin
// does not offer.
func (c *Client) Describe(ctx context.Context) (sdk.Info, error) {
	resp, err := c.plugin.Describe(ctx, &pluginv1.DescribeRequest{}, callOptions...)
	if err != nil {
		return sdk.Info{}, fmt.Errorf("describing plugin: %w", decodeError(err))
	}
	info := sdk.Info{
		Name:            resp.GetName(),
		Version:         resp.GetVersion(),
		ProtocolVersion: int(resp.GetProtocolVersion()),
		SDKVersion:      resp.GetSdkVersion(),
		Resolvers:       resp.GetResolvers(),
		Strategies:      resp.GetStrategies(),
	}
	for _, pc := range resp.GetCapabilities() {
		// Capabilities from a newer protocol revision are ignored.
		if name := wire.CapabilityName(pc); name != "" {
			info.Capabilities = append(info.Capabilities, sdk.Capability(name))
		}
	}
	// A plugin that sends no strategy_info predates it: StrategyTokens
	// stays nil and the host passes every token, as before.
	for _, si := range resp.GetStrategyInfo() {
		if info.StrategyTokens == nil {
			info.StrategyTokens = map[string][]sdk.Token{}
		}
		if _, dup := info.StrategyTokens[si.GetName()]; dup {
			return sdk.Info{}, fmt.Errorf("%w: description: strategy %q has two strategy_info entries", ErrInvalidResponse, si.GetName())
		}
		var tokens []sdk.Token
		for _, t := range si.GetTokens() {
			// Tokens from a newer protocol revision are never passed.
			if name := wire.TokenName(t); name != "" {
				tokens = append(tokens, sdk.Token(name))
			}
		}
		info.StrategyTokens[si.GetName()] = tokens
	}
	if err := info.Validate(); err != nil {
		return sdk.Info{}, fmt.Errorf("%w: description: %w", ErrInvalidResponse, err)
	}
	c.mu.Lock()
	c.info = &info
	c.mu.Unlock()
	return info, nil
}

// offers reports whether the plugin offers capability, assuming it does when
// it has not been described yet.
func (c *Client) offers(capability sdk.Capability) (sdk.Info, bool) {
	info, described := c.Info()
	return info, !described || info.Has(capability)
}

// roleError is the error of a call to a role the plugin does not have.
func roleError(info sdk.Info, role string) error {
	return fmt.Errorf("plugin %q is not a %s: %w", info.Name, role, errors.ErrUnsupported)
}

// Configure hands the plugin its configuration. A plugin that takes none
// refuses a non-empty cfg.Values with a *sdk.ConfigError.
func (c *Client) Configure(ctx context.Context, cfg sdk.Config) error {
	values, err := wire.ToStruct(cfg.Values)
	if err != nil {
		return &sdk.ConfigError{Err: err}
	}
	_, err = c.plugin.Configure(ctx, &pluginv1.ConfigureRequest{Config: values, InstanceName: cfg.InstanceName}, callOptions...)
	if err != nil {
		err = decodeError(err)
		if errors.Is(err, errors.ErrUnsupported) && len(cfg.Values) == 0 {
			return nil // a plugin without Configure needs no configuration
		}
		return err
	}
	return nil
}

// ValidateOptions asks the plugin to check the options of one of its
// resolvers, strategies or its source. It returns nil without calling a
// plugin that does not validate options (sdk.CapabilityValidateOptions).
func (c *Client) ValidateOptions(ctx context.Context, req sdk.ValidateOptionsRequest) error {
	if _, ok := c.offers(sdk.CapabilityValidateOptions); !ok {
		return nil
	}
	opts, err := wire.ToStruct(req.Options)
	if err != nil {
		return &sdk.ConfigError{Err: err}
	}
	_, err = c.plugin.ValidateOptions(ctx, &pluginv1.ValidateOptionsRequest{
		Role:    wire.CapabilityToProto(string(req.Role)),
		Name:    req.Name,
		Options: opts,
	}, callOptions...)
	if err != nil {
		err = decodeError(err)
		if errors.Is(err, errors.ErrUnsupported) {
			return nil
		}
		return err
	}
	return nil
}

// ConvertedOptions are the options of a configured resolver converted once
// into their wire form (see ConvertOptions), for a host that calls the
// resolver with the same options every time: ResolveConverted then skips
// converting them on each call. The zero value stands for no options. It is
// immutable and safe for concurrent use.
type ConvertedOptions struct {
	s *structpb.Struct
}

// ConvertOptions converts opts into their wire form as Resolve would on
// each call, and fails as it would: with a *sdk.ConfigError when a value
// cannot be represented in JSON. The result does not follow later changes
// to opts.
func ConvertOptions(opts sdk.Options) (ConvertedOptions, error) {
	s, err := wire.ToStruct(opts)
	if err != nil {
		return ConvertedOptions{}, &sdk.ConfigError{Err: err}
	}
	return ConvertedOptions{s: s}, nil
}

// Resolve asks one of the plugin's resolvers for the identity of a user. An
// error wrapping sdk.ErrNotFound means the resolver knows no such user.
func (c *Client) Resolve(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	opts, err := ConvertOptions(req.Options)
	if err != nil {
		if info, ok := c.offers(sdk.CapabilityResolver); !ok {
			return sdk.Identity{}, roleError(info, "resolver")
		}
		return sdk.Identity{}, err
	}
	return c.ResolveConverted(ctx, req, opts)
}

// ResolveConverted is Resolve with the resolver's options converted
// beforehand by ConvertOptions: opts is sent, req.Options is ignored.
func (c *Client) ResolveConverted(ctx context.Context, req sdk.ResolveRequest, opts ConvertedOptions) (sdk.Identity, error) {
	if info, ok := c.offers(sdk.CapabilityResolver); !ok {
		return sdk.Identity{}, roleError(info, "resolver")
	}
	claims, err := wire.ToStruct(req.Claims)
	if err != nil {
		return sdk.Identity{}, &sdk.InvalidInputError{Field: "Claims", Err: err}
	}
	resp, err := c.resolver.Resolve(ctx, &pluginv1.ResolveRequest{
		Resolver: req.Resolver,
		Options:  opts.s,
		Claims:   claims,
		Profile: &pluginv1.Profile{
			Email:         req.Profile.Email,
			DisplayName:   req.Profile.DisplayName,
			Picture:       req.Profile.Picture,
			EmailVerified: req.Profile.EmailVerified,
		},
		Subject:           req.Subject,
		Issuer:            req.Issuer,
		PreferredUsername: req.PreferredUsername,
		Groups:            req.Groups,
	}, callOptions...)
	if err != nil {
		return sdk.Identity{}, decodeError(err)
	}
	pid := resp.GetIdentity()
	id := sdk.Identity{
		UserEntityRef:       pid.GetUserEntityRef(),
		OwnershipEntityRefs: pid.GetOwnershipEntityRefs(),
		Extra:               wire.FromStruct(pid.GetExtraClaims()),
	}
	if err := id.Validate(); err != nil {
		return sdk.Identity{}, fmt.Errorf("%w: identity: %w", ErrInvalidResponse, err)
	}
	return id, nil
}

// Credential asks one of the plugin's strategies for a user's credential for
// a cluster. An error wrapping sdk.ErrNotFound means the strategy has none
// for this user.
func (c *Client) Credential(ctx context.Context, req sdk.CredentialRequest) (sdk.Credential, error) {
	if info, ok := c.offers(sdk.CapabilityClusterStrategy); !ok {
		return sdk.Credential{}, roleError(info, "cluster strategy")
	}
	opts, err := wire.ToStruct(req.Options)
	if err != nil {
		return sdk.Credential{}, &sdk.ConfigError{Err: err}
	}
	claims, err := wire.ToStruct(req.Session.Claims)
	if err != nil {
		return sdk.Credential{}, &sdk.InvalidInputError{Field: "Session.Claims", Err: err}
	}
	s := req.Session
	resp, err := c.strategy.Credential(ctx, &pluginv1.CredentialRequest{
		Strategy: req.Strategy,
		Options:  opts,
		Cluster:  wire.ClusterToProto(wire.Cluster(req.Cluster)),
		Session: &pluginv1.Session{
			UserEntityRef:       s.UserEntityRef,
			Subject:             s.Subject,
			IdToken:             s.IDToken,
			IdTokenExpiresAt:    wire.ToTimestamp(s.IDTokenExpiresAt),
			AccessToken:         s.AccessToken,
			PaletteSessionToken: s.PaletteSessionToken,
			Claims:              claims,
		},
	}, callOptions...)
	if err != nil {
		return sdk.Credential{}, decodeError(err)
	}
	pc := resp.GetCredential()
	cred := sdk.Credential{
		Token:                pc.GetToken(),
		ExpiresAt:            wire.FromTimestamp(pc.GetExpiresAt()),
		ClientCertificatePEM: pc.GetClientCertificateData(),
		ClientKeyPEM:         pc.GetClientKeyData(),
	}
	if err := cred.Validate(); err != nil {
		return sdk.Credential{}, fmt.Errorf("%w: credential: %w", ErrInvalidResponse, err)
	}
	return cred, nil
}

// ListClusters asks the plugin's cluster source for its clusters.
func (c *Client) ListClusters(ctx context.Context, req sdk.ListClustersRequest) ([]sdk.Cluster, error) {
	if info, ok := c.offers(sdk.CapabilityClusterSource); !ok {
		return nil, roleError(info, "cluster source")
	}
	opts, err := wire.ToStruct(req.Options)
	if err != nil {
		return nil, &sdk.ConfigError{Err: err}
	}
	resp, err := c.source.ListClusters(ctx, &pluginv1.ListClustersRequest{Options: opts}, callOptions...)
	if err != nil {
		return nil, decodeError(err)
	}
	clusters := make([]sdk.Cluster, len(resp.GetClusters()))
	for i, pc := range resp.GetClusters() {
		clusters[i] = sdk.Cluster(wire.ClusterFromProto(pc))
	}
	if err := sdk.ValidateClusters(clusters); err != nil {
		return nil, fmt.Errorf("%w: clusters: %w", ErrInvalidResponse, err)
	}
	return clusters, nil
}
