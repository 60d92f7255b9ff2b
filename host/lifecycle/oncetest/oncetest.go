// Package oncetest is the conformance suite every lifecycle.OnceSet passes:
// the in-memory set (lifecycle.UsedNonces) and PostgreSQL's, shared by
// replicas (host/storage/postgres). A new set runs it from its own tests:
//
//	oncetest.Run(t, func(t *testing.T) (a, b lifecycle.OnceSet) { … })
package oncetest

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/lifecycle"
)

// Opener opens an empty set and returns two handles on it, as two replicas
// see it (the same value twice for a set of one process).
type Opener func(t *testing.T) (a, b lifecycle.OnceSet)

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ttl := lifecycle.FlowLifetime
	claim := func(t *testing.T, s lifecycle.OnceSet, id string, now time.Time) bool {
		t.Helper()
		ok, err := s.Claim(context.Background(), id, now, now.Add(ttl))
		if err != nil {
			t.Fatalf("Claim(%q): %v", id, err)
		}
		return ok
	}
	t.Run("once until it expires", func(t *testing.T) {
		a, b := open(t)
		if !claim(t, a, "n1", t0) {
			t.Fatal("first claim refused")
		}
		if claim(t, a, "n1", t0.Add(time.Second)) || claim(t, b, "n1", t0.Add(ttl-time.Second)) {
			t.Fatal("a replay within the lifetime was accepted (here or at another replica)")
		}
		if !claim(t, b, "n1", t0.Add(ttl)) {
			t.Fatal("a claim once the first expired was refused")
		}
		if claim(t, a, "n1", t0.Add(ttl+time.Second)) {
			t.Fatal("the new claim was not recorded")
		}
	})
	t.Run("ids are independent", func(t *testing.T) {
		a, b := open(t)
		for i := range 20 {
			if !claim(t, []lifecycle.OnceSet{a, b}[i%2], "id-"+strconv.Itoa(i), t0) {
				t.Fatalf("fresh id %d refused", i)
			}
		}
		if !claim(t, a, lifecycle.CLICodeOncePrefix+"id-1", t0) {
			t.Fatal("a command-line code's id collided with a sign-in's")
		}
	})
	t.Run("one of concurrent claims wins", func(t *testing.T) {
		a, b := open(t)
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := []lifecycle.OnceSet{a, b}[i%2]
				ok, err := s.Claim(context.Background(), "contended", t0, t0.Add(ttl))
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					won++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if won != 1 {
			t.Fatalf("%d of 16 concurrent claims won, want 1", won)
		}
	})
}
