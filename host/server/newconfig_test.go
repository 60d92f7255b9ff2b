package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/server"
	"github.com/spectroauth/spectroauth/host/session"
)

// New refuses a configuration the daemon cannot serve safely, naming what
// is wrong.
func TestNewRefusesIncompleteConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*server.Config)
		want string
	}{
		{"short flow key", func(c *server.Config) { c.FlowKey = c.FlowKey[:31] }, "flow key must be at least 32 bytes"},
		{"no environment", func(c *server.Config) { c.Envs = nil }, "no provider environment configured"},
		{"no session store", func(c *server.Config) { c.Sessions = nil }, "a session store is required"},
		{"no session duration", func(c *server.Config) { c.Envs["development"].SessionDuration = 0 }, "environment development: session duration must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iss, err := identity.New(identity.Config{Issuer: "http://127.0.0.1:1/api/auth", KeyStore: identity.NewMemoryKeyStore()})
			if err != nil {
				t.Fatal(err)
			}
			cfg := server.Config{
				BaseURL:    "http://127.0.0.1:1",
				AppBaseURL: appOrigin,
				Envs: map[string]*server.Env{"development": {
					Upstream:        &fakeUpstream{now: time.Now},
					SignIn:          &flakyResolver{},
					SessionDuration: 24 * time.Hour,
				}},
				Identity: iss,
				UserInfo: identity.NewMemoryUserInfoStore(),
				Sessions: session.NewMemoryStore(session.Options{}),
				FlowKey:  []byte(strings.Repeat("k", 32)),
			}
			tc.edit(&cfg)
			_, err = server.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
