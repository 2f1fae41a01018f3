package natstest_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/natstest"
)

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the calling goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(r)
}

// run calls f with a recorder and reports the message it failed with
// ("" when it returned).
func run(t *testing.T, f func(tb testing.TB)) string {
	r := &fatalRecorder{TB: t}
	func() {
		defer func() {
			if v := recover(); v != nil && v != r {
				panic(v)
			}
		}()
		f(r)
	}()
	return r.msg
}

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	var asked atomic.Int32
	msg := run(t, func(tb testing.TB) {
		natstest.Eventually(tb, 5*time.Second, func() bool { return asked.Add(1) >= 3 }, "third ask")
	})
	if msg != "" {
		t.Fatalf("failed with %q", msg)
	}
	if n := asked.Load(); n != 3 {
		t.Fatalf("condition asked %d times, want 3 (it returns at the first true)", n)
	}
}

func TestEventuallyFailsNamingWhatItAwaited(t *testing.T) {
	start := time.Now()
	msg := run(t, func(tb testing.TB) {
		natstest.Eventually(tb, 50*time.Millisecond, func() bool { return false }, "the %s of %d", "ack", 7)
	})
	if !strings.Contains(msg, "the ack of 7") || !strings.Contains(msg, "50ms") {
		t.Fatalf("message %q, want the awaited thing and the time limit", msg)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("gave up after %s, before the 50ms limit", waited)
	}
}

func TestEventuallyRefusesANonPositiveLimit(t *testing.T) {
	msg := run(t, func(tb testing.TB) {
		natstest.Eventually(tb, 0, func() bool { return true }, "anything")
	})
	if !strings.Contains(msg, "within must be positive") {
		t.Fatalf("message %q, want a refusal of the zero limit", msg)
	}
}
