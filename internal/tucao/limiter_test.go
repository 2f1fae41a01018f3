package tucao

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// maxInAnyWindow returns the largest number of grants inside any half-open
// window [t, t+window). Sorted input; the worst window always starts at a
// grant.
func maxInAnyWindow(grants []time.Time, window time.Duration) int {
	worst, j := 0, 0
	for i := range grants {
		for j < len(grants) && grants[j].Before(grants[i].Add(window)) {
			j++
		}
		worst = max(worst, j-i)
	}
	return worst
}

func TestWindowLimiterKeepsEverySixtySecondWindowWithinBudget(t *testing.T) {
	clock := NewFakeClock(epoch)
	clock.SetAutoAdvance(true)
	lim := NewWindowLimiter(100, clock)
	var grants []time.Time
	for range 250 {
		if err := lim.Wait(context.Background()); err != nil {
			t.Fatalf("Wait: %v", err)
		}
		grants = append(grants, clock.Now())
	}
	if got := maxInAnyWindow(grants, time.Minute); got > 100 {
		t.Errorf("a 60 s window holds %d requests, want at most 100", got)
	}
	// Not slower than needed: the first 100 go at once, and each later
	// hundred one window (plus margin) after the previous.
	if !grants[99].Equal(epoch) {
		t.Errorf("request 100 waited until %v, want no wait", grants[99].Sub(epoch))
	}
	if got, limit := grants[249].Sub(epoch), 2*(time.Minute+windowMargin); got > limit {
		t.Errorf("250 requests took %v of clock time, want at most %v", got, limit)
	}
}

func TestWindowLimiterSharedByConcurrentCallers(t *testing.T) {
	clock := NewFakeClock(epoch)
	clock.SetAutoAdvance(true)
	lim := NewWindowLimiter(20, clock)
	// Reading the clock after Wait returns would be late: other callers
	// move an automatic clock meanwhile. Take the limiter's own times.
	var grants []time.Time // appended under the limiter's lock
	lim.(*windowLimiter).onGrant = func(at time.Time) { grants = append(grants, at) }
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			for range 20 {
				if err := lim.Wait(context.Background()); err != nil {
					t.Errorf("Wait: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	slices.SortFunc(grants, func(a, b time.Time) int { return a.Compare(b) })
	if len(grants) != 100 {
		t.Fatalf("got %d grants, want 100", len(grants))
	}
	if got := maxInAnyWindow(grants, time.Minute); got > 20 {
		t.Errorf("a 60 s window holds %d requests, want at most 20", got)
	}
}

func TestWindowLimiterWaitsForTheOldestGrantToLeave(t *testing.T) {
	clock := NewFakeClock(epoch)
	lim := NewWindowLimiter(1, clock)
	if err := lim.Wait(context.Background()); err != nil {
		t.Fatalf("first Wait: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- lim.Wait(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.WaitForWaiters(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(59 * time.Second)
	if clock.Waiters() != 1 {
		t.Fatal("second request released inside the window")
	}
	clock.Advance(time.Minute + windowMargin - 59*time.Second)
	if err := <-done; err != nil {
		t.Fatalf("second Wait: %v", err)
	}
}

func TestWindowLimiterReturnsWhenContextEnds(t *testing.T) {
	clock := NewFakeClock(epoch)
	lim := NewWindowLimiter(1, clock)
	if err := lim.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lim.Wait(ctx) }()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := clock.WaitForWaiters(wctx, 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Wait = %v, want context.Canceled", err)
	}
}

func TestNewWindowLimiterRejectsNonPositiveBudget(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewWindowLimiter(0) did not panic")
		}
	}()
	NewWindowLimiter(0, nil)
}
