package lifecycle_test

import (
	"sync"
	"testing"

	"github.com/spectroauth/spectroauth/host/lifecycle"
	"github.com/spectroauth/spectroauth/host/signin"
)

// A swap takes effect for the calls that start after it, while others run.
func TestSwappableResolver(t *testing.T) {
	named := func(ref string) signin.Resolver {
		return resolverFunc(func(signin.Input) (signin.Identity, error) { return signin.Identity{UserEntityRef: ref}, nil })
	}
	s := lifecycle.NewSwappableResolver(named("user:default/before"))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if id, err := s.Resolve(t.Context(), signin.Input{}); err != nil || id.UserEntityRef == "" {
					t.Errorf("Resolve during swaps = %+v, %v", id, err)
					return
				}
			}
		}()
	}
	s.Swap(named("user:default/after"))
	wg.Wait()
	if id, _ := s.Resolve(t.Context(), signin.Input{}); id.UserEntityRef != "user:default/after" {
		t.Fatalf("after the swap: %q", id.UserEntityRef)
	}
	if _, err := lifecycle.NewSwappableResolver(nil).Resolve(t.Context(), signin.Input{}); err == nil {
		t.Fatal("an empty resolver resolved")
	}
}
