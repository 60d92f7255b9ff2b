// Package periodic runs background work on a ticker (session sweeps, key
// reloads) until its context ends.
package periodic

import (
	"context"
	"time"
)

// Every calls fn every interval, the first time one interval from now,
// until ctx is done, and then returns. fn gets ctx, so that work in
// progress stops with it.
func Every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}
