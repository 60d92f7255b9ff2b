package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/session"
)

// OperatorConfig is what an operator command needs to end sessions: the
// store and the environments' providers (for revocation), no signing key,
// flow key or sign-in chain.
type OperatorConfig struct {
	// Envs maps the environment name to its settings; only Upstream (its
	// Revoke) and TrustEmailWithoutVerifiedClaim are used. A session of an
	// environment not in Envs ends without upstream revocation.
	Envs map[string]*Env
	// Sessions holds the sessions to end.
	Sessions session.Store
	// SessionEnded, when set, is told of the sessions ended (Config.SessionEnded).
	SessionEnded func(env, reason string, n int)
	// Logger (the audit line) defaults to a null logger.
	Logger hclog.Logger
}

// Operator ends sessions on an operator's behalf (`spectroauthd sessions
// revoke`) with the very code a user's sign out everywhere runs
// (Manager.EndUserSessions): the same revocation, deletion, audit line and
// count. It serves nothing else.
type Operator struct {
	m *Manager
}

// NewOperator checks cfg and names its environments.
func NewOperator(cfg OperatorConfig) (*Operator, error) {
	if cfg.Sessions == nil {
		return nil, errors.New("lifecycle: a session store is required")
	}
	for name, env := range cfg.Envs {
		if env.Upstream == nil {
			return nil, fmt.Errorf("lifecycle: environment %s: a provider client is required", name)
		}
		env.name = name
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Operator{m: &Manager{
		cfg: Config{Envs: cfg.Envs, Sessions: cfg.Sessions, SessionEnded: cfg.SessionEnded, Logger: log},
		log: log,
		now: time.Now,
	}}, nil
}

// EndUserSessions signs userEntityRef out everywhere (browser and
// command-line sessions, every environment), by "operator" in the audit
// line, and returns how many sessions ended.
func (o *Operator) EndUserSessions(ctx context.Context, userEntityRef string) (int, error) {
	return o.m.EndUserSessions(ctx, userEntityRef, "operator")
}
