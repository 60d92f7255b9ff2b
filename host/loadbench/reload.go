package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The targets of issue 13 the figures are held against.
const (
	targetSignInCPUMillis = 2.0
	targetReadyMillis     = 150.0
)

// measureSignIns measures the daemon's CPU (user and system, all
// threads) per sign-in: the whole flow, start to callback, one sign-in
// after the other. The provider runs in this process, so its CPU is not
// counted. With builtin, blocks of o.signIns sign-ins through the
// two-plugin chain alternate, chain-builtin-builtin-chain (each swap a
// reload, then a short warm-up), with blocks through the built-in
// resolver alone, o.signInBlocks of each: both see the same heap, caches
// and machine load, which a chain measured first and a baseline after did
// not (the first paid the warm-up). It leaves the chain configured.
//
// concurrency is how many sign-ins run at once in a block: 1 is one after
// the other, the cost of a sign-in on an otherwise idle daemon, which
// includes the Go runtime's price for going idle and waking up between
// every network round trip of it (its system monitor polling, threads
// parked and woken); more is the cost per sign-in of a daemon busy
// signing people in, where those are shared.
func measureSignIns(o options, daemonPath, cfgPath, base string, pid int, builtin bool, concurrency int) (chain, bi SignInResult, err error) {
	chain = SignInResult{Chain: "claims-first (not found) -> claims", BlockSignIns: o.signIns, Concurrency: concurrency}
	bi = SignInResult{Chain: "builtin/emailLocalPartMatchingUserEntityName", BlockSignIns: o.signIns, Concurrency: concurrency}
	// Warm up: connections, the chain's first calls, the heap's growth.
	if err := warmSignIns(base, 100); err != nil {
		return chain, bi, err
	}
	onBuiltin := false
	for i := range 2 * o.signInBlocks {
		wantBuiltin := builtin && (i+1)/2%2 == 1
		if wantBuiltin != onBuiltin {
			if err := swapResolver(daemonPath, cfgPath, wantBuiltin); err != nil {
				return chain, bi, err
			}
			onBuiltin = wantBuiltin
			if err := warmSignIns(base, 20); err != nil {
				return chain, bi, err
			}
		}
		cpu, wall, err := signInBlock(base, pid, o.signIns, concurrency)
		if err != nil {
			return chain, bi, err
		}
		r := &chain
		if onBuiltin {
			r = &bi
		}
		r.Blocks = append(r.Blocks, cpu)
		r.wall = append(r.wall, wall)
	}
	if onBuiltin {
		if err := swapResolver(daemonPath, cfgPath, false); err != nil {
			return chain, bi, err
		}
	}
	chain.summarize()
	bi.summarize()
	return chain, bi, nil
}

// warmSignIns signs in n times, unmeasured.
func warmSignIns(base string, n int) error {
	for range n {
		if _, _, err := signIn(base); err != nil {
			return fmt.Errorf("warm-up sign-in: %w", err)
		}
	}
	return nil
}

// signInBlock signs in n times, concurrency at a time, and returns the
// daemon's CPU and the wall time per sign-in, in ms.
func signInBlock(base string, pid, n, concurrency int) (cpu, wall float64, _ error) {
	concurrency = max(1, min(concurrency, n))
	cpu0 := cpuTicks(pid)
	t0 := time.Now()
	var next atomic.Int64 // sign-ins handed out; bounded by n
	errs := make(chan error, concurrency)
	for range concurrency {
		go func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if _, _, err := signIn(base); err != nil {
					errs <- fmt.Errorf("sign-in %d: %w", i, err)
					return
				}
			}
			errs <- nil
		}()
	}
	var firstErr error
	for range concurrency {
		if err := <-errs; err != nil && firstErr == nil {
			firstErr = err
			next.Store(int64(n)) // the others stop after their current one
		}
	}
	if firstErr != nil {
		return 0, 0, firstErr
	}
	w := time.Since(t0)
	ticks := cpuTicks(pid) - cpu0
	return float64(ticks) * 1000 / clockTicks / float64(n), ms(w) / float64(n), nil
}

// summarize sets the totals, medians and ranges from the blocks.
func (r *SignInResult) summarize() {
	if len(r.Blocks) == 0 {
		return
	}
	r.SignIns = r.BlockSignIns * len(r.Blocks)
	r.CPUMillisPerOne, r.CPUMillisMin, r.CPUMillisMax = medianRange(r.Blocks)
	r.WallMillisPerOne, _, _ = medianRange(r.wall)
}

// medianRange is the median (of an even count, the mean of the middle
// two), the smallest and the largest of v, which must not be empty.
func medianRange(v []float64) (med, lo, hi float64) {
	s := slices.Sorted(slices.Values(v))
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}

// pluginCallsAdd is what the plugin calls add to a sign-in: the
// differences of the chain's and the built-in resolver's blocks measured
// side by side (block k of each), their median and range.
func pluginCallsAdd(chain, bi SignInResult) (med, lo, hi float64) {
	n := min(len(chain.Blocks), len(bi.Blocks))
	if n == 0 {
		return 0, 0, 0
	}
	d := make([]float64, n)
	for k := range n {
		d[k] = chain.Blocks[k] - bi.Blocks[k]
	}
	return medianRange(d)
}

// reloadUnderLoad runs /refresh on 8 connections, and meanwhile changes
// the configuration of the chain's first plugin (a restart of that plugin)
// and runs `spectroauthd reload`. Every request must succeed.
func reloadUnderLoad(daemonPath, cfgPath, base string, cookie *http.Cookie) (ReloadFigures, error) {
	var f ReloadFigures
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return f, err
	}
	if !bytes.Contains(cfg, []byte(reloadToggleFrom)) {
		return f, nil // without the claims plugin: nothing to swap
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	target := base + "/api/auth/spectrocloud/refresh?optional&env=development"
	var (
		stop       atomic.Bool
		ok, failed atomic.Int64
		first      atomic.Value
		wg         sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for i := 0; i < 1_000_000 && !stop.Load(); i++ {
				if _, err := refresh(client, target, base, cookie); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		})
	}
	time.Sleep(time.Second)
	if err := os.WriteFile(cfgPath, bytes.Replace(cfg, []byte(reloadToggleFrom), []byte(reloadToggleTo), 1), 0o600); err != nil {
		return f, err
	}
	t0 := time.Now()
	out, reloadErr := exec.Command(daemonPath, "reload", "-config", cfgPath).CombinedOutput()
	f.ReloadMillis = ms(time.Since(t0))
	f.Answer = strings.TrimSpace(string(out))
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	f.Requests, f.Failed = int(ok.Load()+failed.Load()), int(failed.Load())
	if _, _, err := signIn(base); err == nil {
		f.SignInAfterOK = true
	}
	switch {
	case reloadErr != nil:
		return f, fmt.Errorf("spectroauthd reload: %v: %s", reloadErr, out)
	case f.Failed > 0:
		return f, fmt.Errorf("%d of %d /refresh requests failed during the reload (first: %v)", f.Failed, f.Requests, first.Load())
	case !f.SignInAfterOK:
		return f, fmt.Errorf("signing in after the reload failed")
	}
	return f, nil
}

// readyStarts starts the daemon n times and returns, for each start, the
// time from exec to the first 200 of /readyz (plugins up, provider
// discovered, sessions loaded), polled every millisecond. The daemon logs
// each start at logLevel into dir's starts-N.log. It also returns the CPU
// the daemon and its plugins had used by then, in ms. storeDir, when set,
// is the daemon's plugin content store, removed before the first start so
// that it verifies every binary from its source (the later ones run the
// copies it stored).
func readyStarts(daemonPath, cfgPath, base, dir, logLevel string, n int, storeDir string) (wall, cpu []float64, _ error) {
	client := &http.Client{Timeout: time.Second}
	if storeDir != "" {
		if err := os.RemoveAll(storeDir); err != nil {
			return nil, nil, err
		}
	}
	for i := range n {
		logPath := filepath.Join(dir, fmt.Sprintf("starts-%d.log", i+1))
		logf, err := os.Create(logPath)
		if err != nil {
			return nil, nil, err
		}
		cmd := exec.Command(daemonPath, "-config", cfgPath, "-log-level", logLevel, "-log-format", "json")
		cmd.Stdout, cmd.Stderr = logf, logf
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			logf.Close()
			return nil, nil, err
		}
		ready, ticks := time.Duration(0), int64(0)
		for time.Since(t0) < 30*time.Second {
			if res, err := client.Get(base + "/readyz"); err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					ready = time.Since(t0)
					own, children := cpuTicks(cmd.Process.Pid), childrenCPUTicks(cmd.Process.Pid)
					ticks = own + children
					fmt.Fprintf(os.Stderr, "start %d: ready after %s; CPU: daemon %d ms, plugins %d ms\n", i+1, ready.Round(time.Millisecond), own*1000/clockTicks, children*1000/clockTicks)
					break
				}
			}
			time.Sleep(time.Millisecond)
		}
		stopDaemon(cmd)
		logf.Close()
		if ready == 0 {
			log, _ := os.ReadFile(logPath)
			return nil, nil, fmt.Errorf("daemon not ready within 30s; its log:\n%s", log)
		}
		wall = append(wall, ms(ready))
		cpu = append(cpu, float64(ticks)*1000/clockTicks)
	}
	return wall, cpu, nil
}

// swapResolver rewrites the configuration's sign-in chain to the
// built-in resolver alone (or back to the two-plugin chain) and reloads
// the daemon onto it.
func swapResolver(daemonPath, cfgPath string, builtin bool) error {
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	from, to := claimsResolverYAML, builtinResolverYAML
	if !builtin {
		from, to = to, from
	}
	if !bytes.Contains(cfg, []byte(from)) {
		return fmt.Errorf("swapping the sign-in chain: %s has no %q", cfgPath, from)
	}
	if err := os.WriteFile(cfgPath, bytes.Replace(cfg, []byte(from), []byte(to), 1), 0o600); err != nil {
		return err
	}
	if out, err := exec.Command(daemonPath, "reload", "-config", cfgPath).CombinedOutput(); err != nil {
		return fmt.Errorf("reloading onto the resolver %q: %v: %s", to, err, out)
	}
	return nil
}

// verdict says whether got is within the target.
func verdict(ok bool) string {
	if ok {
		return "target met"
	}
	return "TARGET MISSED"
}
