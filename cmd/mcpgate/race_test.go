//go:build race

package main

// The binary under test is built with the race detector too, so it reuses
// the build cache the test binary filled (and is checked for races).
func init() { raceEnabled = true }
