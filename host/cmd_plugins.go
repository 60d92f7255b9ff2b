package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/pluginhost"
	"github.com/spectroauth/spectroauth/sdk"
)

// pluginsCmd is `spectroauthd plugins -config FILE`: it checks the digest of
// every configured plugin, starts it as the daemon would (describe,
// configure, validate the options of every use), prints what it offers and
// stops it. It exits 1 if any plugin could not be started.
func pluginsCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("plugins", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c commonFlags
	c.register(fs)
	timeout := fs.Duration("timeout", 30*time.Second, "how long starting the plugins may take")
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
	}
	log, cfg, code := c.loadRequired("plugins", stderr)
	if code != 0 {
		return code
	}
	if len(cfg.Plugins) == 0 {
		fmt.Fprintf(stdout, "%s declares no plugins\n", c.configPath)
		return 0
	}

	uses := map[string][]pluginhost.Use{}
	for _, u := range pluginhost.UsesFromConfig(cfg) {
		uses[u.Plugin] = append(uses[u.Plugin], u)
	}
	names := make([]string, 0, len(cfg.Plugins))
	for name := range cfg.Plugins {
		names = append(names, name)
	}
	slices.Sort(names)

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	reports := make([]pluginReport, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			reports[i] = inspectPlugin(ctx, name, cfg.Plugins[name], uses[name], pluginhost.Options{Logger: log, StartTimeout: *timeout})
		})
	}
	wg.Wait()

	failed := 0
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		r.print(stdout)
		if r.err != nil {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "%d of %d plugins cannot be started\n", failed, len(reports))
		return 1
	}
	return 0
}

// pluginReport is what `plugins` found out about one plugin.
type pluginReport struct {
	name    string
	command string
	digest  string // the result of the digest check
	uses    int
	status  pluginhost.PluginStatus
	started bool
	err     error
}

// inspectPlugin checks, starts, describes and stops one plugin.
func inspectPlugin(ctx context.Context, name string, p config.Plugin, uses []pluginhost.Use, opts pluginhost.Options) pluginReport {
	r := pluginReport{name: name, command: p.Command, uses: len(uses)}
	abs, got, err := pluginhost.Digest(p.Command)
	switch {
	case err != nil:
		r.digest = "not checked: " + err.Error()
		r.err = fmt.Errorf("plugins.%s.command: %w", name, err)
		return r
	case !strings.EqualFold(got, p.SHA256):
		r.digest = fmt.Sprintf("MISMATCH: the file has %s, the configuration says %s", got, strings.ToLower(p.SHA256))
		r.err = fmt.Errorf("plugins.%s.sha256: the binary does not match; if you trust it, run: spectroauthd plugin-digest %s", name, abs)
		return r
	}
	r.command, r.digest = abs, "ok "+got
	opts.Uses = uses
	h, err := pluginhost.Start(ctx, map[string]config.Plugin{name: p}, opts)
	if err != nil {
		r.err = err
		return r
	}
	r.started, r.status = true, h.Plugins()[0]
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = h.Close(cctx)
	return r
}

func (r pluginReport) print(w io.Writer) {
	line := func(k, v string) { fmt.Fprintf(w, "  %-13s %s\n", k+":", v) }
	list := func(s []string) string {
		if len(s) == 0 {
			return "-"
		}
		return strings.Join(s, ", ")
	}
	fmt.Fprintln(w, r.name)
	line("command", r.command)
	line("sha256", r.digest)
	if r.started {
		s := r.status
		line("version", fmt.Sprintf("%s (the plugin calls itself %q)", s.Version, s.PluginName))
		line("sdk", sdkLine(s.SDKVersion, s.ProtocolVersion))
		caps := make([]string, len(s.Capabilities))
		for i, c := range s.Capabilities {
			caps[i] = string(c)
		}
		line("capabilities", list(caps))
		if slices.Contains(s.Capabilities, sdk.CapabilityResolver) {
			line("resolvers", list(s.Resolvers))
		}
		if slices.Contains(s.Capabilities, sdk.CapabilityClusterStrategy) {
			line("strategies", list(s.Strategies))
			line("receives", receives(s))
		}
		line("status", fmt.Sprintf("ok: started, described and configured; options of %d uses checked", r.uses))
		return
	}
	line("status", "FAILED")
	for _, l := range strings.Split(r.err.Error(), "\n") {
		fmt.Fprintf(w, "    %s\n", l)
	}
}

// receives says which of the user's tokens each strategy of s gets.
func receives(s pluginhost.PluginStatus) string {
	if s.StrategyTokens == nil {
		return "every token (ID, access, Palette session): the plugin declares none, as one built before the declaration"
	}
	var out []string
	for _, name := range s.Strategies {
		got := "no token"
		if ts := s.StrategyTokens[name]; len(ts) > 0 {
			names := make([]string, len(ts))
			for i, t := range ts {
				names[i] = string(t)
			}
			got = strings.Join(names, " + ")
		}
		out = append(out, name+": "+got)
	}
	return strings.Join(out, "; ")
}

// pluginDigest is `spectroauthd plugin-digest PATH`: it checks the binary
// as the daemon will and prints the `sha256:` line for its configuration.
func pluginDigest(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("plugin-digest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, "usage: spectroauthd plugin-digest PATH") }
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	abs, digest, err := pluginhost.Digest(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "plugin-digest:", err)
		return 1
	}
	fmt.Fprintf(stderr, "# %s\n", abs)
	fmt.Fprintf(stdout, "sha256: %s\n", digest)
	return 0
}

// sdkLine says which SDK a plugin is built with and the protocol version
// negotiated with it.
func sdkLine(sdkVersion string, protocol int) string {
	if sdkVersion == "" {
		sdkVersion = "unknown (the plugin does not report it: an older SDK, or none)"
	}
	return fmt.Sprintf("%s, protocol version %d", sdkVersion, protocol)
}
