package kube

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/sdk"
)

// entry is one known cluster.
type entry struct {
	cluster  sdk.Cluster
	strategy *StrategyBinding
	origin   string
}

// Clash is a cluster name that more than one origin reports: the static
// configuration wins, then the earlier source.
type Clash struct {
	// Name is the cluster name.
	Name string
	// Kept is the origin whose cluster is served.
	Kept string
	// Dropped is the origin whose cluster is ignored.
	Dropped string
}

// snapshot is the merged view readers use, replaced whole on every change.
type snapshot struct {
	byName  map[string]*entry
	order   []string
	clashes []Clash
}

// registry merges the static clusters with every source's last good list.
type registry struct {
	log    hclog.Logger
	static []*entry

	mu      sync.Mutex
	sources [][]*entry // per source: the last good list, nil before the first
	cur     atomic.Pointer[snapshot]
}

func (r *registry) init(static []*entry, sources int, log hclog.Logger) {
	r.log = log
	r.static = static
	r.sources = make([][]*entry, sources)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rebuildLocked()
}

func (r *registry) load() *snapshot { return r.cur.Load() }

// listed reports whether source i has a good list (Refresh gave it one).
func (r *registry) listed(i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sources[i] != nil
}

// update replaces source i's clusters.
func (r *registry) update(i int, entries []*entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sources[i] = entries
	r.rebuildLocked()
}

// failed notes a failed listing of source i and says how many clusters it
// keeps serving.
func (r *registry) failed(i int, _ error) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sources[i])
}

// rebuildLocked merges everything into a new snapshot and reports clashes
// that were not there before.
func (r *registry) rebuildLocked() {
	snap := &snapshot{byName: map[string]*entry{}}
	add := func(e *entry) {
		if prev, ok := snap.byName[e.cluster.Name]; ok {
			snap.clashes = append(snap.clashes, Clash{Name: e.cluster.Name, Kept: prev.origin, Dropped: e.origin})
			return
		}
		snap.byName[e.cluster.Name] = e
		snap.order = append(snap.order, e.cluster.Name)
	}
	for _, e := range r.static {
		add(e)
	}
	for _, list := range r.sources {
		for _, e := range list {
			add(e)
		}
	}
	slices.Sort(snap.order)
	if old := r.cur.Load(); old != nil {
		for _, c := range snap.clashes {
			if !slices.Contains(old.clashes, c) {
				r.log.Warn("cluster name clash: two origins report the same cluster name; serving the first",
					"cluster", c.Name, "kept", c.Kept, "ignored", c.Dropped)
			}
		}
	}
	r.cur.Store(snap)
}
