package sdk

import (
	"errors"
	"fmt"
)

// ErrNotFound reports that a plugin has no answer for a request: for a
// resolver, that it knows no Backstage user for the signed-in person, so the
// daemon tries the next resolver. Return it, or wrap it with %w to add
// context:
//
//	return sdk.Identity{}, fmt.Errorf("no user with e-mail %q: %w", email, sdk.ErrNotFound)
//
// It crosses the wire: on the host, errors.Is(err, sdk.ErrNotFound) holds for
// the error a call returns, and the message is kept.
var ErrNotFound = errors.New("not found")

// ConfigError reports a bad key in a plugin's configuration or in the options
// of a resolver, strategy or source. Key is the dotted path of the key within
// that block (e.g. "tls.caFile"); the daemon prefixes it with where the block
// sits in its own configuration, so that the operator sees the exact key.
//
// The getters of [Options] return ConfigErrors; return one from Configure or
// ValidateOptions (directly or wrapped) to name the key yourself. It crosses
// the wire: the host gets a *ConfigError with the same Key and message.
type ConfigError struct {
	// Key is the dotted path of the offending key; empty when the whole block
	// is at fault.
	Key string
	// Err says what is wrong, without the key.
	Err error
}

// ConfigErrorf returns a *ConfigError for key with a formatted reason.
func ConfigErrorf(key, format string, args ...any) error {
	return &ConfigError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Error implements error: `config key "tls.caFile": no such file`.
func (e *ConfigError) Error() string {
	if e.Key == "" {
		return "config: " + errString(e.Err)
	}
	return fmt.Sprintf("config key %q: %s", e.Key, errString(e.Err))
}

// Unwrap returns Err.
func (e *ConfigError) Unwrap() error { return e.Err }

// InvalidInputError reports a request field a plugin cannot work with (a
// malformed e-mail address, a missing token). Field names it, as the request
// type spells it (e.g. "Profile.Email", "Session.IDToken"). It crosses the
// wire like ConfigError.
type InvalidInputError struct {
	// Field names the offending request field.
	Field string
	// Err says what is wrong, without the field name.
	Err error
}

// InvalidInputf returns an *InvalidInputError for field with a formatted
// reason.
func InvalidInputf(field, format string, args ...any) error {
	return &InvalidInputError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Error implements error: `invalid input Profile.Email: not an e-mail address`.
func (e *InvalidInputError) Error() string {
	if e.Field == "" {
		return "invalid input: " + errString(e.Err)
	}
	return fmt.Sprintf("invalid input %s: %s", e.Field, errString(e.Err))
}

// Unwrap returns Err.
func (e *InvalidInputError) Unwrap() error { return e.Err }

func errString(err error) string {
	if err == nil {
		return "invalid"
	}
	return err.Error()
}
