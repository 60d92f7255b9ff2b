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
// daemon executes exactly the bytes it hashed: it copies the file into a
// memfd, seals the memfd against any change, hashes it, and executes it as
// /proc/self/fd/N; restarts run the same memfd, so replacing the file on disk
// changes nothing until the daemon restarts. A #! script runs the same way
// (its interpreter reads the verified script from descriptor 3); its
// interpreter is not verified.
//
// With Options.StoreDir (the daemon's data directory), the verified bytes
// are kept in a content store only the daemon's user may write, and a later
// start runs that copy, without copying and hashing again, as long as the
// binary's file keeps the identity it had when it was verified (device,
// inode, size, mode, mtime, ctime); any change means a full verification,
// and the usual digest mismatch if the bytes changed. The store is used only
// where Landlock keeps plugins out of it, and never fails a start: a store
// or copy that fails a check is passed over (and a bad copy replaced). See
// store_linux.go.
//
// The plugin's environment is only its configured `env:` plus what go-plugin
// needs for the handshake (and, unless `env:` sets them,
// SPECTROAUTH_PLUGIN_LOG_LEVEL, the daemon's level, and GOMAXPROCS=1: a
// plugin serves I/O-bound calls next to the daemon, and a Go plugin with one
// P spends far less CPU on scheduler wake-ups per call): the daemon's own
// environment (client secrets, but also PATH and HOME) is never passed on. Its stdin is
// /dev/null; its stderr is forwarded into the daemon's log under the
// plugin's name, at the level of each line; stray stdout is logged as a
// warning. Transport is gRPC with mutual TLS as go-plugin's AutoMTLS makes
// it, with P-256 keys on both sides for plugins of SDK 0.2.0 and later
// (hostcert.go, certline.go), with
// pluginclient.MaxMessageSize as the message limit both ways, and every call carries
// the plugin's callTimeout as its deadline.
//
// # Isolation
//
// A plugin cannot read the daemon's memory, environment, keys or sessions:
// Start makes the process non-dumpable (ProtectProcess); each plugin process
// runs in an empty working directory of its own (also its TMPDIR), removed
// once it has exited, with no_new_privs and without any capability (even
// when the daemon runs as root); and where the kernel has Landlock, it may
// read only the system's program, library and certificate directories,
// /proc, its binary (and its own copy in the content store, not the store)
// and its `readPaths`, and write only its working directory. Where the kernel lacks Landlock, Start logs "plugin file system
// isolation unavailable: …" at warn. Nor can a plugin change a file's mode,
// owner or ACLs (a seccomp filter makes chmod, chown and setxattr fail with
// EPERM), which would let it hand the daemon's files to another user; where
// the kernel lacks seccomp filters, Start logs "plugin file attribute
// isolation unavailable: …" at warn. See sandbox_linux.go and
// seccomp_linux.go.
//
// # Supervision
//
// Start launches every plugin in parallel, describes and configures it, and
// asks it to validate the options each use of it in the configuration passes
// (see Use). From then on a supervisor per plugin health-checks it every
// Options.HealthInterval; a plugin that exits, fails Options.MaxMisses health
// checks in a row, or lets Options.MaxMisses calls in a row run into their
// deadline is killed and started again with exponential backoff. A plugin
// whose own upstream is slow is not hung: the SDK ends the context of a
// plugin's method a margin before the call's deadline, and a method that
// gives up then is answered for with DEADLINE_EXCEEDED and
// ERROR_REASON_RAN_OUT_OF_TIME. Such an answer fails the call ("the plugin
// answered, within the 2s call timeout, that it ran out of time: ..."; the
// error matches context.DeadlineExceeded) but counts as an answer, even
// when it is read after the deadline: it is no miss, and restarts nothing.
// A bare DEADLINE_EXCEEDED (a plugin not built on the SDK) counts as an
// answer only when it arrives before the deadline. While it is
// down, calls fail at once with an *UnavailableError; a call in flight when
// it crashes fails (never "not found"), so a sign-in fails closed.
//
// Plugin processes are started with PR_SET_PDEATHSIG=SIGKILL, each from a
// dedicated OS thread that lives as long as the plugin, so they die with the
// daemon even when it is killed with SIGKILL. Each runs in a process group
// of its own: when a plugin is killed, or exits, what is left of its group
// (helpers it started) is killed too. Close stops new calls, drains the
// ones in flight, and stops the plugins.
//
// Plugins run on Linux only: the sealed memfd and the parent-death signal
// have no portable equivalent.
package pluginhost
