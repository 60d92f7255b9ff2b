package daemon

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/kube"
	"github.com/spectroauth/spectroauth/host/pluginhost"
	"github.com/spectroauth/spectroauth/host/signin"
)

// generation is what a configuration reload replaces at once: the plugins,
// the sign-in chain of each environment and the Kubernetes broker (static
// clusters, sources and their strategies). It is immutable once built; a
// reload builds and checks the next one beside it, swaps it in, and then
// retires the old one: the calls that hold it finish on it, and then its
// discovery and its plugins stop.
type generation struct {
	// n counts generations: 1 at start, one more with every reload.
	n uint64
	// cfg is the configuration it was built from.
	cfg *config.Config
	// since is when it took effect.
	since time.Time
	// plugins is nil when the configuration declares none.
	plugins *pluginhost.Host
	// chains are the sign-in chains by environment name.
	chains map[string]signin.Chain
	// broker is nil until startKube built it (early in Start).
	broker *kube.Broker

	// holds counts the calls that hold the generation; retiredBit is added
	// by retire, after which acquire passes it by.
	holds   atomic.Int64
	drained chan struct{}
	once    sync.Once
}

const retiredBit = 1 << 40

func newGeneration(n uint64, cfg *config.Config) *generation {
	return &generation{n: n, cfg: cfg, since: time.Now(), drained: make(chan struct{})}
}

// release ends a hold taken by generations.acquire.
func (g *generation) release() {
	if g.holds.Add(-1) == retiredBit {
		g.once.Do(func() { close(g.drained) })
	}
}

// retire waits, until ctx is done, for the calls that hold g; no call
// acquires g afterwards. Call it after g was swapped out.
func (g *generation) retire(ctx context.Context) error {
	if g.holds.Add(retiredBit) == retiredBit {
		g.once.Do(func() { close(g.drained) })
	}
	select {
	case <-g.drained:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("retiring configuration generation %d: %d calls still hold it: %w", g.n, g.holds.Load()&^retiredBit, ctx.Err())
	}
}

// generations holds the generation that serves.
type generations struct {
	cur atomic.Pointer[generation]
}

// acquire returns the serving generation, held until its release: a reload
// does not stop its plugins under the call.
func (gs *generations) acquire() *generation {
	for {
		g := gs.cur.Load()
		if g.holds.Add(1)&retiredBit == 0 {
			return g
		}
		// Retired between Load and Add: a newer one is in place.
		g.release()
	}
}

// load returns the serving generation without holding it, for reads that
// call no plugin (status, readiness).
func (gs *generations) load() *generation { return gs.cur.Load() }

// swap makes next serve and returns the generation it replaces; retire
// that one.
func (gs *generations) swap(next *generation) *generation { return gs.cur.Swap(next) }

// chainOf is the sign-in resolver the server holds for one environment:
// the chain of the serving generation.
type chainOf struct {
	gens *generations
	env  string
}

// Resolve implements signin.Resolver on the serving generation's chain,
// holding the generation until the chain answers.
func (c chainOf) Resolve(ctx context.Context, in signin.Input) (signin.Identity, error) {
	g := c.gens.acquire()
	defer g.release()
	return g.chains[c.env].Resolve(ctx, in)
}

var _ signin.Resolver = chainOf{}

// brokerOf is the Kubernetes routes' handler: the serving generation's
// broker, held for the request.
type brokerOf struct{ gens *generations }

func (b brokerOf) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g := b.gens.acquire()
	defer g.release()
	g.broker.ServeHTTP(w, r)
}
