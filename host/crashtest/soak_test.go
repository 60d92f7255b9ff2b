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
)

// TestSoak is `make soak`, skipped unless SOAK_REFRESHES is set:
// that many refreshes of signed-in sessions, with a sign-in every 200th
// operation, from 8 concurrent clients, while faults are injected on a
// schedule (every SOAK_FAULT_EVERY, default 5s), in turn: the
// resolver plugin SIGKILLed (when SOAK_PLUGINS holds the claims
// plugin), the provider down for the daemon for SOAK_PROVIDER_DOWN
// (default 3s, see providerGate), the daemon SIGTERMed and restarted, the
// daemon SIGKILLed and restarted (SOAK_FAULTS, a comma-separated list of
// plugin-kill, provider-down, sigterm, sigkill, picks some). Sessions are revalidated with the
// provider every minute (the least revalidateInterval). Checked: no 200
// names another user than the session's; every error falls inside a fault
// window (the fault until the daemon is ready again, or the provider back,
// plus a second); while the provider is down every /refresh is answered
// 200 (the session's tokens are still valid, so an unreachable provider
// must not end or fail it) and a sign-in fails only with an error the
// daemon names; no session is lost across the restarts; and the
// last daemon's open files and RSS after the load are reported against the
// same daemon's under load.
func TestSoak(t *testing.T) {
	total, _ := strconv.Atoi(os.Getenv("SOAK_REFRESHES"))
	if total <= 0 {
		t.Skip("make soak runs this (SOAK_REFRESHES=N)")
	}
	every := 5 * time.Second
	if v := os.Getenv("SOAK_FAULT_EVERY"); v != "" {
		var err error
		if every, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	providerDown := 3 * time.Second
	if v := os.Getenv("SOAK_PROVIDER_DOWN"); v != "" {
		var err error
		if providerDown, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	if providerDown >= every {
		t.Fatalf("SOAK_PROVIDER_DOWN (%s) must be shorter than SOAK_FAULT_EVERY (%s)", providerDown, every)
	}
	resolverYAML, pluginYAML := "", ""
	faults := []string{"provider-down", "sigterm", "sigkill"}
	if dir := os.Getenv("SOAK_PLUGINS"); dir != "" {
		bin, _ := filepath.Abs(filepath.Join(dir, "claims"))
		if b, err := os.ReadFile(bin); err == nil {
			sum := sha256.Sum256(b)
			pluginYAML = fmt.Sprintf(`plugins:
  claims:
    command: %s
    sha256: %s
    config:
      mappings:
        soak:
          userEntityRef: '"user:default/" + claims.email.split("@")[0]'
`, bin, hex.EncodeToString(sum[:]))
			resolverYAML = "            - plugin: claims\n              resolver: mapping\n              options:\n                mapping: soak\n"
			faults = append([]string{"plugin-kill"}, faults...)
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
	r := newRig(t, resolverYAML, pluginYAML)

	var cur atomic.Pointer[daemon]
	cur.Store(r.start(t, "soak-00.log"))
	t.Cleanup(func() { cur.Load().kill() })

	type sess struct{ handle, user string }
	var (
		smu      sync.Mutex
		sessions []sess
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
		outside                         []string
	)
	record := func(what string) {
		emu.Lock()
		defer emu.Unlock()
		if inWindow() {
			inFault[*faultKind.Load()+": "+what]++
		} else if len(outside) < 20 {
			outside = append(outside, what)
		} else {
			outside = append(outside[:19], "…")
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for w := range 8 {
		wg.Go(func() {
			for n := 0; done.Add(1) <= int64(total) && ctx.Err() == nil; n++ {
				if n%200 == 199 {
					user := users[rand.IntN(len(users))]
					h, err := r.signIn(ctx, user)
					if err != nil {
						record("sign-in: " + transportError(err.Error()))
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
					record("no answer: " + transportError(user))
				default:
					record("HTTP " + strconv.Itoa(status))
				}
			}
		})
	}

	var faultCount atomic.Int64
	var fwg sync.WaitGroup
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
				for range 100 {
					if len(children(d.cmd.Process.Pid)) > 0 {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			case "provider-down":
				r.opDown.Store(true)
				time.Sleep(providerDown)
				r.opDown.Store(false)
			case "sigterm", "sigkill":
				sig := syscall.SIGTERM
				if kind == "sigkill" {
					sig = syscall.SIGKILL
				}
				d.stop(sig)
				nd, err := launch(r.bin, r.cfg, r.base, filepath.Join(r.dir, fmt.Sprintf("soak-%02d.log", i+1)))
				if err != nil {
					t.Errorf("restart after %s: %v", kind, err)
					cancel()
					return
				}
				cur.Store(nd)
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
	end := measure(r, cur.Load())

	emu.Lock()
	var kinds, providerDownWrong []string
	errs := 0
	for k, n := range inFault {
		kinds = append(kinds, fmt.Sprintf("%s ×%d", k, n))
		errs += n
		// While the provider is down: no /refresh fails, and a sign-in
		// fails with an error the daemon names, not unanswered.
		if what, ok := strings.CutPrefix(k, "provider-down: "); ok && (!strings.HasPrefix(what, "sign-in: did not complete: ") || !strings.HasSuffix(what, ")")) {
			providerDownWrong = append(providerDownWrong, k)
		}
	}
	sort.Strings(kinds)
	emu.Unlock()
	t.Logf("soak: %d refreshes and %d sign-ins in %s (%.0f/s), %d faults (%s, in turn, every %s)",
		refreshes.Load(), signIns.Load(), elapsed.Round(time.Second), float64(refreshes.Load()+signIns.Load())/elapsed.Seconds(),
		faultCount.Load(), strings.Join(faults, ", "), every)
	t.Logf("soak: %d wrong answers, %d errors inside fault windows (%s), %d outside, %d of %d sessions lost",
		wrong.Load(), errs, strings.Join(kinds, "; "), len(outside), lost, len(sessions))
	t.Logf("soak: the provider answered %d refresh grants (revalidations and renewals) and left %d of the daemon's requests unanswered while down",
		r.op.Counters().Refresh, r.opUnanswered.Load())
	t.Logf("soak: idle daemon before the load: %s; the last daemon, idle after the load: %s", idle, end)
	if end.fds > idle.fds+8 || end.goroutines > idle.goroutines+20 {
		t.Errorf("open files or goroutines did not come back: before %s, after %s", idle, end)
	}
	if len(outside) > 0 {
		t.Errorf("errors outside the fault windows: %q", outside)
	}
	if lost > 0 {
		t.Errorf("%d sessions lost", lost)
	}
	if len(providerDownWrong) > 0 {
		sort.Strings(providerDownWrong)
		t.Errorf("while the provider was down, a /refresh failed or a sign-in failed without the daemon's error: %q", providerDownWrong)
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
	res, err := http.Get(r.metrics)
	if err != nil {
		return s
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			s.goroutines, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return s
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
