package tucao

import (
	"net/http"
	"sync/atomic"
	"time"
)

// Clock skew.
//
// Tucao accepts a Timestamp only within a few minutes of its own clock
// (the fake: 300 s). A host whose clock is off by more than that would
// sign every request with a stale timestamp and meet a permanent 401. So
// the client reads the server's clock from the Date header of every answer
// (errors included), keeps the difference — server minus local — and
// stamps each request with local time plus that difference.
//
// Date has one-second resolution and the answer takes time to arrive, so a
// reading is the header's second plus half a second, compared with the
// middle of the request; readings that differ from the correction in use by
// no more than SkewTolerance are noise and change nothing. A request refused
// with 401 whose own answer moved the correction is sent again at once,
// signed with the corrected time (once per call): the first request after a
// host's clock jumps succeeds instead of failing the poll.
const (
	// SkewTolerance is how far a reading of the server's clock may be from
	// the correction in use before the correction changes.
	SkewTolerance = 2 * time.Second
	// SkewWarning is the skew above which the host's clock is worth an
	// operator's attention (Config.OnClockSkew callers log a warning).
	SkewWarning = time.Minute
)

// skewTracker holds the correction, server minus local, in nanoseconds.
type skewTracker struct {
	offset atomic.Int64
}

func (s *skewTracker) get() time.Duration { return time.Duration(s.offset.Load()) }

// observe reads the server's clock from an answer's Date header, taken
// between sent and received on the local clock, and reports whether the
// correction changed and to what.
func (s *skewTracker) observe(date string, sent, received time.Time) (time.Duration, bool) {
	if date == "" {
		return 0, false
	}
	server, err := http.ParseTime(date)
	if err != nil {
		return 0, false
	}
	mid := sent.Add(received.Sub(sent) / 2)
	measured := server.Add(500 * time.Millisecond).Sub(mid)
	for {
		old := s.offset.Load()
		diff := measured - time.Duration(old)
		if diff <= SkewTolerance && diff >= -SkewTolerance {
			return time.Duration(old), false
		}
		if s.offset.CompareAndSwap(old, int64(measured)) {
			return measured, true
		}
	}
}

// ClockSkew returns the correction the client applies to its timestamps:
// how far the server's clock is ahead of the local one (negative when
// behind), as last measured; 0 before the first answer.
func (c *Client) ClockSkew() time.Duration { return c.skew.get() }
