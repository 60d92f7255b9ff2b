//go:build linux

package chaintest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/pluginhost"
	"github.com/spectroauth/spectroauth/host/signin"
	"github.com/spectroauth/spectroauth/sdk"
)

const token = "chain-test-token"

// build compiles plugins/<name> and returns its path and SHA-256 digest.
func build(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if out, err := exec.Command("go", "build", "-o", path, "../../../plugins/"+name).CombinedOutput(); err != nil {
		t.Fatalf("building plugins/%s: %v\n%s", name, err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return path, hex.EncodeToString(sum[:])
}

// catalog serves the User entity default/alice, a member of team-a, in the
// shape of Backstage's catalog API, and counts the requests.
func catalog(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	alice := map[string]any{
		"apiVersion": "backstage.io/v1alpha1",
		"kind":       "User",
		"metadata":   map[string]any{"name": "alice", "namespace": "default"},
		"spec":       map[string]any{"profile": map[string]any{"email": "alice@example.com"}, "memberOf": []any{"team-a"}},
		"relations":  []any{map[string]any{"type": "memberOf", "targetRef": "group:default/team-a"}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Authorization") != "Bearer "+token:
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"name":"AuthenticationError","message":"bad token"},"response":{"statusCode":401}}`))
		case strings.EqualFold(r.URL.Path, "/api/catalog/entities/by-name/user/default/alice"):
			_ = json.NewEncoder(w).Encode(alice)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"name":"NotFoundError","message":"no such entity"},"response":{"statusCode":404}}`))
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestChainNotFoundThenSignIn runs, through the plugin host, the chain
//
//	claims/mapping (contractors)  →  backstage-catalog/emailLocalPartMatchingUserEntityName
//
// A contractor is signed in by the first step; an employee is "not found"
// there and signed in by the catalog; a suspended contractor is refused by
// the first step, which stops the chain; an unknown user is found by none.
func TestChainNotFoundThenSignIn(t *testing.T) {
	dir := t.TempDir()
	claimsPath, claimsDigest := build(t, dir, "claims")
	catalogPath, catalogDigest := build(t, dir, "backstage-catalog")
	srv, catalogCalls := catalog(t)

	contractors := map[string]any{
		"match":               `has(claims.email) && claims.email.endsWith("@contractors.example")`,
		"policy":              `!("suspended" in claims.?groups.orValue([]))`,
		"userEntityRef":       `"user:contractors/" + claims.email.split("@")[0]`,
		"ownershipEntityRefs": `["group:contractors/all"]`,
		"examples": []any{
			map[string]any{"name": "bob", "claims": map[string]any{"email": "bob@contractors.example"},
				"expect": map[string]any{"userEntityRef": "user:contractors/bob", "ownershipEntityRefs": []any{"group:contractors/all"}}},
			map[string]any{"name": "employees are not contractors", "claims": map[string]any{"email": "alice@example.com"}, "expectNotFound": true},
		},
	}
	plugins := map[string]config.Plugin{
		"claims": {Command: claimsPath, SHA256: claimsDigest, CallTimeout: 5 * time.Second,
			Config: map[string]any{"mappings": map[string]any{"contractors": contractors}}},
		"catalog": {Command: catalogPath, SHA256: catalogDigest, CallTimeout: 5 * time.Second,
			Config: map[string]any{"baseUrl": srv.URL + "/api/catalog", "token": token}},
	}
	key := "auth.providers.spectrocloud.development.signIn.resolvers"
	steps := []pluginhost.Use{
		{Key: key + "[0]", Plugin: "claims", Role: sdk.CapabilityResolver, Name: "mapping", Options: map[string]any{"mapping": "contractors"}},
		{Key: key + "[1]", Plugin: "catalog", Role: sdk.CapabilityResolver, Name: "emailLocalPartMatchingUserEntityName", Options: map[string]any{"allowedDomains": []any{"example.com"}}},
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := pluginhost.Start(ctx, plugins, pluginhost.Options{Uses: steps, StartTimeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("starting the plugins: %v", err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })

	// Built as the daemon builds its chain.
	var chain signin.Chain
	for _, u := range steps {
		r, err := h.Resolver(u.Plugin, u.Name, u.Options)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, signin.Step{Name: u.Plugin + "/" + u.Name, Resolver: r})
	}
	// calls returns how many calls each plugin has had.
	calls := func() map[string]uint64 {
		m := map[string]uint64{}
		for _, st := range h.Plugins() {
			m[st.Name] = st.Calls
		}
		return m
	}
	// asked checks that since before, the plugins had the calls of want:
	// one per step the chain went through, never more.
	asked := func(t *testing.T, before map[string]uint64, want map[string]uint64) {
		t.Helper()
		for name, n := range calls() {
			if got := n - before[name]; got != want[name] {
				t.Errorf("plugin %s had %d calls, want %d", name, got, want[name])
			}
		}
	}
	input := func(email string, groups ...any) signin.Input {
		claims := map[string]any{"sub": "sub-" + email, "email": email, "email_verified": true}
		if groups != nil {
			claims["groups"] = groups
		}
		return signin.Input{Env: "development", Claims: claims,
			Profile: signin.Profile{Email: email, EmailVerified: true, Subject: "sub-" + email}}
	}

	t.Run("first step not found, second signs in", func(t *testing.T) {
		before := calls()
		defer asked(t, before, map[string]uint64{"claims": 1, "catalog": 1})
		id, err := chain.Resolve(ctx, input("alice@example.com"))
		if err != nil {
			t.Fatalf("chain: %v", err)
		}
		if id.UserEntityRef != "user:default/alice" || !slices.Equal(id.OwnershipEntityRefs, []string{"user:default/alice", "group:default/team-a"}) {
			t.Errorf("got %+v, want alice of the catalog with team-a", id)
		}
		if n := catalogCalls.Load(); n != 1 {
			t.Errorf("the catalog was asked %d times, want 1", n)
		}
	})
	t.Run("first step signs in, second is not asked", func(t *testing.T) {
		defer asked(t, calls(), map[string]uint64{"claims": 1})
		before := catalogCalls.Load()
		id, err := chain.Resolve(ctx, input("bob@contractors.example"))
		if err != nil || id.UserEntityRef != "user:contractors/bob" || !slices.Equal(id.OwnershipEntityRefs, []string{"user:contractors/bob", "group:contractors/all"}) {
			t.Errorf("got %+v, %v; want the contractor bob", id, err)
		}
		if n := catalogCalls.Load() - before; n != 0 {
			t.Errorf("the catalog was asked %d times", n)
		}
	})
	t.Run("a refusal stops the chain", func(t *testing.T) {
		defer asked(t, calls(), map[string]uint64{"claims": 1})
		before := catalogCalls.Load()
		_, err := chain.Resolve(ctx, input("carol@contractors.example", "suspended"))
		if err == nil || errors.Is(err, signin.ErrNoIdentity) || !strings.Contains(err.Error(), "refused by the mapping's policy") {
			t.Errorf("got %v, want the policy's refusal", err)
		}
		if n := catalogCalls.Load() - before; n != 0 {
			t.Errorf("the catalog was asked %d times after a refusal", n)
		}
	})
	t.Run("found by neither", func(t *testing.T) {
		defer asked(t, calls(), map[string]uint64{"claims": 1, "catalog": 1})
		if _, err := chain.Resolve(ctx, input("nobody@example.com")); !errors.Is(err, signin.ErrNoIdentity) {
			t.Errorf("got %v, want signin.ErrNoIdentity", err)
		}
	})
	t.Run("a refused domain stops the chain", func(t *testing.T) {
		_, err := chain.Resolve(ctx, input("alice@elsewhere.example"))
		if err == nil || errors.Is(err, signin.ErrNoIdentity) || !strings.Contains(err.Error(), "sign-in refused") {
			t.Errorf("got %v, want the allowedDomains refusal", err)
		}
	})
}

// TestBadOptionFailsTheStart: a resolver option the plugin refuses stops
// the plugin host's start, naming the configuration key.
func TestBadOptionFailsTheStart(t *testing.T) {
	dir := t.TempDir()
	catalogPath, catalogDigest := build(t, dir, "backstage-catalog")
	plugins := map[string]config.Plugin{
		"catalog": {Command: catalogPath, SHA256: catalogDigest, CallTimeout: 5 * time.Second,
			Config: map[string]any{"baseUrl": "https://backstage.example.com/api/catalog"}},
	}
	key := "auth.providers.spectrocloud.development.signIn.resolvers[0]"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := pluginhost.Start(ctx, plugins, pluginhost.Options{StartTimeout: 30 * time.Second, Uses: []pluginhost.Use{{
		Key: key, Plugin: "catalog", Role: sdk.CapabilityResolver, Name: "emailMatchingUserEntityAnnotation",
		Options: map[string]any{"annotation": "not a key"},
	}}})
	if err == nil {
		_ = h.Close(context.Background())
		t.Fatal("the plugin host started with a bad option")
	}
	if !strings.Contains(err.Error(), key+".options.annotation") {
		t.Errorf("error %q does not name %s.options.annotation", err, key)
	}
}
