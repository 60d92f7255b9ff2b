//go:build race

package server

// raceEnabled: the race detector drops sync.Pool reuse at random, so
// allocation counts vary and are not checked.
const raceEnabled = true
