package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spectroauth/spectroauth/host/daemon"
)

// storageCopyCmd is `spectroauthd storage-copy -config FILE -from PATH`: it
// copies the data directory PATH of a daemon on file storage into the
// PostgreSQL storage FILE names (see daemon.CopyFileStorage) and prints
// what it did, in counts: never a key, token or password. It exits 1 when
// the copy fails (what is copied by then stays; running it again goes on).
func storageCopyCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("storage-copy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c commonFlags
	c.register(fs)
	from := fs.String("from", "", "the data directory of the daemon on file storage (its storage.path); required")
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
	}
	if c.configPath == "" || *from == "" {
		fmt.Fprintln(stderr, "storage-copy: -config FILE and -from PATH are required")
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "storage-copy: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	log, cfg, code := c.load("storage-copy", stderr)
	if code != 0 {
		return code
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := daemon.CopyFileStorage(ctx, cfg, *from, log)
	if err != nil {
		fmt.Fprintln(stderr, "storage-copy:", err)
		return 1
	}
	printCopyReport(stdout, *from, r)
	return 0
}

func printCopyReport(w io.Writer, from string, r daemon.CopyReport) {
	fmt.Fprintf(w, "Copied %s into the PostgreSQL storage (storage.postgresUrl):\n", from)
	fmt.Fprintf(w, "  signing keys  %d copied, %d already present\n", r.KeysCopied, r.KeysPresent)
	fmt.Fprintf(w, "  user info     %d copied, %d already present", r.UserInfoCopied, r.UserInfoPresent)
	if r.UserInfoKept > 0 {
		fmt.Fprintf(w, ", %d present with other content (kept: the next sign-in or refresh rewrites it)", r.UserInfoKept)
	}
	fmt.Fprintf(w, "\n  sessions      %d copied, %d skipped as expired, %d already present", r.SessionsCopied, r.SessionsExpired, r.SessionsPresent)
	if r.SessionsKept > 0 {
		fmt.Fprintf(w, ", %d present with other content (kept: renewed by a replica since)", r.SessionsKept)
	}
	if r.SessionsUnreadable > 0 {
		fmt.Fprintf(w, ", %d unreadable (logged, not copied)", r.SessionsUnreadable)
	}
	fmt.Fprint(w, "\n  flow key      ")
	switch r.FlowKey {
	case daemon.FlowKeyCopied:
		fmt.Fprintln(w, "copied")
	case daemon.FlowKeyPresent:
		fmt.Fprintln(w, "already present")
	case daemon.FlowKeyDifferent:
		fmt.Fprintln(w, "NOT copied: the database already has a different one, left as it is")
		fmt.Fprintln(w, "note: sign-ins (browser or command line) started at the file-storage daemon and not finished")
		fmt.Fprintln(w, "      before the move fail at the replicas and must be started again; sessions and issued")
		fmt.Fprintln(w, "      tokens are not affected")
	default:
		fmt.Fprintf(w, "none in %s: the replicas use their own, so sign-ins in flight must be started again\n", from)
	}
	if !r.Changed() {
		fmt.Fprintln(w, "Nothing changed: the database already had all of it.")
	}
}
