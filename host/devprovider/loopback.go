package devprovider

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// RequireLoopback returns an error unless listenAddr (host:port, as given to
// net.Listen) is on a loopback address: 127.0.0.0/8, ::1 or "localhost".
// The daemon calls it before serving the development provider, because that
// provider lets anyone who reaches it sign in as any configured user.
func RequireLoopback(listenAddr string) error {
	host, _, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return fmt.Errorf("development OpenID provider: cannot parse listen address %q: %v", listenAddr, err)
	}
	if isLoopbackHost(host) {
		return nil
	}
	if host == "" {
		return fmt.Errorf("development OpenID provider refused: listen address %q listens on every interface; use a loopback address (127.0.0.1, ::1 or localhost)", listenAddr)
	}
	return fmt.Errorf("development OpenID provider refused: listen address %q is not a loopback address (127.0.0.0/8, ::1 or localhost)", listenAddr)
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return false
	}
	return ip.Unmap().IsLoopback()
}
