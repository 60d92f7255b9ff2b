package pluginhost

import (
	"context"
	"fmt"
	"slices"

	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/sdk"
	"github.com/spectroauth/spectroauth/sdk/pluginclient"
)

// Resolver returns resolver resolverName of plugin pluginName as a step of
// the sign-in chain, calling it with options. It fails if the plugin is not
// declared or does not offer that resolver, or if options cannot be sent
// (a value not representable in JSON): options are converted for the wire
// here, once, not on every sign-in. The plugin's "not found" is
// signin.ErrNotFound (they are the same error); any other failure, including
// a plugin that is down or crashes during the call, is an error that fails
// the sign-in.
func (h *Host) Resolver(pluginName, resolverName string, options map[string]any) (signin.Resolver, error) {
	in, err := h.instance(pluginName)
	if err != nil {
		return nil, err
	}
	if err := checkOffered(pluginName, in.describe(), sdk.CapabilityResolver, resolverName); err != nil {
		return nil, err
	}
	opts, err := pluginclient.ConvertOptions(options)
	if err != nil {
		return nil, fmt.Errorf("options of resolver %q of plugin %q: %w", resolverName, pluginName, err)
	}
	return &resolver{h: h, in: in, name: resolverName, op: "resolver " + resolverName, options: opts}, nil
}

type resolver struct {
	h       *Host // the host whose calls these are
	in      *instance
	name    string
	op      string // names the call in errors
	options pluginclient.ConvertedOptions
}

// Resolve implements signin.Resolver.
func (r *resolver) Resolve(ctx context.Context, in signin.Input) (signin.Identity, error) {
	req := sdk.ResolveRequest{
		Resolver: r.name,
		Claims:   sdk.Claims(in.Claims),
		Profile: sdk.Profile{
			Email:         in.Profile.Email,
			DisplayName:   in.Profile.DisplayName,
			Picture:       in.Profile.Picture,
			EmailVerified: in.Profile.EmailVerified,
		},
		Subject:           in.Profile.Subject,
		Issuer:            in.Profile.Issuer,
		PreferredUsername: in.Profile.PreferredUsername,
		Groups:            in.Profile.Groups,
	}
	var id sdk.Identity
	err := r.in.doVia(r.h, ctx, r.op, func(ctx context.Context, c *pluginclient.Client) (err error) {
		id, err = c.ResolveConverted(ctx, req, r.options)
		return err
	})
	if err != nil {
		return signin.Identity{}, err
	}
	return signin.Identity{UserEntityRef: id.UserEntityRef, OwnershipEntityRefs: id.OwnershipEntityRefs, Extra: id.Extra}, nil
}

// ClusterStrategy hands out Kubernetes credentials: one strategy of a
// plugin, with its options from the configuration.
type ClusterStrategy interface {
	// Credential returns the credential req.Session's user gets for
	// req.Cluster. req.Strategy and req.Options are set from the
	// configuration. An error wrapping sdk.ErrNotFound means the strategy
	// has none for this user; an error matching ErrUnavailable, that the
	// plugin is down.
	Credential(ctx context.Context, req sdk.CredentialRequest) (sdk.Credential, error)
}

// ClusterSource discovers Kubernetes clusters: a plugin's cluster source,
// with its options from the configuration.
type ClusterSource interface {
	// ListClusters returns the clusters the source knows now. req.Options
	// is set from the configuration.
	ListClusters(ctx context.Context, req sdk.ListClustersRequest) ([]sdk.Cluster, error)
}

// ClusterStrategy returns strategy strategyName of plugin pluginName,
// calling it with options. It fails if the plugin is not declared or does
// not offer that strategy.
func (h *Host) ClusterStrategy(pluginName, strategyName string, options map[string]any) (ClusterStrategy, error) {
	in, err := h.instance(pluginName)
	if err != nil {
		return nil, err
	}
	if err := checkOffered(pluginName, in.describe(), sdk.CapabilityClusterStrategy, strategyName); err != nil {
		return nil, err
	}
	return &strategy{h: h, in: in, name: strategyName, options: options}, nil
}

type strategy struct {
	h       *Host
	in      *instance
	name    string
	options sdk.Options
}

func (s *strategy) Credential(ctx context.Context, req sdk.CredentialRequest) (sdk.Credential, error) {
	req.Strategy, req.Options = s.name, s.options
	req.Session = passedSession(s.in.describe(), s.name, req.Session)
	var cred sdk.Credential
	err := s.in.doVia(s.h, ctx, "strategy "+s.name, func(ctx context.Context, c *pluginclient.Client) (err error) {
		cred, err = c.Credential(ctx, req)
		return err
	})
	return cred, err
}

// Receives reports whether the strategy is passed token: what it declared,
// or every token for a plugin that predates the declaration. The broker
// renews the Palette session token before the call only for strategies
// that receive it.
func (s *strategy) Receives(token sdk.Token) bool {
	info := s.in.describe()
	return info.StrategyTokens == nil || slices.Contains(info.StrategyTokens[s.name], token)
}

// passedSession is what strategy name of the plugin info describes receives
// of session: only the tokens it declared, or every token when the plugin
// declares none at all (it predates the declaration; the host warned at
// start).
func passedSession(info sdk.Info, name string, session sdk.Session) sdk.Session {
	if info.StrategyTokens == nil {
		return session
	}
	return session.Only(info.StrategyTokens[name])
}

// ClusterSource returns the cluster source of plugin pluginName, calling it
// with options. It fails if the plugin is not declared or is no cluster
// source.
func (h *Host) ClusterSource(pluginName string, options map[string]any) (ClusterSource, error) {
	in, err := h.instance(pluginName)
	if err != nil {
		return nil, err
	}
	if err := checkOffered(pluginName, in.describe(), sdk.CapabilityClusterSource, ""); err != nil {
		return nil, err
	}
	return &source{h: h, in: in, options: options}, nil
}

type source struct {
	h       *Host
	in      *instance
	options sdk.Options
}

func (s *source) ListClusters(ctx context.Context, req sdk.ListClustersRequest) ([]sdk.Cluster, error) {
	req.Options = s.options
	var clusters []sdk.Cluster
	err := s.in.doVia(s.h, ctx, "cluster source", func(ctx context.Context, c *pluginclient.Client) (err error) {
		clusters, err = c.ListClusters(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return clusters, nil
}

// String names the resolver in logs: "catalog/emailMatchingUserEntityProfileEmail".
func (r *resolver) String() string { return fmt.Sprintf("%s/%s", r.in.name, r.name) }

// The broker finds out which tokens a strategy is passed by this method.
var _ interface{ Receives(sdk.Token) bool } = (*strategy)(nil)
