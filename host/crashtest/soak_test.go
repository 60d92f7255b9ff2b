package crashtest_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/internal/pgtest"
	"github.com/spectroauth/spectroauth/host/storage/postgres"
	"github.com/spectroauth/spectroauth/host/upstream"
)

// TestSoak is `make soak`, skipped unless SOAK_REFRESHES is set:
// that many refreshes of signed-in sessions, with a sign-in every 200th
// operation, from 8 concurrent clients, while faults are injected on a
// schedule (every SOAK_FAULT_EVERY, default 5s), in turn:
//
//   - plugin-kill: the resolver plugin SIGKILLed (when SOAK_PLUGINS holds
//     the claims plugin); the window lasts until it runs again;
//   - plugin-hang: the resolver plugin SIGSTOPped for SOAK_PLUGIN_HANG
//     (default 8s), then SIGCONTed; the daemon's call deadline fails the
//     calls it misses, and after three misses in a row it kills and
//     restarts the plugin (its documented behaviour); the window lasts
//     until the plugin is up again;
//   - provider-down: the provider leaves the daemon's requests unanswered
//     for SOAK_PROVIDER_DOWN (default 3s, see rig.gate);
//   - provider-slow: for SOAK_PROVIDER_SLOW (default 3s) the provider
//     answers the daemon, in turn, past its upstream timeout and within
//     it; the window lasts until the last late answer is out;
//   - pg-restart: with SOAK_STORAGE=postgres, the PostgreSQL server the
//     test started is shut down fast (every pooled connection is sent
//     57P01) and started again;
//   - sigterm, sigkill: the daemon stopped and restarted.
//
// SOAK_FAULTS (a comma-separated list of the above) picks some. The
// provider renews refresh tokens as SpectroCloud documents (the same
// token); SOAK_ROTATE=1 makes it rotate them instead, and
// SOAK_REUSE_GRACE (a duration) then keeps a rotated token usable that
// long, as providers with a reuse interval do. Sessions are
// revalidated with the provider every minute (the least
// revalidateInterval).
//
// Checked: no 200 names another user than the session's; every error
// falls inside a fault window (the fault until the daemon, plugin,
// database or provider is back, plus a second); outside sigterm and
// sigkill every error is an answer of the daemon (a status, or the sign-in
// error page), never a connection it dropped or left unanswered; while the
// provider is down or slow every /refresh is answered 200 (the session's
// tokens are still valid) and a sign-in fails only with the daemon's error
// page; no session is lost across the restarts, but for the ones a
// rotating provider revoked (SOAK_ROTATE=1: a SIGKILL between the
// provider's rotation and the daemon's store, counted apart); and the last
// daemon's open files and goroutines after the load come back to the
// first one's before it.
func TestSoak(t *testing.T) {
	total, _ := strconv.Atoi(os.Getenv("SOAK_REFRESHES"))
	if total <= 0 {
		t.Skip("make soak runs this (SOAK_REFRESHES=N)")
	}
	every := envDuration(t, "SOAK_FAULT_EVERY", 5*time.Second)
	providerDown := envDuration(t, "SOAK_PROVIDER_DOWN", 3*time.Second)
	providerSlow := envDuration(t, "SOAK_PROVIDER_SLOW", 3*time.Second)
	pluginHang := envDuration(t, "SOAK_PLUGIN_HANG", 8*time.Second)
	var o rigOptions
	o.rotate = os.Getenv("SOAK_ROTATE") == "1"
	if os.Getenv("SOAK_REUSE_GRACE") != "" {
		o.reuseGrace = envDuration(t, "SOAK_REUSE_GRACE", 0)
	}
	faults := []string{"provider-down", "provider-slow", "sigterm", "sigkill"}
	var pg *pgtest.Server
	switch st := os.Getenv("SOAK_STORAGE"); st {
	case "", "file":
	case "postgres":
		pg = pgtest.NewServer(t, pgtest.Options{TCP: true})
		dsn, err := pg.CreateDatabase(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		o.storage = fmt.Sprintf("storage:\n  type: postgres\n  postgresUrl: %q\n", dsn)
		faults = append(faults[:2], append([]string{"pg-restart"}, faults[2:]...)...)
	default:
		t.Fatalf("SOAK_STORAGE: file or postgres, not %q", st)
	}
	if dir := os.Getenv("SOAK_PLUGINS"); dir != "" {
		bin, _ := filepath.Abs(filepath.Join(dir, "claims"))
		if b, err := os.ReadFile(bin); err == nil {
			sum := sha256.Sum256(b)
			o.extra = fmt.Sprintf(`plugins:
  claims:
    command: %s
    sha256: %s
    config:
      mappings:
        soak:
          userEntityRef: '"user:default/" + claims.email.split("@")[0]'
`, bin, hex.EncodeToString(sum[:]))
			o.resolver = "            - plugin: claims\n              resolver: mapping\n              options:\n                mapping: soak\n"
			faults = append([]string{"plugin-kill", "plugin-hang"}, faults...)
		}
	}
	if v := os.Getenv("SOAK_FAULTS"); v != "" {
		// A subset, to tell which fault a failure comes with.
		var only []string
		for _, f := range strings.Split(v, ",") {
			if !slices.Contains(faults, f) {
				t.Fatalf("SOAK_FAULTS: %q is not one of %q", f, faults)
			}
			only = append(only, f)
		}
		faults = only
	}
	r := newRig(t, o)

	var cur atomic.Pointer[daemon]
	cur.Store(r.start(t, "soak-00.log"))
	t.Cleanup(func() { cur.Load().kill() })

	type sess struct{ handle, user string }
	var (
		smu      sync.Mutex
		sessions []sess
		// rotatedAway are the sessions a rotating provider revoked (a
		// 401 outside a fault window, with as many chains revoked), and
		// rotatedAwayRefreshes the 401s they answered since.
		rotatedAway          = map[string]bool{}
		rotatedAwayRefreshes atomic.Int64
	)
	for i := range 2 * len(users) {
		h, err := r.signIn(context.Background(), users[i%len(users)])
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, sess{h, users[i%len(users)]})
	}

	idle := measure(r, cur.Load())

	// faultUntil is when the current fault window ends (max while one is
	// under way); faultKind is the current or last fault.
	var faultUntil atomic.Int64
	var faultKind atomic.Pointer[string]
	faultKind.Store(new(string))
	inWindow := func() bool { return time.Now().UnixNano() < faultUntil.Load() }
	var (
		done, refreshes, signIns, wrong atomic.Int64
		emu                             sync.Mutex
		inFault                         = map[string]int{}
		outside, afterPGRestart         []string
		// pgBack is when the database last accepted connections again
		// after a pg-restart (max while it restarts).
		pgBack atomic.Int64
	)
	pgBack.Store(1<<63 - 1)
	// record files the error of an operation that started at t0.
	record := func(what string, t0 time.Time) {
		emu.Lock()
		defer emu.Unlock()
		if *faultKind.Load() == "pg-restart" && t0.UnixNano() >= pgBack.Load() && len(afterPGRestart) < 20 {
			// Started once the server was back: a pooled connection the
			// restart ended must have been retried, not failed.
			afterPGRestart = append(afterPGRestart, what)
		}
		if inWindow() {
			inFault[*faultKind.Load()+": "+what]++
		} else if len(outside) < 20 {
			outside = append(outside, fmt.Sprintf("%s (%.1fs after the %s window)", what,
				time.Duration(time.Now().UnixNano()-faultUntil.Load()).Seconds(), *faultKind.Load()))
		} else {
			outside = append(outside[:19], "…")
		}
	}

	// lostToRotation reports whether the session behind handle, which
	// answered 401 outside a fault window, is one the provider revoked: a
	// rotated refresh token the daemon never stored was replayed (counted
	// apart, see RefreshChainsRevoked).
	lostToRotation := func(handle string) bool {
		smu.Lock()
		defer smu.Unlock()
		if rotatedAway[handle] {
			return true
		}
		if int64(len(rotatedAway)) < r.op.Counters().RefreshChainsRevoked {
			rotatedAway[handle] = true
			return true
		}
		return false
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for w := range 8 {
		wg.Go(func() {
			for n := 0; done.Add(1) <= int64(total) && ctx.Err() == nil; n++ {
				t0 := time.Now()
				if n%200 == 199 {
					user := users[rand.IntN(len(users))]
					h, err := r.signIn(ctx, user)
					if err != nil {
						record("sign-in: "+transportError(err.Error()), t0)
						continue
					}
					signIns.Add(1)
					smu.Lock()
					sessions = append(sessions, sess{h, user})
					smu.Unlock()
					continue
				}
				smu.Lock()
				s := sessions[rand.IntN(len(sessions))]
				smu.Unlock()
				status, user := refresh(r.base, s.handle)
				refreshes.Add(1)
				switch {
				case status == http.StatusOK && user == userRef(s.user):
				case status == http.StatusOK:
					wrong.Add(1)
					t.Errorf("worker %d: a session of %s refreshed as %q", w, s.user, user)
				case status == 0:
					record("no answer: "+transportError(user), t0)
				case status == http.StatusUnauthorized && !inWindow() && lostToRotation(s.handle):
					rotatedAwayRefreshes.Add(1)
				default:
					record("HTTP "+strconv.Itoa(status), t0)
				}
			}
		})
	}

	var (
		faultCount          atomic.Int64
		hangs, hangRestarts atomic.Int64
		pgRestartTook       atomic.Int64 // nanoseconds, all restarts
		// downtime holds, per signal, how long each stop and the
		// following start until /readyz took.
		dmu      sync.Mutex
		downtime = map[string][][2]time.Duration{}
		fwg      sync.WaitGroup
	)
	fwg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
			kind := faults[i%len(faults)]
			faultUntil.Store(1<<63 - 1)
			faultKind.Store(&kind)
			d := cur.Load()
			switch kind {
			case "plugin-kill":
				for _, pid := range children(d.cmd.Process.Pid) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
				// The supervisor restarts it; the window lasts until it runs.
				time.Sleep(time.Second)
				waitPluginUp(r)
			case "plugin-hang":
				before := metricValue(r, `spectroauth_plugin_restarts_total{plugin="claims"}`)
				pids := children(d.cmd.Process.Pid)
				for _, pid := range pids {
					_ = syscall.Kill(pid, syscall.SIGSTOP)
				}
				time.Sleep(pluginHang)
				for _, pid := range pids {
					_ = syscall.Kill(pid, syscall.SIGCONT) // gone when the daemon killed it
				}
				waitPluginUp(r)
				hangs.Add(1)
				if metricValue(r, `spectroauth_plugin_restarts_total{plugin="claims"}`) > before {
					hangRestarts.Add(1)
				}
			case "provider-down":
				r.opDown.Store(true)
				time.Sleep(providerDown)
				r.opDown.Store(false)
			case "provider-slow":
				r.opSlow.Store(true)
				time.Sleep(providerSlow)
				r.opSlow.Store(false)
				for range 200 { // the late answers, at most lateDelay
					if r.opDelaying.Load() == 0 {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			case "pg-restart":
				t0 := time.Now()
				pgBack.Store(1<<63 - 1)
				if err := pg.Halt(); err != nil {
					t.Errorf("stopping PostgreSQL: %v", err)
				}
				if err := pg.Resume(); err != nil {
					t.Errorf("starting PostgreSQL again: %v\n%s", err, pg.Log())
					cancel()
					return
				}
				pgBack.Store(time.Now().UnixNano())
				pgRestartTook.Add(int64(time.Since(t0)))
			case "sigterm", "sigkill":
				sig := syscall.SIGTERM
				if kind == "sigkill" {
					sig = syscall.SIGKILL
				}
				t0 := time.Now()
				d.stop(sig)
				t1 := time.Now()
				nd, err := launch(r.bin, r.cfg, r.base, filepath.Join(r.dir, fmt.Sprintf("soak-%02d.log", i+1)))
				if err != nil {
					t.Errorf("restart after %s: %v", kind, err)
					cancel()
					return
				}
				cur.Store(nd)
				dmu.Lock()
				downtime[kind] = append(downtime[kind], [2]time.Duration{t1.Sub(t0), time.Since(t1)})
				dmu.Unlock()
			}
			faultCount.Add(1)
			faultUntil.Store(time.Now().Add(time.Second).UnixNano())
		}
	})
	wg.Wait()
	elapsed := time.Since(start)
	cancel()
	fwg.Wait()
	time.Sleep(1100 * time.Millisecond) // past the last window

	// No session lost across the restarts.
	lost := 0
	for _, s := range sessions {
		if status, user := refresh(r.base, s.handle); status != http.StatusOK || user != userRef(s.user) {
			lost++
		}
	}
	// A rotating provider revokes the chain of a session whose rotated
	// token it saw again: the daemon was killed before storing the new one
	// (or gave up on a late answer). Those are counted apart.
	rotationLosses := int(r.op.Counters().RefreshChainsRevoked)
	end := measure(r, cur.Load())

	emu.Lock()
	var kinds, unclear, providerWrong []string
	errs := 0
	for k, n := range inFault {
		kinds = append(kinds, fmt.Sprintf("%s ×%d", k, n))
		errs += n
		kind, what, _ := strings.Cut(k, ": ")
		daemonUp := kind != "sigterm" && kind != "sigkill"
		if daemonUp && (strings.HasPrefix(what, "no answer: ") || (strings.HasPrefix(what, "sign-in: ") && !strings.HasSuffix(what, ")"))) {
			// The daemon runs: it must answer, with a status or its
			// error page.
			unclear = append(unclear, k)
		}
		// While the provider is down or slow: no /refresh fails, and a
		// sign-in fails with an error the daemon names.
		if (kind == "provider-down" || kind == "provider-slow") && (!strings.HasPrefix(what, "sign-in: did not complete: ") || !strings.HasSuffix(what, ")")) {
			providerWrong = append(providerWrong, k)
		}
	}
	sort.Strings(kinds)
	emu.Unlock()
	storage := "file"
	if pg != nil {
		storage = "postgres"
	}
	t.Logf("soak: %s storage, %d refreshes and %d sign-ins in %s (%.0f/s), %d faults (%s, in turn, every %s)",
		storage, refreshes.Load(), signIns.Load(), elapsed.Round(time.Second), float64(refreshes.Load()+signIns.Load())/elapsed.Seconds(),
		faultCount.Load(), strings.Join(faults, ", "), every)
	t.Logf("soak: %d wrong answers, %d errors inside fault windows (%s), %d outside, %d of %d sessions lost (%d of them to refresh token rotation, whose refreshes then answered 401 %d times outside the windows)",
		wrong.Load(), errs, strings.Join(kinds, "; "), len(outside), lost, len(sessions), min(lost, rotationLosses), rotatedAwayRefreshes.Load())
	c := r.op.Counters()
	t.Logf("soak: the provider (refresh tokens rotated: %v, reuse grace %s) answered %d refresh grants (revalidations and renewals); while down it left %d of the daemon's requests unanswered; while slow it answered %d past the daemon's upstream timeout (%s) and %d within it",
		o.rotate, o.reuseGrace, c.Refresh, r.opUnanswered.Load(), r.opLate.Load(), upstream.DefaultTimeout, r.opOnTime.Load())
	if hangs.Load() > 0 {
		t.Logf("soak: the plugin hung %d times for %s; the daemon restarted it after %d of them (three calls in a row past its call deadline), the others it resumed", hangs.Load(), pluginHang, hangRestarts.Load())
	}
	if pg != nil {
		t.Logf("soak: PostgreSQL restarts took %s in all", time.Duration(pgRestartTook.Load()).Round(time.Millisecond))
	}
	for _, kind := range []string{"sigterm", "sigkill"} {
		if ds := downtime[kind]; len(ds) > 0 {
			var stop, start, worst time.Duration
			for _, d := range ds {
				stop, start, worst = stop+d[0], start+d[1], max(worst, d[0]+d[1])
			}
			n := time.Duration(len(ds))
			t.Logf("soak: %s ×%d: the daemon took on average %s to exit and %s to get ready again (longest stop and start %s)",
				kind, len(ds), (stop / n).Round(time.Millisecond), (start / n).Round(time.Millisecond), worst.Round(time.Millisecond))
		}
	}
	t.Logf("soak: idle daemon before the load: %s; the last daemon, idle after the load: %s", idle, end)
	fdSlack := 8
	if pg != nil {
		fdSlack += postgres.DefaultMaxConns // the pool fills under load
	}
	if end.fds > idle.fds+fdSlack || end.goroutines > idle.goroutines+20 {
		t.Errorf("open files or goroutines did not come back: before %s, after %s", idle, end)
	}
	if len(outside) > 0 {
		t.Errorf("errors outside the fault windows: %q", outside)
	}
	if lost > rotationLosses {
		t.Errorf("%d sessions lost (%d of them to refresh token rotation)", lost, min(lost, rotationLosses))
	}
	if len(afterPGRestart) > 0 {
		t.Errorf("operations that started after PostgreSQL was back failed (a pooled connection the restart ended was not retried): %q", afterPGRestart)
	}
	if len(unclear) > 0 {
		sort.Strings(unclear)
		t.Errorf("the running daemon dropped or left requests unanswered, or a sign-in failed without its error page: %q", unclear)
	}
	if len(providerWrong) > 0 {
		sort.Strings(providerWrong)
		t.Errorf("while the provider was down or slow, a /refresh failed or a sign-in failed without the daemon's error: %q", providerWrong)
	}
}

// envDuration is the duration in the environment variable name, or def.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s: a positive duration, not %q", name, v)
	}
	return d
}

// waitPluginUp waits (at most 30 s) until the daemon reports the claims
// plugin up.
func waitPluginUp(r *rig) {
	for range 300 {
		if metricValue(r, `spectroauth_plugin_up{plugin="claims",state="up"}`) == 1 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stats is what a daemon holds.
type stats struct {
	rssMB           float64
	fds, goroutines int
}

func (s stats) String() string {
	return fmt.Sprintf("RSS %.1f MB, %d open files, %d goroutines", s.rssMB, s.fds, s.goroutines)
}

// measure reads the daemon's RSS and open files from /proc and its
// goroutines from its metrics, after a second of rest.
func measure(r *rig, d *daemon) stats {
	time.Sleep(time.Second)
	var s stats
	s.rssMB, s.fds = procStats(d.cmd.Process.Pid)
	s.goroutines = int(metricValue(r, "go_goroutines"))
	return s
}

// metricValue is the value of the daemon's metric series (name and
// labels as /metrics prints them), -1 when it has none.
func metricValue(r *rig, series string) float64 {
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get(r.metrics)
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// children lists the processes whose parent is pid (the daemon's plugins).
func children(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// procStats returns the process's resident set in MB and its open files.
func procStats(pid int) (float64, int) {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, len(fds)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024, len(fds)
		}
	}
	return 0, len(fds)
}

// transportError names the kind of a failed request (refresh returns the
// error text in place of the user).
func transportError(msg string) string {
	if _, status, ok := strings.Cut(msg, "sign-in did not complete: "); ok {
		// The status, and the error the frame page posted: "200 <nil>
		// (ServiceUnavailableError)" reads as "200 (ServiceUnavailableError)".
		return "did not complete: " + strings.Replace(status, " <nil>", "", 1)
	}
	for _, k := range []string{"connection refused", "connection reset", "EOF", "timeout"} {
		if strings.Contains(msg, k) {
			return k
		}
	}
	return msg
}
