package pluginhost

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spectroauth/spectroauth/sdk"
)

// ErrUnavailable is matched (errors.Is) by the errors of calls to a plugin
// that is not up: starting, restarting after a crash or a hang, or stopped
// because the daemon is shutting down. Such a call never reached the plugin.
var ErrUnavailable = errors.New("plugin unavailable")

// ErrClosed is matched (errors.Is) by the errors of calls made after Close.
var ErrClosed = errors.New("the plugin host is shut down")

// UnavailableError is the error of a call to a plugin that is not up. It
// matches ErrUnavailable, and ErrClosed once the host is closed.
type UnavailableError struct {
	// Plugin is the plugin's name.
	Plugin string
	// State is the plugin's state.
	State State
	// Reason says why it is down, as a phrase that follows the state:
	// "after a crash", "after it stopped answering".
	Reason string
	// Detail gives the particulars ("exit status 3"); may be empty.
	Detail string
	// RetryAfter is when the next start attempt is due; zero when one is
	// under way or none will be made.
	RetryAfter time.Duration
}

// Error says what is going on, e.g. `plugin "catalog" is restarting after a
// crash (exit status 3); retry in 1.2s`.
func (e *UnavailableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "plugin %q is %s", e.Plugin, e.State)
	if e.Reason != "" {
		b.WriteString(" " + e.Reason)
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, " (%s)", truncate(e.Detail, 300))
	}
	switch {
	case e.State == StateStopped:
	case e.RetryAfter > 0:
		fmt.Fprintf(&b, "; retry in %s", e.RetryAfter)
	default:
		b.WriteString("; it is being started again, retry in a moment")
	}
	return b.String()
}

// Is matches ErrUnavailable, and ErrClosed for a stopped plugin.
func (e *UnavailableError) Is(target error) bool {
	return target == ErrUnavailable || (target == ErrClosed && e.State == StateStopped)
}

// retryAfter rounds d up to a tenth of a second for messages.
func retryAfter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	const step = 100 * time.Millisecond
	return (d + step - 1) / step * step
}

// keyError is an error about one configuration key: "plugins.catalog.config.baseUrl:
// must be an https URL". It unwraps to the plugin's *sdk.ConfigError.
type keyError struct {
	key string
	err *sdk.ConfigError
}

func (e *keyError) Error() string {
	reason := "invalid"
	if e.err.Err != nil {
		reason = e.err.Err.Error()
	}
	return e.key + ": " + reason
}

func (e *keyError) Unwrap() error { return e.err }

// atKey places a *sdk.ConfigError within err at prefix, the configuration
// path of the block the plugin checked; other errors are returned as they
// are, prefixed with prefix.
func atKey(prefix string, err error) error {
	var ce *sdk.ConfigError
	if errors.As(err, &ce) {
		key := prefix
		if ce.Key != "" {
			key += "." + ce.Key
		}
		return &keyError{key: key, err: ce}
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// digestMismatchError reports a binary whose digest is not the configured
// one.
type digestMismatchError struct{ path, got, want string }

func (e *digestMismatchError) Error() string {
	return fmt.Sprintf("plugin binary %s has SHA-256 %s, not the configured %s: if this binary is the one you trust, run `spectroauthd plugin-digest %s` and paste its line into the configuration",
		e.path, e.got, strings.ToLower(e.want), e.path)
}

// ProtocolVersionError is the error of starting a plugin that serves none of
// the plugin protocol versions the daemon speaks. It matches
// pluginclient.ErrProtocolVersion.
type ProtocolVersionError struct {
	// Plugin is the plugin's name in the configuration; Path its binary.
	Plugin, Path string
	// Offered is the version the plugin answered with in the handshake: of
	// the versions it serves, the oldest (go-plugin's fallback when it
	// shares none with the daemon). 0 when its answer could not be read.
	Offered int
	// Speaks lists the versions the daemon speaks, oldest first.
	Speaks []int
	// Err is go-plugin's error.
	Err error
}

// Error names the plugin and both sides' versions, e.g. `plugin "catalog"
// (/opt/catalog) offers plugin protocol version 99, and this daemon speaks
// only version 1: rebuild the plugin with a spectroauth SDK that serves
// version 1`.
func (e *ProtocolVersionError) Error() string {
	offered := "an unreadable plugin protocol version"
	if e.Offered != 0 {
		offered = fmt.Sprintf("plugin protocol version %d", e.Offered)
	}
	speaks, serves := versionList(e.Speaks), versionList(e.Speaks)
	if len(e.Speaks) > 1 {
		serves = "one of " + speaks
	}
	return fmt.Sprintf("plugin %q (%s) offers %s, and this daemon speaks only %s: rebuild the plugin with a spectroauth SDK that serves %s",
		e.Plugin, e.Path, offered, speaks, serves)
}

// Unwrap returns go-plugin's error, which matches
// pluginclient.ErrProtocolVersion.
func (e *ProtocolVersionError) Unwrap() error { return e.Err }

// versionList is "version 1" or "versions 1, 2".
func versionList(vs []int) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(v)
	}
	if len(s) == 1 {
		return "version " + s[0]
	}
	return "versions " + strings.Join(s, ", ")
}
