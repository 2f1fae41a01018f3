//go:build !race

package deploy

// raceEnabled is true when the tests run with -race.
const raceEnabled = false
