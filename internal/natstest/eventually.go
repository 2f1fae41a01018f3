package natstest

import (
	"fmt"
	"testing"
	"time"
)

// pollEvery is how often Eventually asks its condition again: often
// enough that a test waits little past the moment the condition holds,
// seldom enough not to busy a shared machine.
const pollEvery = 10 * time.Millisecond

// Eventually waits until cond holds, asking it every few milliseconds,
// and fails the test when it still does not hold after within. The
// failure says what was awaited: format and args, as for fmt.Sprintf.
//
// It is the one polling wait of kefu's tests: work done by another
// goroutine or process (a consumer, a server, an HTTP handler) is awaited
// with it rather than with a fixed sleep, so a test is as fast as the
// system and fails with a message when the system never gets there.
func Eventually(t testing.TB, within time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	if within <= 0 {
		t.Fatalf("natstest.Eventually: within must be positive, got %s", within)
	}
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, fmt.Sprintf(format, args...))
		}
		time.Sleep(pollEvery)
	}
}
