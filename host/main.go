// Command spectroauthd is the spectroauth daemon: Backstage sign-in with
// SpectroCloud, and per-user Kubernetes credentials.
//
//	spectroauthd [-config FILE]              run (embedded development defaults without -config)
//	spectroauthd version                     print the version and commit this binary was built from
//	spectroauthd check-config -config FILE   validate a configuration and exit
//	spectroauthd plugins -config FILE        start, describe and stop the configured plugins
//	spectroauthd reload -config FILE         have the running daemon reload its configuration
//	spectroauthd plugin reload -config FILE NAME
//	                                         write plugin NAME's new digest into FILE and reload
//	spectroauthd doctor -config FILE         check a deployment live: provider, storage, plugins, Palette
//	spectroauthd plugin-digest PATH          print the sha256: line of a plugin binary
//	spectroauthd plugin test -plugin PATH [-cases FILE]
//	                                         run the plugin conformance suite against a binary
//	spectroauthd storage-copy -config FILE -from PATH
//	                                         copy a file-storage data directory into PostgreSQL
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/mattn/go-isatty"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/daemon"
	"github.com/spectroauth/spectroauth/host/kube/kubecli"
	"github.com/spectroauth/spectroauth/host/pluginhost"
)

// version and commit are stamped by the linker: make build and make release
// pass -X main.version=$(git describe --tags --always --dirty, or the VERSION
// file) and -X main.commit=$(git rev-parse HEAD).
var (
	version = "dev"
	commit  = ""
)

// build is what /healthz and the build_info metric say runs.
func build() daemon.Build { return daemon.Build{Version: version, Commit: commit} }

func main() {
	// Before anything reads a secret: no other process of this user (a
	// plugin among them) may read the daemon's memory or environment.
	if err := pluginhost.ProtectProcess(); err != nil {
		fmt.Fprintln(os.Stderr, "spectroauthd: warning:", err)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// commonFlags are accepted by every subcommand.
type commonFlags struct {
	configPath string
	logFormat  string
	logLevel   string
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	usage := "configuration file (YAML); required"
	if fs.Name() == "spectroauthd" { // the daemon itself
		usage = "configuration file (YAML); without it, the embedded development defaults"
	}
	fs.StringVar(&c.configPath, "config", "", usage)
	fs.StringVar(&c.logFormat, "log-format", "auto", "log format: text, json, or auto (text on a terminal, else json)")
	level := "info"
	if quietCommands[fs.Name()] {
		level = "warn"
	}
	fs.StringVar(&c.logLevel, "log-level", level, "log level: trace, debug, info, warn, error")
}

// quietCommands log warnings and errors only unless -log-level says
// otherwise: their output, not their log, is the point (plugins' own
// start-up chatter, for one).
var quietCommands = map[string]bool{"plugins": true, "storage-copy": true, "doctor": true}

// load is what a command that reads a configuration starts with: its
// logger and the configuration. When either fails it prints why, prefixed
// with the command's name, and returns the exit status: 2 for a bad log
// flag, 1 for a configuration that is not valid; else 0.
func (c *commonFlags) load(name string, stderr io.Writer) (hclog.Logger, *config.Config, int) {
	log, err := c.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return nil, nil, 2
	}
	cfg, err := config.Load(c.configPath)
	if err != nil {
		fmt.Fprintf(stderr, "%s is not valid:\n%v\n", c.configPath, err)
		return nil, nil, 1
	}
	return log, cfg, 0
}

// loadRequired is load for commands that need a configuration file: without
// -config it says so and answers exit status 2.
func (c *commonFlags) loadRequired(name string, stderr io.Writer) (hclog.Logger, *config.Config, int) {
	if c.configPath == "" {
		fmt.Fprintf(stderr, "%s: -config FILE is required\n", name)
		return nil, nil, 2
	}
	return c.load(name, stderr)
}

func (c *commonFlags) logger(stderr io.Writer) (hclog.Logger, error) {
	level := hclog.LevelFromString(c.logLevel)
	if level == hclog.NoLevel {
		return nil, fmt.Errorf("-log-level %q: want trace, debug, info, warn or error", c.logLevel)
	}
	var jsonFormat bool
	switch c.logFormat {
	case "json":
		jsonFormat = true
	case "text":
	case "auto":
		f, ok := stderr.(*os.File)
		jsonFormat = !ok || !isatty.IsTerminal(f.Fd())
	default:
		return nil, fmt.Errorf("-log-format %q: want text, json or auto", c.logFormat)
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "spectroauthd",
		Level:      level,
		Output:     stderr,
		JSONFormat: jsonFormat,
		Color:      hclog.AutoColor,
	}), nil
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			return versionCmd(args[1:], stdout, stderr)
		case "check-config":
			return checkConfig(args[1:], stdout, stderr)
		case "plugins":
			return pluginsCmd(args[1:], stdout, stderr)
		case "reload":
			return reloadCmd(args[1:], stdout, stderr)
		case "doctor":
			return doctorCmd(args[1:], stdout, stderr)
		case "plugin-digest":
			return pluginDigest(args[1:], stdout, stderr)
		case "plugin":
			if len(args) > 1 && args[1] == "reload" {
				return pluginReloadCmd(args[2:], stdout, stderr)
			}
			return pluginTestCmd(args[1:], stdout, stderr)
		case "storage-copy":
			return storageCopyCmd(args[1:], stdout, stderr)
		case "sessions":
			return sessionsCmd(args[1:], stdout, stderr)
		case "kube-credential":
			return kubeCommand(kubecli.KubeCredential, args[1:], stdout, stderr)
		case "kubeconfig":
			return kubeCommand(kubecli.Kubeconfig, args[1:], stdout, stderr)
		case "login":
			return kubeCommand(kubecli.Login, args[1:], stdout, stderr)
		case "logout":
			return kubeCommand(kubecli.Logout, args[1:], stdout, stderr)
		case "help", "-h", "-help", "--help":
			usage(stdout)
			return 0
		}
	}
	return serve(args, stderr)
}

func usage(w io.Writer) {
	fmt.Fprint(w, `spectroauthd: Backstage sign-in with SpectroCloud, and per-user Kubernetes credentials.

Usage:
  spectroauthd [-config FILE] [-log-format text|json] [-log-level LEVEL]
      Run the daemon. Without -config it runs on its embedded development
      defaults: a development OpenID provider on http://localhost:7007.
  spectroauthd version
      Print the version and commit this binary was built from.
  spectroauthd check-config -config FILE [-print]
      Validate a configuration; every problem is printed with its key path.
      -print shows the effective configuration with secrets redacted.
  spectroauthd plugins -config FILE
      Check, start, describe and stop every configured plugin: digest,
      version, capabilities, resolvers and strategies.
  spectroauthd doctor -config FILE [-timeout 2m]
      Check a deployment live, one line per check with what to fix: the
      provider's discovery, issuer, JWKS, client authentication and clock;
      the storage; every plugin; every Palette source's API key, projects
      and clusters with OIDC. Exits 1 if any check fails.
  spectroauthd reload -config FILE | -socket PATH [-timeout 2m]
      Have the running daemon reload its configuration (as SIGHUP does),
      through its admin socket (storage.path/admin.sock), and print what it
      did: "reloaded: N plugins started, M stopped". A refused reload (a
      configuration that does not load, a plugin that does not start, a
      setting that cannot change live) prints why and exits 1; the running
      configuration serves on.
  spectroauthd plugin reload -config FILE [-socket PATH] NAME
      The plugin author's inner loop, after a rebuild of plugin NAME:
      write its binary's digest into plugins.NAME.sha256 of FILE (nothing
      else in the file changes) and have the running daemon reload.
      make plugin-reload PLUGIN=NAME CONFIG=FILE rebuilds and runs this.
  spectroauthd plugin-digest PATH
      Check a plugin binary as the daemon will and print the sha256: line
      for its configuration.
  spectroauthd plugin test -plugin PATH [-cases FILE]
      Run the plugin conformance suite (sdk/plugintest) against a plugin
      binary in any language, with the cases of FILE (YAML or JSON), and
      print "N passed, M failed".
  spectroauthd storage-copy -config FILE -from PATH
      Copy what a daemon on storage.type: file keeps in its data directory
      PATH (signing keys, user info, live sessions, flow key) into the
      PostgreSQL storage FILE names, so replicas take over without signing
      anyone out. Stop that daemon first; running it again changes nothing.
  spectroauthd sessions list|revoke --user REF -config FILE
      List a Backstage user's sessions (browser and command line) in the
      configured storage, or end them all (sign out everywhere), revoking
      their upstream tokens where the provider allows; logged for audit.
`+kubeUsage)
}

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("spectroauthd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c commonFlags
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
	}
	log, err := c.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "spectroauthd:", err)
		return 2
	}
	cfg, err := config.Load(c.configPath)
	if err != nil {
		log.Error("invalid configuration", "error", err)
		return 1
	}
	log.Info("starting", "version", version, "commit", commit)
	if c.configPath == "" {
		log.Info("no -config given: running on the embedded development defaults")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup, stopHUP := hangups()
	defer stopHUP()
	opts := daemon.Options{Logger: log, Build: build()}
	if c.configPath != "" {
		path := c.configPath
		opts.LoadConfig = func() (*config.Config, error) { return config.Load(path) }
		opts.AdminSocket = daemon.AdminSocketPath(cfg)
	}
	d, err := daemon.Start(ctx, cfg, opts)
	if err != nil {
		log.Error("could not start", "error", err)
		return 1
	}
	if c.configPath == "" {
		log.Info("open " + cfg.Server.BaseURL + "/ and click \"Sign in with SpectroCloud\"")
	}
	go reloadOnHangup(ctx, hup, d)
	waitErr := make(chan error, 1)
	go func() { waitErr <- d.Wait() }()
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining in-flight requests", "timeout", cfg.Server.ShutdownTimeout)
	case err := <-waitErr:
		if err != nil {
			log.Error("HTTP server stopped", "error", err)
			// Plugins wait to be asked to exit; bound that as a shutdown is.
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
			defer cancel()
			_ = d.Close(sctx)
			return 1
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	if err := d.Close(sctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("shutdown", "error", err)
		return 1
	}
	return 0
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c commonFlags
	c.register(fs)
	print := fs.Bool("print", false, "print the effective configuration (defaults applied, secrets redacted)")
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
	}
	if c.configPath == "" {
		fmt.Fprintln(stderr, "check-config: -config FILE is required")
		return 2
	}
	cfg, err := config.Load(c.configPath)
	if err != nil {
		fmt.Fprintf(stderr, "%s is not valid:\n%v\n", c.configPath, err)
		return 1
	}
	if *print {
		out, err := config.Dump(cfg)
		if err != nil {
			fmt.Fprintln(stderr, "check-config:", err)
			return 1
		}
		_, _ = stdout.Write(out)
		return 0
	}
	fmt.Fprintf(stdout, "%s is valid\n", c.configPath)
	return 0
}

// versionCmd prints one line: the version, the commit, the Go release and
// the platform the binary was built for.
func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "version: takes no arguments")
		return 2
	}
	b := build()
	c := b.Commit
	if c == "" {
		c = "unknown"
	}
	fmt.Fprintf(stdout, "spectroauthd %s (commit %s, %s, %s/%s)\n", b.Version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}

// parseFailed is the exit status of a command whose flags did not parse:
// 0 when help was asked for (-h), else 2 (the flag package printed why).
func parseFailed(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}
