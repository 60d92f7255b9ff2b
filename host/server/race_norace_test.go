//go:build !race

package server

// raceEnabled: see race_race_test.go.
const raceEnabled = false
