//go:build !unix

package pluginhost

import "errors"

// Digest checks the plugin binary at path and returns its absolute path and
// hex SHA-256 digest. Plugins are not supported on this system.
func Digest(path string) (abs, sha256Hex string, err error) {
	return "", "", errUnsupportedOS
}

var errUnsupportedOS = errors.New("plugins are supported on Linux only")

func resolveCommand(command string) (string, error) { return "", errUnsupportedOS }
