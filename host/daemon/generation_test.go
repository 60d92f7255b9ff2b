package daemon

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/config"
)

// TestGenerationSwapWaitsForHolders: after a swap, new calls get the new
// generation at once, and retiring the old one waits for the call that
// still holds it, and no longer.
func TestGenerationSwapWaitsForHolders(t *testing.T) {
	var gens generations
	g1, g2 := newGeneration(1, nil), newGeneration(2, nil)
	gens.cur.Store(g1)

	held := gens.acquire()
	if held != g1 {
		t.Fatalf("acquired generation %d, want 1", held.n)
	}
	if prev := gens.swap(g2); prev != g1 {
		t.Fatalf("swap returned generation %d, want 1", prev.n)
	}
	if g := gens.acquire(); g != g2 {
		t.Fatalf("after the swap a call got generation %d, want 2", g.n)
	} else {
		g.release()
	}

	retired := make(chan error, 1)
	go func() { retired <- g1.retire(context.Background()) }()
	select {
	case err := <-retired:
		t.Fatalf("retire returned (%v) while a call holds the generation", err)
	case <-time.After(50 * time.Millisecond):
	}
	held.release()
	select {
	case err := <-retired:
		if err != nil {
			t.Fatalf("retire: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("retire did not return after the last holder released")
	}
}

// TestGenerationRetireGivesUpAtDeadline: a holder that never releases
// holds retire up until its context ends, and the error says so.
func TestGenerationRetireGivesUpAtDeadline(t *testing.T) {
	var gens generations
	g := newGeneration(7, nil)
	gens.cur.Store(g)
	gens.acquire()
	gens.swap(newGeneration(8, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := g.retire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("retire = %v, want a deadline error", err)
	}
}

// TestGenerationSwapUnderLoad: goroutines acquire and release while
// generations are swapped and retired; every call gets a generation that
// has not been retired yet, and every retire returns.
func TestGenerationSwapUnderLoad(t *testing.T) {
	var gens generations
	gens.cur.Store(newGeneration(1, nil))
	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		retired sync.Map // *generation -> true once retire returned
		bad     atomic.Int64
	)
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				g := gens.acquire()
				if _, gone := retired.Load(g); gone {
					bad.Add(1)
				}
				g.release()
			}
		})
	}
	for n := uint64(2); n <= 200; n++ {
		prev := gens.swap(newGeneration(n, nil))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := prev.retire(ctx); err != nil {
			t.Fatalf("retire generation %d: %v", prev.n, err)
		}
		cancel()
		retired.Store(prev, true)
	}
	stop.Store(true)
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d calls ran on a retired generation", n)
	}
}

func TestFixedChanges(t *testing.T) {
	base := func() *config.Config {
		cfg, err := config.Load("")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for name, tc := range map[string]struct {
		edit func(*config.Config)
		want []string
	}{
		"nothing": {edit: func(*config.Config) {}},
		"plugins, chains, clusters and sources may change": {edit: func(c *config.Config) {
			c.Plugins = map[string]config.Plugin{"p": {Command: "/bin/p", SHA256: "ab"}}
			dev := c.Auth.Providers.SpectroCloud["development"]
			dev.SignIn.Resolvers = []config.ResolverRef{{Plugin: "p", Resolver: "r"}}
			c.Auth.Providers.SpectroCloud["development"] = dev
			c.Kubernetes.Clusters = []config.Cluster{{Name: "c"}}
			c.Kubernetes.Sources = []config.Source{{Plugin: "p"}}
		}},
		"listen and base URL": {
			edit: func(c *config.Config) { c.Server.Listen, c.Server.BaseURL = "127.0.0.1:1", "http://x" },
			want: []string{"server.baseUrl", "server.listen"},
		},
		"a provider's client secret": {
			edit: func(c *config.Config) {
				dev := c.Auth.Providers.SpectroCloud["development"]
				dev.ClientSecret = "other"
				c.Auth.Providers.SpectroCloud["development"] = dev
			},
			want: []string{"auth.providers.spectrocloud.development.clientSecret"},
		},
		"a new environment": {
			edit: func(c *config.Config) { c.Auth.Providers.SpectroCloud["staging"] = config.ProviderEnv{} },
			want: []string{"auth.providers.spectrocloud.staging"},
		},
		"storage and the audit sink": {
			edit: func(c *config.Config) { c.Storage.Path, c.Kubernetes.Audit.Sink = "/elsewhere", "stderr2" },
			want: []string{"kubernetes.audit.sink", "storage.path"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			a, b := base(), base()
			tc.edit(b)
			if got := fixedChanges(a, b); !slices.Equal(got, tc.want) {
				t.Fatalf("fixedChanges = %q, want %q", got, tc.want)
			}
		})
	}
}
