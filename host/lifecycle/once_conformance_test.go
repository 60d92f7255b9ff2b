package lifecycle_test

import (
	"testing"

	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/lifecycle/oncetest"
)

// The in-memory set passes the suite PostgreSQL's passes.
func TestUsedNoncesConformance(t *testing.T) {
	oncetest.Run(t, func(*testing.T) (a, b lifecycle.OnceSet) {
		u := &lifecycle.UsedNonces{}
		return u, u
	})
}
