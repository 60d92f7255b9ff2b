// Command loadbench measures the real daemon binary the way production runs
// it: a real OpenID provider (host/devprovider) in this process, the daemon
// and its plugins as child processes on loopback, a signed-in session, then a
// bounded load on /refresh. It reports requests/s, latency percentiles, CPU
// per request, resident memory, the number of calls that reached the
// provider, cold start, and the memory 10,000 live sessions add; and the
// figures of issue 13: the daemon CPU of one sign-in through a two-plugin
// resolver chain, exec to /readyz with three plugins (several starts), and
// a configuration reload that swaps a plugin under /refresh load (failed
// requests: must be none). It writes a table to stdout and the figures to
// a JSON file, and fails if a request failed during the reload.
//
//	go run ./host/loadbench -daemon bin/spectroauthd -plugins bin/plugins
//	go run ./host/loadbench -storage postgres   # replicas' storage, on a throwaway local server
//
// Everything binds to 127.0.0.1; every loop is bounded by a request count and
// a duration.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/devprovider"
	"github.com/spectroauth/spectroauth/host/internal/pgtest"
	"github.com/spectroauth/spectroauth/host/pluginhost"
	"github.com/spectroauth/spectroauth/host/session"
)

type options struct {
	daemon      string
	plugins     string
	connections int
	duration    time.Duration
	maxRequests int
	sessions    int
	storage     string
	out         string
	keep        bool
	starts      int
	// signIns is the sign-ins of each measured block, signInBlocks the
	// blocks of each resolver chain.
	signIns      int
	signInBlocks int
	// signInConcurrency is how many sign-ins at once the second, busy,
	// sign-in figure runs; 0 skips it.
	signInConcurrency int
	// logLevel is the daemon's -log-level.
	logLevel string
	// only, when not empty, are the parts to run (see parts).
	only map[string]bool
}

// parts are what -only may name.
var parts = []string{"refresh", "signin", "reload", "starts", "sessions"}

// runs reports whether the part is to run.
func (o options) runs(part string) bool { return len(o.only) == 0 || o.only[part] }

// Result is what one run measured; the JSON file holds it.
type Result struct {
	Date      time.Time `json:"date"`
	GoVersion string    `json:"goVersion"`
	CPUs      int       `json:"cpus"`
	// LoadAverage is the machine's 1-minute load average when the run
	// began (/proc/loadavg): above the CPU count, other work shares the
	// CPUs and every figure is inflated.
	LoadAverage     string     `json:"loadAverage"`
	Resolver        string     `json:"resolver"`
	Storage         string     `json:"storage"`
	PluginsAtStart  []string   `json:"pluginsAtStart"`
	ColdStartMillis float64    `json:"coldStartMillis"`
	ReadyMillis     float64    `json:"readyMillis"`
	RSSReadyMB      float64    `json:"rssReadyMB"`
	Load            LoadResult `json:"refreshLoad"`
	Sessions        int        `json:"sessions"`
	RSSWithSessions float64    `json:"rssReadyWithSessionsMB"`
	SessionsAddMB   float64    `json:"sessionsAddMB"`
	// ReadyWithSessionsMillis is exec to the first 200 of /readyz of the
	// start on Sessions live sessions (file storage: the store reads them
	// all before the daemon is ready), in ms.
	ReadyWithSessionsMillis float64 `json:"readyWithSessionsMillis,omitempty"`
	// ReadyStarts are exec-to-/readyz-200 times of separate starts (three
	// plugins), in ms; ReadyMedianMillis their median.
	ReadyStarts       []float64 `json:"readyStartsMillis"`
	ReadyMedianMillis float64   `json:"readyMedianMillis"`
	// ReadyStartsSessions is how many sessions the data directory
	// held during those starts (file storage): one, whatever the earlier
	// parts of the run left, so the figure does not depend on them.
	ReadyStartsSessions int `json:"readyStartsSessions,omitempty"`
	// ReadyCPU is, for each of those starts, the CPU (user and system) the
	// daemon and its plugin processes had used when /readyz first
	// answered 200, in ms: what a start costs whatever else runs on the
	// machine (clock-tick resolution, 10 ms). ReadyCPUMedianMillis is its
	// median.
	ReadyCPU             []float64 `json:"readyCPUMillis"`
	ReadyCPUMedianMillis float64   `json:"readyCPUMedianMillis"`
	// With file storage the first of those starts finds the plugin content
	// store empty (it is removed first) and verifies every binary from its
	// source; the others run the stored copies. Cold* are the first start's
	// figures, Warm* the medians of the others.
	ColdReadyMillis          float64 `json:"coldStoreReadyMillis,omitempty"`
	ColdReadyCPUMillis       float64 `json:"coldStoreReadyCPUMillis,omitempty"`
	WarmReadyMedianMillis    float64 `json:"warmStoreReadyMedianMillis,omitempty"`
	WarmReadyCPUMedianMillis float64 `json:"warmStoreReadyCPUMedianMillis,omitempty"`
	// SessionsFilesystem is the type of the file system the daemon's
	// data directory is on (file storage): a sign-in's durable session
	// write costs far more CPU on a disk (ext4) than on tmpfs.
	SessionsFilesystem string       `json:"sessionsFilesystem,omitempty"`
	SignIn             SignInResult `json:"signIn"`
	SignInBuiltin      SignInResult `json:"signInBuiltinResolver"`
	// SignInPluginCallsAdd is what the two plugin calls add to a sign-in's
	// daemon CPU, in ms: the median of the differences between the
	// chain's and the built-in resolver's blocks measured side by side;
	// SignInPluginCallsAddRange their smallest and largest.
	SignInPluginCallsAdd      float64    `json:"signInPluginCallsAddMillis"`
	SignInPluginCallsAddRange [2]float64 `json:"signInPluginCallsAddMillisRange"`
	// The same figures with -sign-in-concurrency sign-ins at once: the
	// cost per sign-in of a daemon busy signing people in.
	SignInBusy                    SignInResult  `json:"signInBusy,omitzero"`
	SignInBuiltinBusy             SignInResult  `json:"signInBuiltinResolverBusy,omitzero"`
	SignInBusyPluginCallsAdd      float64       `json:"signInBusyPluginCallsAddMillis,omitempty"`
	SignInBusyPluginCallsAddRange [2]float64    `json:"signInBusyPluginCallsAddMillisRange,omitzero"`
	Reload                        ReloadFigures `json:"reloadUnderLoad"`
}

// SignInResult is the cost of sign-ins through one resolver chain,
// measured in blocks of sign-ins one after the other.
type SignInResult struct {
	Chain string `json:"chain"`
	// SignIns is all the measured sign-ins, BlockSignIns those of a block.
	SignIns      int `json:"signIns"`
	BlockSignIns int `json:"signInsPerBlock"`
	// Concurrency is how many sign-ins ran at once in a block.
	Concurrency int `json:"concurrency"`
	// CPUMillisPerOne is the median over the blocks of the daemon's CPU
	// per sign-in, CPUMillisMin and CPUMillisMax their range, Blocks each
	// block's, in the order measured.
	CPUMillisPerOne float64   `json:"daemonCPUMillisPerSignIn"`
	CPUMillisMin    float64   `json:"daemonCPUMillisPerSignInMin"`
	CPUMillisMax    float64   `json:"daemonCPUMillisPerSignInMax"`
	Blocks          []float64 `json:"daemonCPUMillisPerSignInBlocks"`
	// WallMillisPerOne is the median over the blocks of the wall time of
	// a sign-in.
	WallMillisPerOne float64 `json:"wallMillisPerSignIn"`
	wall             []float64
}

// blocksFigure is the table's start of a sign-in row: the median CPU, the
// blocks and their range, the parenthesis left open.
func (r SignInResult) blocksFigure() string {
	return fmt.Sprintf("%.2f ms  (median of %d blocks of %d, %.2f–%.2f", r.CPUMillisPerOne, len(r.Blocks), r.BlockSignIns, r.CPUMillisMin, r.CPUMillisMax)
}

// targetFigure holds r's median against the sign-in target.
func (r SignInResult) targetFigure() string {
	return fmt.Sprintf("≤ %.0f ms: %s", targetSignInCPUMillis, verdict(r.CPUMillisPerOne <= targetSignInCPUMillis))
}

// ReloadFigures are a reload that restarts one plugin under /refresh load.
type ReloadFigures struct {
	Answer        string  `json:"answer"`
	ReloadMillis  float64 `json:"reloadMillis"`
	Requests      int     `json:"refreshRequests"`
	Failed        int     `json:"refreshFailed"`
	SignInAfterOK bool    `json:"signInAfterReloadOK"`
}

// LoadResult is the /refresh load.
type LoadResult struct {
	Connections      int     `json:"connections"`
	Requests         int     `json:"requests"`
	Errors           int     `json:"errors"`
	Seconds          float64 `json:"seconds"`
	RequestsPerSec   float64 `json:"requestsPerSecond"`
	P50Millis        float64 `json:"p50Millis"`
	P90Millis        float64 `json:"p90Millis"`
	P99Millis        float64 `json:"p99Millis"`
	MaxMillis        float64 `json:"maxMillis"`
	CPUMicrosPerReq  float64 `json:"cpuMicrosPerRequest"`
	PeakRSSMB        float64 `json:"peakRSSMB"`
	UpstreamCalls    int     `json:"upstreamIdPCalls"`
	UpstreamPerReq   float64 `json:"upstreamIdPCallsPerRequest"`
	PluginCallsTotal int     `json:"-"`
}

func main() {
	var o options
	flag.StringVar(&o.daemon, "daemon", "bin/spectroauthd", "the daemon binary")
	flag.StringVar(&o.plugins, "plugins", "bin/plugins", "directory of plugin binaries (the claims resolver is used when present)")
	flag.IntVar(&o.connections, "connections", 16, "concurrent connections")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured load duration (bound)")
	flag.IntVar(&o.maxRequests, "max-requests", 500000, "measured requests (bound)")
	flag.IntVar(&o.sessions, "sessions", 10000, "live sessions for the memory and start measurement")
	flag.StringVar(&o.storage, "storage", "file", "storage.type: file, or postgres on a throwaway PostgreSQL server (Debian's binaries; fsync off)")
	flag.StringVar(&o.out, "out", "bench-results.json", "JSON results file")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory")
	flag.IntVar(&o.starts, "starts", 7, "separate starts for the exec-to-ready figure")
	flag.IntVar(&o.signIns, "sign-ins", 200, "sign-ins of each block of the CPU-per-sign-in figure")
	flag.IntVar(&o.signInBlocks, "sign-in-blocks", 5, "blocks of sign-ins through each resolver chain (two-plugin, built-in), alternating")
	flag.IntVar(&o.signInConcurrency, "sign-in-concurrency", 4, "sign-ins at once for the busy daemon's sign-in figure, measured after the one-at-a-time figure (0 skips it)")
	flag.StringVar(&o.logLevel, "daemon-log-level", "warn", "the daemon's -log-level; debug logs where each start went (with -keep, in the temporary directory's starts-N.log)")
	only := flag.String("only", "", "comma-separated parts to run, of "+strings.Join(parts, ", ")+" (default all); e.g. -only signin,starts on a busy machine")
	flag.Parse()
	if *only != "" {
		o.only = map[string]bool{}
		for _, p := range strings.Split(*only, ",") {
			if !slices.Contains(parts, p) {
				fmt.Fprintf(os.Stderr, "loadbench: -only: %q is none of %s\n", p, strings.Join(parts, ", "))
				os.Exit(2)
			}
			o.only[p] = true
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "spectroauth-loadbench-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	daemonPath, err := filepath.Abs(o.daemon)
	if err != nil {
		return err
	}

	// The daemon's port must be known before the provider (its redirect URI).
	port, err := freePort()
	if err != nil {
		return err
	}
	base := "http://127.0.0.1:" + port
	opListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	issuer := "http://" + opListener.Addr().String()
	op, err := devprovider.New(devprovider.Config{
		Issuer:          issuer,
		Clients:         []devprovider.Client{{ID: "loadbench", Secret: "loadbench-secret", RedirectURIs: []string{base + "/api/auth/spectrocloud/handler/frame"}}},
		Users:           []devprovider.User{{Username: "alice", Email: "alice@example.com", EmailVerified: ptr(true), GivenName: "Alice", FamilyName: "Bench", Groups: []string{"dev", "ops"}}},
		AutoApprove:     "alice",
		RefreshTokens:   true,
		IDTokenLifetime: time.Hour,
		AllowInsecure:   true,
	})
	if err != nil {
		return err
	}
	opServer := &http.Server{Handler: op, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = opServer.Serve(opListener) }()
	defer opServer.Close()

	res := Result{Date: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Sessions: o.sessions, Storage: o.storage, LoadAverage: loadAverage()}
	cfgPath := filepath.Join(dir, "config.yaml")
	dataDir := filepath.Join(dir, "data")
	var storageYAML string
	switch o.storage {
	case "file":
		storageYAML = fmt.Sprintf("storage:\n  type: file\n  path: %s\n", dataDir)
	case "postgres":
		bin, why := pgtest.FindBin()
		if bin == "" {
			return errors.New(why)
		}
		pg, err := pgtest.Start(bin)
		if err != nil {
			return err
		}
		defer pg.Stop()
		dsn, err := pg.CreateDatabase(context.Background())
		if err != nil {
			return err
		}
		storageYAML = fmt.Sprintf("storage:\n  type: postgres\n  postgresUrl: %q\n", dsn)
		// Sessions live in the database, not in the daemon's memory.
		o.sessions, res.Sessions = 0, 0
	default:
		return fmt.Errorf("-storage: file or postgres, not %q", o.storage)
	}
	resolver, pluginNames, err := writeConfig(cfgPath, base, port, issuer, storageYAML, o.plugins)
	if err != nil {
		return err
	}
	res.Resolver, res.PluginsAtStart = resolver, pluginNames

	// Cold start: process start to the first 200 on the JWKS route.
	d, cold, err := startDaemon(daemonPath, cfgPath, base, filepath.Join(dir, "daemon.log"), o.logLevel)
	if err != nil {
		return err
	}
	res.ColdStartMillis = ms(cold)
	// Ready: plugins started and configured, providers discovered.
	if ready, err := waitOK(base+"/readyz", 30*time.Second); err != nil {
		stopDaemon(d)
		return err
	} else {
		res.ReadyMillis = ms(cold + ready)
	}
	res.RSSReadyMB = settledRSS(d.Process.Pid)

	jar, cookie, err := signIn(base)
	if err != nil {
		stopDaemon(d)
		return fmt.Errorf("signing in: %w", err)
	}
	_ = jar
	if o.runs("refresh") {
		op.ResetCounters()
		res.Load, err = load(o, base, cookie, d.Process.Pid)
		c := op.Counters()
		res.Load.UpstreamCalls = int(c.Discovery + c.Authorize + c.Token + c.Refresh + c.JWKS + c.Userinfo + c.Revocation + c.Introspection)
		if res.Load.Requests > 0 {
			res.Load.UpstreamPerReq = float64(res.Load.UpstreamCalls) / float64(res.Load.Requests)
		}
	}
	if err == nil && o.runs("signin") {
		if o.storage == "file" {
			res.SessionsFilesystem = filesystemOf(dataDir)
		}
		// The built-in resolver's blocks (swapped in by reloads) between
		// the chain's: what the two plugin calls add.
		withChain := slices.Contains(pluginNames, "claims")
		res.SignIn, res.SignInBuiltin, err = measureSignIns(o, daemonPath, cfgPath, base, d.Process.Pid, withChain, 1)
		if len(res.SignInBuiltin.Blocks) > 0 {
			res.SignInPluginCallsAdd, res.SignInPluginCallsAddRange[0], res.SignInPluginCallsAddRange[1] = pluginCallsAdd(res.SignIn, res.SignInBuiltin)
		}
		if err == nil && o.signInConcurrency > 1 {
			res.SignInBusy, res.SignInBuiltinBusy, err = measureSignIns(o, daemonPath, cfgPath, base, d.Process.Pid, withChain, o.signInConcurrency)
			if len(res.SignInBuiltinBusy.Blocks) > 0 {
				res.SignInBusyPluginCallsAdd, res.SignInBusyPluginCallsAddRange[0], res.SignInBusyPluginCallsAddRange[1] = pluginCallsAdd(res.SignInBusy, res.SignInBuiltinBusy)
			}
		}
	}
	if err == nil && o.runs("reload") {
		res.Reload, err = reloadUnderLoad(daemonPath, cfgPath, base, cookie)
	}
	stopDaemon(d)
	if err != nil {
		return err
	}
	if len(pluginNames) > 0 && o.runs("starts") {
		storeDir := ""
		if o.storage == "file" {
			storeDir = filepath.Join(dataDir, pluginhost.StoreDirName)
			// The store reads every session before the daemon is ready:
			// the sign-in part leaves thousands, which would make this
			// figure depend on which parts ran before it.
			if err := keepOneSession(dataDir); err != nil {
				return fmt.Errorf("clearing the sessions before the starts: %w", err)
			}
			res.ReadyStartsSessions = 1
		}
		if res.ReadyStarts, res.ReadyCPU, err = readyStarts(daemonPath, cfgPath, base, dir, o.logLevel, o.starts, storeDir); err != nil {
			return err
		}
		res.ReadyMedianMillis = median(res.ReadyStarts)
		res.ReadyCPUMedianMillis = median(res.ReadyCPU)
		if storeDir != "" && len(res.ReadyStarts) > 1 {
			res.ColdReadyMillis, res.ColdReadyCPUMillis = res.ReadyStarts[0], res.ReadyCPU[0]
			res.WarmReadyMedianMillis, res.WarmReadyCPUMedianMillis = median(res.ReadyStarts[1:]), median(res.ReadyCPU[1:])
		}
	}

	// Memory of live sessions, and the start on them: copy the signed-in
	// session until there are N (whatever the sign-in part left) and
	// start again on that data directory.
	if o.sessions > 0 && o.runs("sessions") {
		if err := keepOneSession(dataDir); err != nil {
			return fmt.Errorf("seeding sessions: %w", err)
		}
		if err := seedSessions(dataDir, o.sessions); err != nil {
			return fmt.Errorf("seeding sessions: %w", err)
		}
		d, cold, err := startDaemon(daemonPath, cfgPath, base, filepath.Join(dir, "daemon2.log"), o.logLevel)
		if err != nil {
			return err
		}
		ready, err := waitOK(base+"/readyz", 30*time.Second)
		if err != nil {
			stopDaemon(d)
			return err
		}
		res.ReadyWithSessionsMillis = ms(cold + ready)
		res.RSSWithSessions = settledRSS(d.Process.Pid)
		res.SessionsAddMB = res.RSSWithSessions - res.RSSReadyMB
		stopDaemon(d)
	}

	printTable(os.Stdout, res)
	b, _ := json.MarshalIndent(res, "", "  ")
	return os.WriteFile(o.out, append(b, '\n'), 0o644)
}

func ptr[T any](v T) *T { return &v }

// median is the median of v (the upper one of an even count).
func median(v []float64) float64 {
	sorted := slices.Sorted(slices.Values(v))
	return sorted[len(sorted)/2]
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p, nil
}

// writeConfig uses the claims resolver plugin when it is built, else the
// built-in resolver, and declares up to three plugins so cold start includes
// starting them.
func writeConfig(path, base, port, issuer, storageYAML, pluginDir string) (string, []string, error) {
	var b strings.Builder
	// Metrics on, as production runs it: the load pays for them.
	metricsPort, err := freePort()
	if err != nil {
		return "", nil, err
	}
	fmt.Fprintf(&b, "server:\n  listen: 127.0.0.1:%s\n  metricsListen: 127.0.0.1:%s\n  baseUrl: %s\n", port, metricsPort, base)
	// The sign-in figure signs in hundreds of times from one address.
	b.WriteString("  rateLimits:\n    signInsPerClientPerMinute: 100000\n    signInBurst: 10000\n    codeExchangesPerSecond: 10000\n")
	fmt.Fprintf(&b, "app:\n  baseUrl: %s\n", base)
	resolver := "builtin/emailLocalPartMatchingUserEntityName"
	resolverYAML := builtinResolverYAML
	var names []string
	var plugins strings.Builder
	// Three plugins: the two steps of the sign-in chain (two processes of
	// the claims binary) and a cluster strategy.
	for _, p := range []struct{ name, binary, config string }{
		{"claims-first", "claims", claimsFirstConfigYAML},
		{"claims", "claims", claimsConfigYAML},
		{"oidc-cluster", "oidc-cluster", "    config: {}\n"},
	} {
		bin := filepath.Join(pluginDir, p.binary)
		sum, err := fileSHA256(bin)
		if err != nil {
			continue // not built: measured without it
		}
		abs, _ := filepath.Abs(bin)
		fmt.Fprintf(&plugins, "  %s:\n    command: %s\n    sha256: %s\n%s", p.name, abs, sum, p.config)
		names = append(names, p.name)
	}
	if slices.Contains(names, "claims") {
		resolver = "claims-first/" + claimsResolverName + " (not found), claims/" + claimsResolverName
		resolverYAML = claimsResolverYAML
	}
	fmt.Fprintf(&b, `auth:
  providers:
    spectrocloud:
      development:
        issuer: %s
        allowInsecureIssuer: true
        clientId: loadbench
        clientSecret: loadbench-secret
        scopes: [openid, profile, email, offline_access]
        signIn:
          resolvers:
%s`, issuer, resolverYAML)
	if plugins.Len() > 0 {
		b.WriteString("plugins:\n" + plugins.String())
	}
	b.WriteString(storageYAML)
	return resolver, names, os.WriteFile(path, []byte(b.String()), 0o600)
}

// builtinResolverYAML is the chain of the built-in resolver alone.
const builtinResolverYAML = "            - plugin: builtin\n              resolver: emailLocalPartMatchingUserEntityName\n"

// The claims plugin's resolver as the load runs it: a CEL mapping from the
// ID token's claims, evaluated in the plugin on every resolution.
const (
	claimsResolverName = "mapping"
	claimsConfigYAML   = `    config:
      mappings:
        bench:
          userEntityRef: '"user:default/" + claims.email.split("@")[0]'
          ownershipEntityRefs: 'claims.?groups.orValue([]).map(g, "group:default/" + g)'
`
	claimsResolverYAML = `            - plugin: claims-first
              resolver: mapping
              options:
                mapping: partners
            - plugin: claims
              resolver: mapping
              options:
                mapping: bench
`
	// claimsFirstConfigYAML is the chain's first step: it applies to
	// partners only, so for the benchmark's user it answers "not found"
	// and the chain calls the second plugin. Its call timeout is what the
	// reload figure changes (reloadToggle), which restarts it.
	claimsFirstConfigYAML = `    callTimeout: 2s
    config:
      mappings:
        partners:
          match: 'claims.?email.orValue("").endsWith("@partner.example")'
          userEntityRef: '"user:partner/" + claims.email.split("@")[0]'
`
	reloadToggleFrom, reloadToggleTo = "    callTimeout: 2s\n", "    callTimeout: 3s\n"
)

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func startDaemon(bin, cfg, base, logPath, logLevel string) (*exec.Cmd, time.Duration, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, 0, err
	}
	cmd := exec.Command(bin, "-config", cfg, "-log-level", logLevel, "-log-format", "json")
	cmd.Stdout, cmd.Stderr = logf, logf
	client := &http.Client{Timeout: time.Second}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	deadline := t0.Add(30 * time.Second)
	for time.Now().Before(deadline) {
		res, err := client.Get(base + "/api/auth/.well-known/jwks.json")
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return cmd, time.Since(t0), nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	stopDaemon(cmd)
	log, _ := os.ReadFile(logPath)
	return nil, 0, fmt.Errorf("daemon not ready within 30s; its log:\n%s", log)
}

// waitOK polls u until it answers 200 and returns how long that took.
func waitOK(u string, limit time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: time.Second}
	t0 := time.Now()
	for time.Since(t0) < limit {
		if res, err := client.Get(u); err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return time.Since(t0), nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return 0, fmt.Errorf("%s: no 200 within %s", u, limit)
}

func stopDaemon(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// signIn runs the popup flow with a cookie jar and returns the refresh cookie.
func signIn(base string) (*cookiejar.Jar, *http.Cookie, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	q := url.Values{"scope": {"openid profile email"}, "origin": {base}, "flow": {"popup"}, "env": {"development"}}
	res, err := c.Get(base + "/api/auth/spectrocloud/start?" + q.Encode())
	if err != nil {
		return nil, nil, err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "backstageIdentity") {
		return nil, nil, fmt.Errorf("sign-in did not complete (%d): %.400s", res.StatusCode, body)
	}
	u, _ := url.Parse(base + "/api/auth/spectrocloud/refresh")
	for _, ck := range jar.Cookies(u) {
		if ck.Name == "spectrocloud-refresh-token" {
			return jar, ck, nil
		}
	}
	return nil, nil, errors.New("no refresh cookie after sign-in")
}

// refresh makes one /refresh request of Backstage's app (target) with the
// session cookie, and returns how long it took; any status but 200 is an
// error.
func refresh(client *http.Client, target, base string, cookie *http.Cookie) (time.Duration, error) {
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	req.Header.Set("Origin", base)
	req.AddCookie(cookie)
	t0 := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", res.StatusCode)
	}
	return time.Since(t0), nil
}

func load(o options, base string, cookie *http.Cookie, pid int) (LoadResult, error) {
	r := LoadResult{Connections: o.connections}
	tr := &http.Transport{MaxIdleConns: o.connections, MaxIdleConnsPerHost: o.connections, MaxConnsPerHost: o.connections, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	target := base + "/api/auth/spectrocloud/refresh?optional&scope=openid%20profile%20email&env=development"
	one := func() (time.Duration, error) { return refresh(client, target, base, cookie) }
	// Warm up: connections, caches, the resolver's first call.
	warm := time.Now().Add(2 * time.Second)
	for time.Now().Before(warm) {
		if _, err := one(); err != nil {
			return r, fmt.Errorf("warm-up refresh: %w", err)
		}
	}

	// Reset the process's peak RSS so VmHWM measures the load, not start-up
	// (when plugin binaries are mapped to be hashed).
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
	var issued, errs atomic.Int64
	lat := make([][]time.Duration, o.connections)
	cpu0 := cpuTicks(pid)
	start := time.Now()
	stop := start.Add(o.duration)
	var wg sync.WaitGroup
	for w := range o.connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, o.maxRequests/o.connections+1)
			for time.Now().Before(stop) && issued.Add(1) <= int64(o.maxRequests) {
				d, err := one()
				if err != nil {
					errs.Add(1)
					continue
				}
				mine = append(mine, d)
			}
			lat[w] = mine
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTicks(pid) - cpu0

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	r.Requests, r.Errors, r.Seconds = len(all), int(errs.Load()), elapsed.Seconds()
	if len(all) == 0 {
		return r, errors.New("no successful request")
	}
	pct := func(p float64) float64 { return ms(all[min(len(all)-1, int(p*float64(len(all))))]) }
	r.RequestsPerSec = float64(len(all)) / elapsed.Seconds()
	r.P50Millis, r.P90Millis, r.P99Millis, r.MaxMillis = pct(0.50), pct(0.90), pct(0.99), ms(all[len(all)-1])
	r.CPUMicrosPerReq = float64(cpu) * 1e6 / float64(clockTicks) / float64(len(all))
	r.PeakRSSMB = rssMB(pid, "VmHWM")
	return r, nil
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// cpuTicks is user+system CPU time of pid, in clock ticks.
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may contain spaces).
	s := string(b)
	s = s[strings.LastIndexByte(s, ')')+2:]
	f := strings.Fields(s)
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

// childrenCPUTicks is the user+system CPU time of pid's child processes
// that still run, in clock ticks.
func childrenCPUTicks(pid int) int64 {
	entries, _ := os.ReadDir("/proc")
	var sum int64
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			sum += cpuTicks(child)
		}
	}
	return sum
}

// rssMB reads a memory field (VmRSS, VmHWM) of /proc/pid/status in MB.
func rssMB(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// settledRSS is the smallest resident size of an idle process over two
// seconds, sampled every 50 ms: the steady state, not the garbage of a
// moment that the runtime has not handed back yet.
func settledRSS(pid int) float64 {
	low := rssMB(pid, "VmRSS")
	for range 40 {
		time.Sleep(50 * time.Millisecond)
		low = min(low, rssMB(pid, "VmRSS"))
	}
	return low
}

// The file store keeps its sessions in a journal (<data>/sessions/journal);
// daemons before it kept one file per session. seedSessions and
// keepOneSession write what the daemon under test reads: the journal
// through the session package, or files when the directory holds files
// only (an earlier daemon's, for an A/B comparison).

// seedSessions adds copies of the one session in the store under dataDir,
// under new keys, until there are n: in the journal with one append and
// one sync, so that the start measured then loads a journal rather than
// importing files.
func seedSessions(dataDir string, n int) error {
	sdir := filepath.Join(dataDir, "sessions")
	if legacySessionFiles(sdir) {
		return seedSessionFiles(sdir, n)
	}
	var tmpl *session.Session
	if _, _, err := session.ReadFileSessions(dataDir, time.Now(), hclog.NewNullLogger(), func(_ session.Key, s *session.Session) error {
		tmpl = s
		return nil
	}); err != nil {
		return err
	}
	if tmpl == nil {
		return errors.New("no session to copy in " + sdir)
	}
	entries := make([]session.Entry, 0, n-1)
	for range n - 1 {
		h, err := session.NewHandle()
		if err != nil {
			return err
		}
		k, err := session.KeyOf(h)
		if err != nil {
			return err
		}
		entries = append(entries, session.Entry{Key: k, Session: tmpl})
	}
	s, err := openSessions(dataDir)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.PutMany(context.Background(), entries)
}

// keepOneSession leaves one session (any) in the store under dataDir, so
// what follows starts on a known number of sessions: the sessions
// directory goes (one journal to unlink, not a file per session) and a
// fresh journal gets the one session.
func keepOneSession(dataDir string) error {
	sdir := filepath.Join(dataDir, "sessions")
	if legacySessionFiles(sdir) {
		return keepOneSessionFile(sdir)
	}
	var keep *session.Entry
	if _, _, err := session.ReadFileSessions(dataDir, time.Now(), hclog.NewNullLogger(), func(k session.Key, s *session.Session) error {
		if keep == nil {
			keep = &session.Entry{Key: k, Session: s}
		}
		return nil
	}); err != nil {
		return err
	}
	if keep == nil {
		return errors.New("no session in " + sdir)
	}
	if err := os.RemoveAll(sdir); err != nil {
		return err
	}
	s, err := openSessions(dataDir)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Put(context.Background(), keep.Key, keep.Session)
}

// openSessions opens the file store under dataDir, as `spectroauthd
// sessions` does, with the daemon stopped.
func openSessions(dataDir string) (*session.FileStore, error) {
	return session.OpenFileStore(dataDir, session.Options{SweepInterval: -1, CatchUpInterval: -1, Logger: hclog.NewNullLogger()})
}

// legacySessionFiles reports whether sdir holds session files and no
// journal: an earlier daemon's layout.
func legacySessionFiles(sdir string) bool {
	entries, err := os.ReadDir(sdir)
	if err != nil {
		return false
	}
	files := false
	for _, e := range entries {
		switch name := e.Name(); {
		case name == "journal":
			return false
		case strings.HasSuffix(name, ".json") && !strings.HasPrefix(name, "."):
			files = true
		}
	}
	return files
}

// seedSessionFiles copies the one session file in dir until there are n.
func seedSessionFiles(dir string, n int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var tmpl []byte
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			if tmpl, err = os.ReadFile(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
			break
		}
	}
	if tmpl == nil {
		return errors.New("no session file to copy")
	}
	for i := 1; i < n; i++ {
		var k [32]byte
		_, _ = rand.Read(k[:])
		if err := os.WriteFile(filepath.Join(dir, hex.EncodeToString(k[:])+".json"), tmpl, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// keepOneSessionFile removes the session files in dir but one (the first
// by name).
func keepOneSessionFile(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	kept := false
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if !kept {
			kept = true
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	if !kept {
		return errors.New("no session file in " + dir)
	}
	return nil
}

// loadAverage is the 1-minute load average of /proc/loadavg, or "?".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// filesystemOf is the type of the file system path is on, from the
// longest mount point of /proc/self/mountinfo that holds it, or "?".
func filesystemOf(path string) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "?"
	}
	fsType, longest := "?", -1
	for _, line := range strings.Split(string(b), "\n") {
		// ID parent major:minor root mountpoint options [optional...] - type source options
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 0 || sep+1 >= len(f) {
			continue
		}
		mp := f[4]
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > longest {
			fsType, longest = f[sep+1], len(mp)
		}
	}
	return fsType
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func printTable(w io.Writer, r Result) {
	l := r.Load
	fmt.Fprintf(w, "spectroauth load benchmark  %s  %s  %d CPUs, load average %s at the start\n", r.Date.Format(time.RFC3339), r.GoVersion, r.CPUs, r.LoadAverage)
	fsNote := ""
	if r.SessionsFilesystem != "" {
		fsNote = " on " + r.SessionsFilesystem
	}
	fmt.Fprintf(w, "resolver %s; plugins at start: %s; storage %s%s\n\n", r.Resolver, strings.Join(r.PluginsAtStart, ", "), r.Storage, fsNote)
	var rows [][2]string
	if l.Requests > 0 {
		rows = append(rows, [][2]string{
			{"/refresh requests/s", fmt.Sprintf("%.0f  (%d connections, %d requests, %d errors, %.1fs)", l.RequestsPerSec, l.Connections, l.Requests, l.Errors, l.Seconds)},
			{"/refresh latency p50 / p90 / p99 / max", fmt.Sprintf("%.2f / %.2f / %.2f / %.2f ms", l.P50Millis, l.P90Millis, l.P99Millis, l.MaxMillis)},
			{"daemon CPU per request", fmt.Sprintf("%.0f µs", l.CPUMicrosPerReq)},
			{"upstream IdP calls during the load", fmt.Sprintf("%d (%.4f per request)", l.UpstreamCalls, l.UpstreamPerReq)},
		}...)
	}
	rows = append(rows, [][2]string{
		{"cold start to first JWKS 200", fmt.Sprintf("%.1f ms", r.ColdStartMillis)},
		{"cold start to ready (plugins up)", fmt.Sprintf("%.1f ms", r.ReadyMillis)},
		{"RSS ready / peak under load", fmt.Sprintf("%.1f MB / %.1f MB", r.RSSReadyMB, l.PeakRSSMB)},
	}...)
	if r.SignInBuiltin.SignIns > 0 {
		rows = append(rows, [2]string{"daemon CPU per sign-in (built-in resolver)", fmt.Sprintf("%s; swapped by reloads between the chain's blocks; the plugin calls add %.2f ms, %.2f–%.2f)",
			r.SignInBuiltin.blocksFigure(), r.SignInPluginCallsAdd, r.SignInPluginCallsAddRange[0], r.SignInPluginCallsAddRange[1])})
	}
	if r.SignIn.SignIns > 0 {
		rows = append(rows, [2]string{"daemon CPU per sign-in (two-plugin chain)", fmt.Sprintf("%s; %.1f ms wall each; %s)",
			r.SignIn.blocksFigure(), r.SignIn.WallMillisPerOne, r.SignIn.targetFigure())})
	}
	if r.SignInBuiltinBusy.SignIns > 0 {
		rows = append(rows, [2]string{fmt.Sprintf("  the same, %d sign-ins at once (built-in)", r.SignInBuiltinBusy.Concurrency), fmt.Sprintf("%s; the plugin calls add %.2f ms, %.2f–%.2f)",
			r.SignInBuiltinBusy.blocksFigure(), r.SignInBusyPluginCallsAdd, r.SignInBusyPluginCallsAddRange[0], r.SignInBusyPluginCallsAddRange[1])})
	}
	if r.SignInBusy.SignIns > 0 {
		rows = append(rows, [2]string{fmt.Sprintf("  the same, %d sign-ins at once (two-plugin chain)", r.SignInBusy.Concurrency), fmt.Sprintf("%s; %s)",
			r.SignInBusy.blocksFigure(), r.SignInBusy.targetFigure())})
	}
	if len(r.ReadyStarts) > 0 {
		sessions := ""
		if r.ReadyStartsSessions > 0 {
			sessions = fmt.Sprintf(", %d session on disk", r.ReadyStartsSessions)
		}
		rows = append(rows, [2]string{fmt.Sprintf("exec to /readyz, %d plugins%s (median)", len(r.PluginsAtStart), sessions), fmt.Sprintf("%.1f ms  (%d starts: %v; < %.0f ms: %s)",
			r.ReadyMedianMillis, len(r.ReadyStarts), r.ReadyStarts, targetReadyMillis, verdict(r.ReadyMedianMillis < targetReadyMillis))},
			[2]string{"CPU to /readyz, daemon + plugins (median)", fmt.Sprintf("%.0f ms  (%v)", r.ReadyCPUMedianMillis, r.ReadyCPU)})
		if r.WarmReadyMedianMillis > 0 {
			rows = append(rows, [2]string{"  first start, plugin store empty", fmt.Sprintf("%.1f ms, CPU %.0f ms", r.ColdReadyMillis, r.ColdReadyCPUMillis)},
				[2]string{"  later starts, from the store (median)", fmt.Sprintf("%.1f ms, CPU %.0f ms", r.WarmReadyMedianMillis, r.WarmReadyCPUMedianMillis)})
		}
	}
	if r.Reload.Answer != "" {
		rows = append(rows, [2]string{"reload under /refresh load", fmt.Sprintf("%d of %d requests failed, reload took %.0f ms: %s",
			r.Reload.Failed, r.Reload.Requests, r.Reload.ReloadMillis, r.Reload.Answer)})
	}
	if r.Sessions > 0 {
		rows = append(rows, [2]string{fmt.Sprintf("RSS with %d live sessions", r.Sessions), fmt.Sprintf("%.1f MB (+%.1f MB)", r.RSSWithSessions, r.SessionsAddMB)})
		if r.ReadyWithSessionsMillis > 0 {
			rows = append(rows, [2]string{fmt.Sprintf("exec to /readyz with %d live sessions", r.Sessions), fmt.Sprintf("%.1f ms  (one start)", r.ReadyWithSessionsMillis)})
		}
	}
	for _, row := range rows {
		fmt.Fprintf(w, "  %-54s %s\n", row[0], row[1])
	}
}
