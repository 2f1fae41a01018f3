package tucaotest

import (
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
)

// SetClock replaces the server's clock; nil means the system clock.
func (s *Server) SetClock(c tucao.Clock) {
	if c == nil {
		c = tucao.SystemClock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = c
}

// SetRateLimit sets the accepted requests per minute; 0 turns the limit off
// (for benchmarks). It also forgets the requests already counted.
func (s *Server) SetRateLimit(perMinute int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimit = max(perMinute, 0)
	s.accepted = nil
}

// SetSlowDelay sets how long a FaultSlow answer waits.
func (s *Server) SetSlowDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slowDelay = d
}

// FailNext makes the next n requests meet the fault kind, after any faults
// already queued.
func (s *Server) FailNext(n int, kind FaultKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, kind)
	}
}

// RequestCount is the number of requests the posts endpoint has received,
// whatever their outcome.
func (s *Server) RequestCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// RequestTimes returns the server-clock time of every request the posts
// endpoint has received, in arrival order, so a test can count requests in
// any 60-second window.
func (s *Server) RequestTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.times...)
}
