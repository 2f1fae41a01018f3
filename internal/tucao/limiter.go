package tucao

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Limiter paces requests; Wait returns once one more request may be sent.
// One Limiter shared by several clients makes them share one budget.
type Limiter interface {
	Wait(ctx context.Context) error
}

const (
	// limitWindow is the length of the service's rate-limit window.
	limitWindow = time.Minute
	// windowMargin widens the client's window beyond the server's. The
	// client stamps a request when it leaves, the server when it arrives; if
	// the first request of a window was slow on the network and the 101st
	// fast, a client window of exactly 60 s could put 101 arrivals into one
	// server window. One second covers ordinary latency differences.
	windowMargin = time.Second
)

// NewWindowLimiter returns a sliding-window limiter: it remembers when each
// of the last perMinute requests was allowed and lets a new one through only
// once the oldest of them is more than a minute (plus a small margin) old.
// So no 60-second window, wherever it starts, ever holds more than perMinute
// requests.
//
// A token bucket (golang.org/x/time/rate) does not give that guarantee: with
// a burst of N and a refill of N per minute it lets N requests through at
// once and then keeps refilling, so a 60-second window that starts with the
// burst sees nearly 2N requests. Tucao's budget is "at most 100 per minute",
// and exceeding it costs a rejected request plus a backoff, so the limiter
// keeps the strict bound. perMinute must be positive.
func NewWindowLimiter(perMinute int, clock Clock) Limiter {
	if perMinute <= 0 {
		panic(fmt.Sprintf("tucao: NewWindowLimiter: perMinute must be positive, got %d", perMinute))
	}
	if clock == nil {
		clock = SystemClock()
	}
	return &windowLimiter{clock: clock, limit: perMinute, window: limitWindow + windowMargin}
}

type windowLimiter struct {
	clock  Clock
	limit  int
	window time.Duration

	mu     sync.Mutex
	grants []time.Time // times requests were allowed, oldest first, within the window

	// onGrant, when set (by tests), sees each grant's time under the lock,
	// so concurrent callers can be checked against the times the limiter
	// itself used.
	onGrant func(time.Time)
}

// Wait blocks until a request fits into the window or ctx is done.
func (l *windowLimiter) Wait(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("wait for tucao rate limit: %w", err)
		}
		wait, ok := l.reserve()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for tucao rate limit: %w", ctx.Err())
		case <-l.clock.After(wait):
			// Another waiter may take the slot first; reserve again.
		}
	}
}

// reserve records a grant if the window has room, or says how long until
// the oldest grant leaves it.
func (l *windowLimiter) reserve() (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	expired := 0
	for expired < len(l.grants) && !now.Before(l.grants[expired].Add(l.window)) {
		expired++
	}
	l.grants = l.grants[expired:]
	if len(l.grants) < l.limit {
		l.grants = append(l.grants, now)
		if l.onGrant != nil {
			l.onGrant(now)
		}
		return 0, true
	}
	return l.grants[0].Add(l.window).Sub(now), false
}
