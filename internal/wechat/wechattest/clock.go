package wechattest

import (
	"slices"
	"sync"
	"time"
)

// Clock is the fake's source of time: token lifetimes, the 48-hour reply
// window, createtime values and the simulation's timers all read it, so a
// test can move time forward with a FakeClock instead of sleeping.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine (real clock) or from Advance
	// (FakeClock) once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not run yet and reports whether it did.
	Stop() bool
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (RealClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// FakeClock is a manually driven Clock. Time stands still until Advance is
// called; Advance runs the timers that fall due, in order, each seeing Now()
// equal to its due time. It is safe for concurrent use.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    int
	timers []*fakeTimer
}

type fakeTimer struct {
	clock *FakeClock
	due   time.Time
	seq   int // orders timers with the same due time by creation
	f     func()
}

// NewFakeClock returns a FakeClock reading start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f to run from Advance once d has passed; d <= 0 runs
// it at the next Advance.
func (c *FakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{clock: c, due: c.now.Add(d), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves the clock forward by d, running every timer due on the way.
// Timer functions run on the caller's goroutine without the clock's lock
// held, so they may schedule further timers (which also run if they fall
// due before the end of d).
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		t := c.popDueLocked(end)
		if t == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		if t.due.After(c.now) {
			c.now = t.due
		}
		c.mu.Unlock()
		t.f()
	}
}

// popDueLocked removes and returns the earliest timer due at or before end.
func (c *FakeClock) popDueLocked(end time.Time) *fakeTimer {
	if len(c.timers) == 0 {
		return nil
	}
	i := 0
	for j, t := range c.timers {
		if t.due.Before(c.timers[i].due) || (t.due.Equal(c.timers[i].due) && t.seq < c.timers[i].seq) {
			i = j
		}
	}
	t := c.timers[i]
	if t.due.After(end) {
		return nil
	}
	c.timers = slices.Delete(c.timers, i, i+1)
	return t
}

// Pending returns how many timers are waiting to run.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

func (t *fakeTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.timers, t)
	if i < 0 {
		return false
	}
	c.timers = slices.Delete(c.timers, i, i+1)
	return true
}
