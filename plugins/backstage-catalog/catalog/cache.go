package catalog

import (
	"container/list"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
)

// result is the outcome of one catalog lookup: a user's identity, or that no
// user matched.
type result struct {
	id    sdk.Identity
	found bool
}

// clone returns r with its own copy of the ownership refs, so that callers
// cannot change a cached value.
func (r result) clone() result {
	r.id.OwnershipEntityRefs = slices.Clone(r.id.OwnershipEntityRefs)
	return r
}

// cache remembers lookup results for a while, at most size of them, the
// least recently used going first. Errors are never cached.
type cache struct {
	ttl, notFoundTTL time.Duration
	size             int
	now              func() time.Time

	mu    sync.Mutex
	items map[string]*list.Element // of *cacheEntry
	lru   *list.List               // front: most recently used
}

type cacheEntry struct {
	key     string
	res     result
	expires time.Time
}

func newCache(ttl, notFoundTTL time.Duration, size int, now func() time.Time) *cache {
	return &cache{ttl: ttl, notFoundTTL: notFoundTTL, size: size, now: now, items: map[string]*list.Element{}, lru: list.New()}
}

// get returns the live result cached under key.
func (c *cache) get(key string) (result, bool) {
	if c.ttl <= 0 {
		return result{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return result{}, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.lru.Remove(el)
		delete(c.items, key)
		return result{}, false
	}
	c.lru.MoveToFront(el)
	return e.res.clone(), true
}

// put caches res under key, for ttl when found and notFoundTTL when not.
func (c *cache) put(key string, res result) {
	ttl := c.ttl
	if !res.found {
		ttl = c.notFoundTTL
	}
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &cacheEntry{key: key, res: res.clone(), expires: c.now().Add(ttl)}
	if el, ok := c.items[key]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.items[key] = c.lru.PushFront(e)
	for c.lru.Len() > c.size {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.items, oldest.Value.(*cacheEntry).key)
	}
}

// len returns the number of entries, live or expired.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// flights runs at most one lookup per key at a time: callers that ask for a
// key while its lookup runs wait for that lookup's outcome, so that a storm
// of sign-ins or refreshes of one user costs the catalog one request.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done    chan struct{}
	res     result
	err     error
	waiters int                // guarded by flights.mu
	cancel  context.CancelFunc // stops the lookup
}

// do returns the outcome of fn for key, running fn in a goroutine of its own
// unless a run for key is under way. fn's context is ctx without its
// cancellation, bounded by timeout: the run serves every caller of key, so
// it goes on when one of them gives up, and is cancelled only when all have.
// A caller whose ctx is done gets ctx's error.
func (f *flights) do(ctx context.Context, key string, timeout time.Duration, fn func(context.Context) (result, error)) (result, error) {
	f.mu.Lock()
	if f.m == nil {
		f.m = map[string]*flight{}
	}
	fl, ok := f.m[key]
	if !ok {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		fl = &flight{done: make(chan struct{}), cancel: cancel}
		f.m[key] = fl
		go func() {
			defer close(fl.done)
			defer cancel()
			fl.res, fl.err = fn(fctx)
			f.mu.Lock()
			if f.m[key] == fl {
				delete(f.m, key)
			}
			f.mu.Unlock()
		}()
	}
	fl.waiters++
	f.mu.Unlock()
	select {
	case <-fl.done:
		return fl.res.clone(), fl.err
	case <-ctx.Done():
		f.mu.Lock()
		if fl.waiters--; fl.waiters == 0 {
			// Nobody waits any more: stop asking, and let the next caller
			// start afresh rather than join a cancelled run.
			fl.cancel()
			if f.m[key] == fl {
				delete(f.m, key)
			}
		}
		f.mu.Unlock()
		return result{}, ctx.Err()
	}
}
