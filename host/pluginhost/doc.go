// Package pluginhost starts, supervises and calls the daemon's out-of-process
// plugins: sign-in resolvers, cluster strategies and cluster sources, each a
// separate binary declared under `plugins:` and spoken to over
// hashicorp/go-plugin's gRPC transport through sdk/pluginclient.
//
// # Trust
//
// A plugin binary is executed only if its path is absolute (or resolved to
// one), names a regular file that is not a symbolic link and not writable by
// group or others, and its SHA-256 digest equals the configured `sha256`. The
// daemon executes exactly the bytes it hashed: it copies the file, through
// the hash, into a sealed memfd and executes the memfd (see verifyBinary).
// The plugin's environment is only its configured `env:` plus what go-plugin
// needs for the handshake; the daemon's own environment (client secrets) is
// never passed on. Transport is gRPC with go-plugin's AutoMTLS, with
// sdk.MaxMessageSize as the message limit both ways, and every call carries
// the plugin's callTimeout as its deadline.
//
// # Supervision
//
// Start launches every plugin in parallel, describes and configures it, and
// asks it to validate the options each use of it in the configuration passes
// (see Use). From then on a supervisor per plugin health-checks it every
// Options.HealthInterval; a plugin that exits, fails Options.MaxMisses health
// checks in a row, or lets Options.MaxMisses calls in a row run into their
// deadline is killed and started again with exponential backoff. While it is
// down, calls fail at once with an *UnavailableError; a call in flight when
// it crashes fails (never "not found"), so a sign-in fails closed.
//
// Plugin processes are started with PR_SET_PDEATHSIG=SIGKILL from a
// dedicated OS thread that lives as long as the daemon, so they die with the
// daemon even when it is killed with SIGKILL. Close stops new calls, drains
// the ones in flight, and stops the plugins.
//
// Plugins run on Linux only: the sealed memfd and the parent-death signal
// have no portable equivalent.
package pluginhost
