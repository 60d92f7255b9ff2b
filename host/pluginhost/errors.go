package pluginhost

import (
	"errors"
	"fmt"
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
