package lifecycle

import (
	"strings"
	"time"
)

// RequiredScopes are always requested: the sign-in needs an ID token with a
// profile.
var RequiredScopes = []string{"openid", "profile", "email"}

// JoinScopes is the ordered union of scope lists, space-separated.
func JoinScopes(lists ...[]string) string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lists {
		for _, sc := range l {
			if sc != "" && !seen[sc] {
				seen[sc] = true
				out = append(out, sc)
			}
		}
	}
	return strings.Join(out, " ")
}

// MaxStateSkew is how far in the future a state's time may lie (replicas'
// clocks differ a little).
const MaxStateSkew = time.Minute

// FlowFresh reports whether a sign-in state made at issued may still come
// back: within FlowLifetime, and not from the future beyond MaxStateSkew.
func (m *Manager) FlowFresh(issued time.Time) bool {
	now := m.now()
	return now.Sub(issued) <= FlowLifetime && issued.Sub(now) <= MaxStateSkew
}

// DescribeProviderError keeps the provider's error code and a bounded,
// printable description of a refused authorization; it is shown to the
// user.
func DescribeProviderError(code, desc string) string {
	clean := func(s string, n int) string {
		s = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, s)
		if len(s) > n {
			s = s[:n]
		}
		return s
	}
	if desc == "" {
		return clean(code, 64)
	}
	return clean(code, 64) + " (" + clean(desc, 200) + ")"
}
