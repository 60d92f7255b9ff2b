package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spectroauth/spectroauth/host/kube/kubecli"
)

// kubeUsage documents the Kubernetes subcommands, for usage.
const kubeUsage = `  spectroauthd kube-credential --server URL --cluster NAME [--env ENV]
      kubectl's exec credential command: prints a client.authentication.k8s.io
      ExecCredential for the cluster, signing in with SpectroCloud in the
      browser first when kubectl runs interactively and there is no session.
  spectroauthd kubeconfig --server URL --cluster NAME [--context NAME]
      Print a kubeconfig whose user runs kube-credential for the cluster.
  spectroauthd login --server URL [--env ENV]
  spectroauthd logout --server URL [--env ENV]
      Sign the command line in (browser) or out at the daemon.
`

// kubeCommand runs one of the Kubernetes subcommands with the process's
// terminal, environment and signals.
func kubeCommand(cmd func(context.Context, []string, kubecli.IO) int, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cmd(ctx, args, kubecli.IO{Stdout: stdout, Stderr: stderr})
}
