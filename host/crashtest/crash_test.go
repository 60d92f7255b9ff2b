package crashtest_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestSIGKILLDuringWrites starts bin/spectroauthd (or a fresh build) on file
// storage against a real OpenID provider, runs sign-ins and refreshes (each
// sign-in appends to the session journal, writes a user info file, and the
// first start the signing key), SIGKILLs the daemon at a random moment, and restarts it, in
// a bounded loop. After each restart: the daemon comes up on the same
// store, every session whose sign-in answered before a kill still refreshes
// as its own user, and the store's directories hold no temporary file and no
// file that does not decode. After each kill, before the restart, every
// non-temporary file decodes (atomicfile's rename never shows a torn file)
// and the journal reads up to a torn tail at most, which the restart cuts.
func TestSIGKILLDuringWrites(t *testing.T) {
	iterations := 20
	if testing.Short() {
		iterations = 5
	}
	r := newRig(t, rigOptions{})
	type signedIn struct{ handle, user string }
	var confirmed []signedIn // sessions whose sign-in answered
	kills, filesRead := 0, 0
	var restarts time.Duration
	for i := range iterations {
		t0 := time.Now()
		d := r.start(t, fmt.Sprintf("daemon-%02d.log", i))

		// Nothing confirmed before a kill is lost, and the store came up
		// clean.
		for _, s := range confirmed {
			if status, user := refresh(r.base, s.handle); status != http.StatusOK || user != userRef(s.user) {
				d.kill()
				t.Fatalf("restart %d: a session of %s confirmed before a kill refreshes %d as %q\n%s", i, s.user, status, user, d.log())
			}
		}
		checkStore(t, r.dataDir, true)
		restarts += time.Since(t0)

		// Writes under way, then SIGKILL at a random moment.
		ctx, cancel := context.WithCancel(context.Background())
		var (
			mu    sync.Mutex
			fresh []signedIn
			wg    sync.WaitGroup
		)
		for w := range 4 {
			wg.Go(func() {
				for n := 0; ctx.Err() == nil; n++ {
					if w == 0 && len(confirmed) > 0 {
						// Refreshes append to the journal too.
						_, _ = refresh(r.base, confirmed[rand.IntN(len(confirmed))].handle)
						continue
					}
					user := users[(w+n)%len(users)]
					if h, err := r.signIn(ctx, user); err == nil {
						mu.Lock()
						fresh = append(fresh, signedIn{h, user})
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(time.Duration(50+rand.IntN(250)) * time.Millisecond)
		d.kill()
		kills++
		cancel()
		wg.Wait()
		confirmed = append(confirmed, fresh...)
		filesRead += checkStore(t, r.dataDir, false)
	}
	if len(confirmed) == 0 {
		t.Fatal("no sign-in completed: the test wrote nothing")
	}
	t.Logf("%d SIGKILLs, %d confirmed sessions all kept, %d files and sessions read after kills; restarts and checks took %s",
		kills, len(confirmed), filesRead, restarts.Round(time.Millisecond))
}
