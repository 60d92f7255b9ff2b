package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

// measureSignIns signs in o.signIns times, one after the other, and
// returns the daemon's CPU (user and system, all threads) per sign-in:
// the whole flow, start to callback, through the two-plugin chain. The
// provider runs in this process, so its CPU is not counted.
func measureSignIns(o options, base string, pid int) (SignInResult, error) {
	r := SignInResult{SignIns: o.signIns, Chain: "claims-first (not found) -> claims"}
	// Warm up: connections, the chain's first calls.
	for range 10 {
		if _, _, err := signIn(base); err != nil {
			return r, fmt.Errorf("warm-up sign-in: %w", err)
		}
	}
	cpu0 := cpuTicks(pid)
	t0 := time.Now()
	for i := range o.signIns {
		if _, _, err := signIn(base); err != nil {
			return r, fmt.Errorf("sign-in %d: %w", i, err)
		}
	}
	wall := time.Since(t0)
	cpu := cpuTicks(pid) - cpu0
	r.CPUMillisPerOne = float64(cpu) * 1000 / clockTicks / float64(o.signIns)
	r.WallMillisPerOne = ms(wall) / float64(o.signIns)
	return r, nil
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

// builtinBaseline reloads the daemon onto the built-in resolver alone and
// measures sign-ins again.
func builtinBaseline(o options, daemonPath, cfgPath, base string, pid int) (SignInResult, error) {
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return SignInResult{}, err
	}
	cfg = bytes.Replace(cfg, []byte(claimsResolverYAML), []byte(builtinResolverYAML), 1)
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return SignInResult{}, err
	}
	if out, err := exec.Command(daemonPath, "reload", "-config", cfgPath).CombinedOutput(); err != nil {
		return SignInResult{}, fmt.Errorf("reloading onto the built-in resolver: %v: %s", err, out)
	}
	r, err := measureSignIns(o, base, pid)
	r.Chain = "builtin/emailLocalPartMatchingUserEntityName"
	return r, err
}

// verdict says whether got is within the target.
func verdict(ok bool) string {
	if ok {
		return "target met"
	}
	return "TARGET MISSED"
}
