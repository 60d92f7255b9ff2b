package sdk

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/spectroauth/spectroauth/sdk/internal/pluginv1"
	"github.com/spectroauth/spectroauth/sdk/internal/wire"
)

// server adapts a Plugin's capabilities to the gRPC services of the protocol.
type server struct {
	info       Info
	logger     hclog.Logger
	resolver   Resolver
	strategy   ClusterStrategy
	source     ClusterSource
	configurer Configurer
	validator  OptionsValidator

	// mu is held for writing by Configure and for reading by every other
	// call but Describe, so that Configure never runs alongside them.
	mu         sync.RWMutex
	configured bool
}

func newServer(p Plugin, logger hclog.Logger) (*server, error) {
	info, err := p.Info()
	if err != nil {
		return nil, err
	}
	p, _ = p.Typed() // Info checked it
	s := &server{info: info, logger: logger,
		resolver: p.Resolver, strategy: p.ClusterStrategy, source: p.ClusterSource,
		configurer: p.Configurer, validator: p.OptionsValidator}
	s.configured = s.configurer == nil
	return s, nil
}

func (s *server) register(g *grpc.Server) {
	pluginv1.RegisterPluginServiceServer(g, pluginService{s: s})
	if s.resolver != nil {
		pluginv1.RegisterResolverServiceServer(g, resolverService{s: s})
	}
	if s.strategy != nil {
		pluginv1.RegisterClusterStrategyServiceServer(g, strategyService{s: s})
	}
	if s.source != nil {
		pluginv1.RegisterClusterSourceServiceServer(g, sourceService{s: s})
	}
}

// call runs fn once the plugin is configured, with the context of a
// plugin's method (see handlerContext), and turns its error into the
// protocol's status.
func (s *server) call(ctx context.Context, method string, fn func(context.Context) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.configured {
		return status.Error(codes.FailedPrecondition, "plugin is not configured: no Configure call has succeeded")
	}
	hctx, cancel := handlerContext(ctx)
	defer cancel()
	return s.status(method, fn(hctx))
}

// badOutput reports that the plugin produced something the protocol forbids.
func (s *server) badOutput(method, what string, err error) error {
	s.logger.Error("plugin returned an invalid "+what, "method", method, "error", err)
	return &outputError{fmt.Errorf("plugin returned an invalid %s: %w", what, err)}
}

// outputError is a bug of the plugin: it returned a value that fails
// validation. It goes over the wire as INTERNAL.
type outputError struct{ error }

// status encodes err as the protocol's gRPC status: a *deadlineError as
// DEADLINE_EXCEEDED, a *ConfigError or *InvalidInputError as
// INVALID_ARGUMENT, ErrNotFound as NOT_FOUND (each with an ErrorDetail),
// other context errors as DEADLINE_EXCEEDED and CANCELED (without one), an
// *outputError as INTERNAL, and anything else as UNKNOWN. The status message is err's message, truncated
// to wire.MaxErrorMessage.
func (s *server) status(method string, err error) error {
	if err == nil {
		return nil
	}
	var (
		oe     *outputError
		ce     *ConfigError
		ie     *InvalidInputError
		code   = codes.Unknown
		detail *pluginv1.ErrorDetail
	)
	var de *deadlineError
	switch {
	case errors.As(err, &oe):
		code = codes.Internal
	case errors.As(err, &de):
		code = codes.DeadlineExceeded
		detail = &pluginv1.ErrorDetail{Reason: pluginv1.ErrorReason_ERROR_REASON_RAN_OUT_OF_TIME}
	case errors.As(err, &ce):
		code = codes.InvalidArgument
		detail = &pluginv1.ErrorDetail{Reason: pluginv1.ErrorReason_ERROR_REASON_INVALID_CONFIG, Key: ce.Key, Message: wire.TruncateMessage(errString(ce.Err))}
	case errors.As(err, &ie):
		code = codes.InvalidArgument
		detail = &pluginv1.ErrorDetail{Reason: pluginv1.ErrorReason_ERROR_REASON_INVALID_INPUT, Key: ie.Field, Message: wire.TruncateMessage(errString(ie.Err))}
	case errors.Is(err, ErrNotFound):
		code = codes.NotFound
		detail = &pluginv1.ErrorDetail{Reason: pluginv1.ErrorReason_ERROR_REASON_NOT_FOUND}
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	s.logger.Debug("call failed", "method", method, "code", code, "error", err)
	st := status.New(code, wire.TruncateMessage(err.Error()))
	if detail != nil {
		if withDetail, derr := st.WithDetails(detail); derr == nil {
			st = withDetail
		}
	}
	return st.Err()
}

type pluginService struct {
	pluginv1.UnimplementedPluginServiceServer
	s *server
}

// Describe answers with the Info computed at start.
func (p pluginService) Describe(context.Context, *pluginv1.DescribeRequest) (*pluginv1.DescribeResponse, error) {
	i := p.s.info
	resp := &pluginv1.DescribeResponse{
		Name:            i.Name,
		Version:         i.Version,
		ProtocolVersion: uint32(i.ProtocolVersion),
		Resolvers:       i.Resolvers,
		Strategies:      i.Strategies,
		SdkVersion:      i.SDKVersion,
	}
	for _, c := range i.Capabilities {
		resp.Capabilities = append(resp.Capabilities, wire.CapabilityToProto(string(c)))
	}
	for _, name := range i.Strategies {
		si := &pluginv1.StrategyInfo{Name: name}
		for _, t := range i.StrategyTokens[name] {
			si.Tokens = append(si.Tokens, wire.TokenToProto(string(t)))
		}
		resp.StrategyInfo = append(resp.StrategyInfo, si)
	}
	return resp, nil
}

// Configure hands the configuration to a Configurer, or refuses any for
// other plugins.
func (p pluginService) Configure(ctx context.Context, req *pluginv1.ConfigureRequest) (*pluginv1.ConfigureResponse, error) {
	s := p.s
	cfg := Config{InstanceName: req.GetInstanceName(), Values: Options(wire.FromStruct(req.GetConfig()))}
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.configurer != nil {
		hctx, cancel := handlerContext(ctx)
		err = ownDeadline(hctx, s.configurer.Configure(hctx, cfg))
		cancel()
		s.configured = err == nil
	} else if len(cfg.Values) > 0 {
		keys := slices.Sorted(maps.Keys(cfg.Values))
		err = ConfigErrorf(keys[0], "unknown key: plugin %s takes no configuration", s.info.Name)
	}
	if err != nil {
		return nil, s.status("Configure", err)
	}
	return &pluginv1.ConfigureResponse{}, nil
}

// ValidateOptions hands options to an OptionsValidator.
func (p pluginService) ValidateOptions(ctx context.Context, req *pluginv1.ValidateOptionsRequest) (*pluginv1.ValidateOptionsResponse, error) {
	s := p.s
	if s.validator == nil {
		return nil, status.Error(codes.Unimplemented, "plugin does not validate options")
	}
	vreq := ValidateOptionsRequest{
		Role:    Capability(wire.CapabilityName(req.GetRole())),
		Name:    req.GetName(),
		Options: Options(wire.FromStruct(req.GetOptions())),
	}
	err := s.call(ctx, "ValidateOptions", func(ctx context.Context) error {
		switch vreq.Role {
		case CapabilityResolver, CapabilityClusterStrategy, CapabilityClusterSource:
		default:
			return InvalidInputf("Role", "%q is not a role", vreq.Role)
		}
		if !s.info.Has(vreq.Role) {
			return InvalidInputf("Role", "plugin %s has no %s role", s.info.Name, vreq.Role)
		}
		var err error
		switch vreq.Role {
		case CapabilityResolver:
			err = checkOffered("Name", vreq.Name, s.info.Resolvers)
		case CapabilityClusterStrategy:
			err = checkOffered("Name", vreq.Name, s.info.Strategies)
		}
		if err != nil {
			return err
		}
		return ownDeadline(ctx, s.validator.ValidateOptions(ctx, vreq))
	})
	if err != nil {
		return nil, err
	}
	return &pluginv1.ValidateOptionsResponse{}, nil
}

type resolverService struct {
	pluginv1.UnimplementedResolverServiceServer
	s *server
}

// Resolve runs the requested resolver and checks its identity.
func (r resolverService) Resolve(ctx context.Context, req *pluginv1.ResolveRequest) (*pluginv1.ResolveResponse, error) {
	s := r.s
	rreq := ResolveRequest{
		Resolver: req.GetResolver(),
		Options:  Options(wire.FromStruct(req.GetOptions())),
		Claims:   Claims(wire.FromStruct(req.GetClaims())),
		Profile: Profile{
			Email:         req.GetProfile().GetEmail(),
			DisplayName:   req.GetProfile().GetDisplayName(),
			Picture:       req.GetProfile().GetPicture(),
			EmailVerified: req.GetProfile().GetEmailVerified(),
		},
		Subject:           req.GetSubject(),
		Issuer:            req.GetIssuer(),
		PreferredUsername: req.GetPreferredUsername(),
		Groups:            req.GetGroups(),
	}
	var resp *pluginv1.ResolveResponse
	err := s.call(ctx, "Resolve", func(ctx context.Context) error {
		if err := checkOffered("Resolver", rreq.Resolver, s.info.Resolvers); err != nil {
			return err
		}
		id, err := s.resolver.Resolve(ctx, rreq)
		if err != nil {
			return ownDeadline(ctx, err)
		}
		if err := id.Validate(); err != nil {
			return s.badOutput("Resolve", "identity", err)
		}
		extra, err := wire.ToStruct(id.Extra)
		if err != nil {
			return s.badOutput("Resolve", "identity", fmt.Errorf("Extra: %w", err))
		}
		resp = &pluginv1.ResolveResponse{Identity: &pluginv1.Identity{
			UserEntityRef:       id.UserEntityRef,
			OwnershipEntityRefs: id.OwnershipEntityRefs,
			ExtraClaims:         extra,
		}}
		return nil
	})
	return resp, err
}

type strategyService struct {
	pluginv1.UnimplementedClusterStrategyServiceServer
	s *server
}

// Credential runs the requested strategy and checks its credential.
func (c strategyService) Credential(ctx context.Context, req *pluginv1.CredentialRequest) (*pluginv1.CredentialResponse, error) {
	s := c.s
	sess := req.GetSession()
	creq := CredentialRequest{
		Strategy: req.GetStrategy(),
		Options:  Options(wire.FromStruct(req.GetOptions())),
		Cluster:  Cluster(wire.ClusterFromProto(req.GetCluster())),
		Session: Session{
			UserEntityRef:       sess.GetUserEntityRef(),
			Subject:             sess.GetSubject(),
			IDToken:             sess.GetIdToken(),
			IDTokenExpiresAt:    wire.FromTimestamp(sess.GetIdTokenExpiresAt()),
			AccessToken:         sess.GetAccessToken(),
			PaletteSessionToken: sess.GetPaletteSessionToken(),
			Claims:              Claims(wire.FromStruct(sess.GetClaims())),
		},
	}
	var resp *pluginv1.CredentialResponse
	err := s.call(ctx, "Credential", func(ctx context.Context) error {
		if err := checkOffered("Strategy", creq.Strategy, s.info.Strategies); err != nil {
			return err
		}
		cred, err := s.strategy.Credential(ctx, creq)
		if err != nil {
			return ownDeadline(ctx, err)
		}
		if err := cred.Validate(); err != nil {
			return s.badOutput("Credential", "credential", err)
		}
		resp = &pluginv1.CredentialResponse{Credential: &pluginv1.Credential{
			Token:                 cred.Token,
			ExpiresAt:             wire.ToTimestamp(cred.ExpiresAt),
			ClientCertificateData: cred.ClientCertificatePEM,
			ClientKeyData:         cred.ClientKeyPEM,
		}}
		return nil
	})
	return resp, err
}

type sourceService struct {
	pluginv1.UnimplementedClusterSourceServiceServer
	s *server
}

// ListClusters runs the source and checks its clusters.
func (c sourceService) ListClusters(ctx context.Context, req *pluginv1.ListClustersRequest) (*pluginv1.ListClustersResponse, error) {
	s := c.s
	lreq := ListClustersRequest{Options: Options(wire.FromStruct(req.GetOptions()))}
	var resp *pluginv1.ListClustersResponse
	err := s.call(ctx, "ListClusters", func(ctx context.Context) error {
		clusters, err := s.source.ListClusters(ctx, lreq)
		if err != nil {
			return ownDeadline(ctx, err)
		}
		if err := ValidateClusters(clusters); err != nil {
			return s.badOutput("ListClusters", "cluster list", err)
		}
		resp = &pluginv1.ListClustersResponse{Clusters: make([]*pluginv1.Cluster, len(clusters))}
		for i, cl := range clusters {
			resp.Clusters[i] = wire.ClusterToProto(wire.Cluster(cl))
		}
		return nil
	})
	return resp, err
}
