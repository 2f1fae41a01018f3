package main

import (
	"sync"
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
)

// Clocks of the budget run.
const (
	// clockSkip runs in real time but skips every wait: see skipClock.
	clockSkip = "skip"
	// clockFake is tucao.FakeClock in automatic mode: time moves only
	// when something waits, so fetching and publishing take no time at all.
	clockFake = "fake"
	// clockReal is the system clock: -budget-minutes take that long.
	clockReal = "real"
)

// skipClock is real time plus the waits it skipped. Now moves with the
// system clock, so fetching a page, publishing its posts and the HTTP round
// trip take on this clock exactly what they take in reality; After fires at
// once and adds its duration to the offset, so waiting out the rate limit
// takes no wall-clock time. Only the backfill's single goroutine sleeps on
// it (in the limiter), so the skipped waits never overlap: a run on this
// clock sends its requests at the times a real run would.
//
// tucao.FakeClock in automatic mode skips the waits too, but its time stands
// still between them: a page and its hundred publishes take zero time, every
// minute's hundred requests carry the same instant, and the run says nothing
// about whether kefu keeps up with the budget. -clock fake shows that model.
type skipClock struct {
	mu      sync.Mutex
	skipped time.Duration
}

func (c *skipClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.skipped)
}

func (c *skipClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.skipped += d
	}
	ch := make(chan time.Time, 1)
	ch <- time.Now().Add(c.skipped)
	return ch
}

func newClock(kind string) tucao.Clock {
	switch kind {
	case clockFake:
		c := tucao.NewFakeClock(time.Now())
		c.SetAutoAdvance(true)
		return c
	case clockReal:
		return tucao.SystemClock()
	default:
		return &skipClock{}
	}
}
