package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/daemon"
)

// reloadCmd asks the running daemon, through its admin socket, to reload
// its configuration, and prints its answer: exit status 0 when it
// reloaded, 1 when it refused (the reason is printed) or did not answer.
func reloadCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "the daemon's configuration file: its storage.path holds the admin socket")
	var a adminFlags
	a.register(fs)
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
	}
	var cfg *config.Config
	if a.socket == "" {
		if *configPath == "" {
			fmt.Fprintln(stderr, "reload: -config FILE or -socket PATH is required")
			return 2
		}
		// Only storage.path is needed here; the daemon itself loads and
		// checks the whole file, and says what is wrong with it.
		var err error
		if cfg, err = config.LoadUnvalidated(*configPath); err != nil {
			fmt.Fprintf(stderr, "reload: reading storage.path from %s: %v\n", *configPath, err)
			return 1
		}
	}
	return a.askReload("reload", cfg, stdout, stderr)
}

// adminFlags are the flags of the commands that talk to the running
// daemon's admin socket.
type adminFlags struct {
	socket  string
	timeout time.Duration
}

func (a *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.socket, "socket", "", "the admin socket, instead of the one in the configuration's storage.path")
	fs.DurationVar(&a.timeout, "timeout", 2*time.Minute, "how long to wait for the daemon's answer")
}

// askReload asks the daemon on the admin socket (-socket, else the one of
// cfg's storage.path) to reload and prints its answer: exit status 0 when
// it reloaded, else 1, with why after the command's name.
func (a *adminFlags) askReload(command string, cfg *config.Config, stdout, stderr io.Writer) int {
	path := a.socket
	if path == "" {
		path = daemon.AdminSocketPath(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	msg, err := daemon.AskReload(ctx, path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", command, err)
		return 1
	}
	fmt.Fprintln(stdout, msg)
	return 0
}

// hangups catches SIGHUP from now on (before the daemon starts, so that a
// SIGHUP during its start does not end it); see reloadOnHangup.
func hangups() (<-chan os.Signal, func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup, func() { signal.Stop(hup) }
}

// reloadOnHangup reloads d's configuration on every SIGHUP until ctx is
// done; the daemon logs and counts the outcome. A SIGHUP that came while
// the daemon started is one reload.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, d *daemon.Daemon) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_, _ = d.ReloadConfig(ctx)
		}
	}
}
