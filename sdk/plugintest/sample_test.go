package plugintest_test

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
)

// sample is a tiny plugin with every role, the way a plugin author writes
// one: configured with a mail domain and a few known users.
type sample struct {
	mu     sync.RWMutex
	domain string
	users  map[string]string // e-mail address → user name
}

func (s *sample) Configure(_ context.Context, cfg sdk.Config) error {
	if err := cfg.Values.RejectUnknown("domain", "users"); err != nil {
		return err
	}
	domain, err := cfg.Values.String("domain")
	if err != nil {
		return err
	}
	users, err := cfg.Values.StringMap("users")
	if err != nil {
		return err
	}
	for email, name := range users {
		if _, err := sdk.ParseEntityRefDefaults(name, "user", sdk.DefaultNamespace); err != nil {
			return sdk.ConfigErrorf("users."+email, "%v", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.domain, s.users = domain, users
	return nil
}

func (s *sample) ValidateOptions(_ context.Context, req sdk.ValidateOptionsRequest) error {
	if err := req.Options.RejectUnknown("group", "block"); err != nil {
		return err
	}
	if _, err := req.Options.StringOr("group", ""); err != nil {
		return err
	}
	_, err := req.Options.Bool("block", false)
	return err
}

func (s *sample) Resolvers() []string { return []string{"emailLocalPart", "staticUsers"} }

func (s *sample) Resolve(ctx context.Context, req sdk.ResolveRequest) (sdk.Identity, error) {
	if err := s.ValidateOptions(ctx, sdk.ValidateOptionsRequest{Options: req.Options}); err != nil {
		return sdk.Identity{}, err
	}
	if block, _ := req.Options.Bool("block", false); block {
		<-ctx.Done() // stands for an upstream that never answers
		return sdk.Identity{}, ctx.Err()
	}
	s.mu.RLock()
	domain, users := s.domain, s.users
	s.mu.RUnlock()

	email := strings.ToLower(req.Profile.Email)
	var name string
	switch req.Resolver {
	case "emailLocalPart":
		local, host, ok := strings.Cut(email, "@")
		if !ok || host != domain {
			return sdk.Identity{}, sdk.ErrNotFound
		}
		name = local
	case "staticUsers":
		if name = users[email]; name == "" {
			return sdk.Identity{}, sdk.ErrNotFound
		}
	}
	user, err := sdk.ParseEntityRefDefaults(name, "user", sdk.DefaultNamespace)
	if err != nil {
		return sdk.Identity{}, &sdk.InvalidInputError{Field: "Profile.Email", Err: err}
	}
	id := sdk.Identity{UserEntityRef: user.String(), OwnershipEntityRefs: []string{user.String()}}
	if group, _ := req.Options.StringOr("group", ""); group != "" {
		id.OwnershipEntityRefs = append(id.OwnershipEntityRefs, sdk.EntityRef{Kind: "group", Namespace: sdk.DefaultNamespace, Name: group}.String())
	}
	return id, nil
}

func (s *sample) Strategies() []string { return []string{"idToken"} }

func (s *sample) Credential(_ context.Context, req sdk.CredentialRequest) (sdk.Credential, error) {
	if req.Session.IDToken == "" {
		return sdk.Credential{}, sdk.InvalidInputf("Session.IDToken", "is empty")
	}
	if !req.Session.IDTokenExpiresAt.After(time.Now()) {
		return sdk.Credential{}, sdk.InvalidInputf("Session.IDTokenExpiresAt", "the ID token has expired")
	}
	return sdk.Credential{Token: req.Session.IDToken, ExpiresAt: req.Session.IDTokenExpiresAt}, nil
}

func (s *sample) ListClusters(ctx context.Context, req sdk.ListClustersRequest) ([]sdk.Cluster, error) {
	if block, err := req.Options.Bool("block", false); err != nil {
		return nil, err
	} else if block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return []sdk.Cluster{{Name: "dev", Server: "https://dev.example.com:6443", Labels: map[string]string{"env": "dev"}}}, nil
}
