package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spectroauth/spectroauth/host/daemon"
)

// sessionsCmd is `spectroauthd sessions list|revoke --user REF -config FILE`:
// an operator lists a user's sessions in the configured storage, or ends
// them all (sign out everywhere), with an audit line in the log. It prints
// session keys and dates, never a token.
func sessionsCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "revoke") {
		fmt.Fprintln(stderr, "sessions: say list or revoke: spectroauthd sessions list|revoke --user REF -config FILE")
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("sessions", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c commonFlags
	c.register(fs)
	user := fs.String("user", "", "the Backstage user entity ref, e.g. user:default/alice; required")
	if err := fs.Parse(args[1:]); err != nil {
		return parseFailed(err)
	}
	if c.configPath == "" || *user == "" {
		fmt.Fprintf(stderr, "sessions %s: -config FILE and --user REF are required\n", verb)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sessions %s: unexpected argument %q\n", verb, fs.Arg(0))
		return 2
	}
	log, cfg, code := c.load("sessions", stderr)
	if code != 0 {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if verb == "revoke" {
		n, err := daemon.RevokeUserSessions(ctx, cfg, *user, log)
		if err != nil {
			fmt.Fprintln(stderr, "sessions revoke:", err)
			return 1
		}
		fmt.Fprintf(stdout, "Ended %d session(s) of %s.\n", n, *user)
		return 0
	}
	list, err := daemon.ListUserSessions(ctx, cfg, *user, log)
	if err != nil {
		fmt.Fprintln(stderr, "sessions list:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tENV\tCREATED\tLAST CHECKED\tEXPIRES\tREFRESH GRANT")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\n", s.Key, s.Env, s.CreatedAt.UTC().Format(time.RFC3339),
			s.CheckedAt.UTC().Format(time.RFC3339), s.ExpiresAt.UTC().Format(time.RFC3339), s.RefreshGrant)
	}
	_ = tw.Flush()
	fmt.Fprintf(stdout, "%d live session(s) of %s.\n", len(list), *user)
	return 0
}
