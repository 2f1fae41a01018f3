package tucao

import (
	"context"
	"sync"
	"time"
)

// Clock is the time source of the limiter, the request timestamps and the
// backoff sleeps. Tests replace it with a FakeClock so that a minute of rate
// limiting takes no wall-clock time.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// SystemClock returns the real clock.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// FakeClock is a Clock that moves only when told to. It is safe for
// concurrent use and meant for tests in any package.
//
// In manual mode (the default) After returns a channel that fires once
// Advance or Set moves the clock past its deadline. In automatic mode
// (SetAutoAdvance(true)) every After call moves the clock forward to its own
// deadline at once and fires: code that sleeps runs without delay, yet every
// timestamp it takes shows the time that would have passed. Concurrent
// sleepers in automatic mode each add their own wait, so time may run ahead
// of a real clock, never behind it.
type FakeClock struct {
	mu      sync.Mutex
	now     time.Time
	auto    bool
	waiters []fakeWaiter
	changed chan struct{} // closed and replaced whenever waiters change
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

// NewFakeClock returns a manual FakeClock reading start.
func NewFakeClock(start time.Time) *FakeClock {
	return &FakeClock{now: start, changed: make(chan struct{})}
}

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the fake time once d has passed on
// this clock. A non-positive d fires at once.
func (c *FakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	if c.auto {
		c.moveLocked(c.now.Add(d))
	}
	c.notifyLocked()
	return ch
}

// Advance moves the clock forward by d and fires every timer that is due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.moveLocked(c.now.Add(d))
}

// Set moves the clock to t (backwards too, which fires nothing) and fires
// every timer that is due.
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	c.moveLocked(t)
}

// SetAutoAdvance switches automatic mode on or off. Switching it on also
// releases the timers already waiting, advancing to the latest deadline.
func (c *FakeClock) SetAutoAdvance(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.auto = on
	if !on {
		return
	}
	latest := c.now
	for _, w := range c.waiters {
		if w.at.After(latest) {
			latest = w.at
		}
	}
	c.moveLocked(latest)
}

// Waiters returns how many After channels have not fired yet.
func (c *FakeClock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// WaitForWaiters blocks until at least n After channels are pending, so a
// test can advance the clock only once the code under test is asleep.
func (c *FakeClock) WaitForWaiters(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		count, changed := len(c.waiters), c.changed
		c.mu.Unlock()
		if count >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// moveLocked sets the time to t if that is later and fires the timers due.
func (c *FakeClock) moveLocked(t time.Time) {
	if t.After(c.now) {
		c.now = t
	}
	kept := c.waiters[:0]
	fired := false
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
		fired = true
	}
	clear(c.waiters[len(kept):])
	c.waiters = kept
	if fired {
		c.notifyLocked()
	}
}

func (c *FakeClock) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}
