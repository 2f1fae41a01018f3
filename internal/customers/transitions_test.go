package customers

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func sec(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

const (
	wang   = "wang@gh_test"
	li     = "li@gh_test"
	within = 24 * time.Hour
)

// op is one fact applied to a state; it returns the effect asked for.
type op func(*State) Effect

func created(kf string, at time.Time, seq uint64) op {
	return func(c *State) Effect { _, e := c.ApplyCreated(kf, at, seq, within); return e }
}

func switched(from, to string, at time.Time, seq uint64) op {
	return func(c *State) Effect { _, e := c.ApplySwitched(from, to, at, seq, within); return e }
}

func closed(kf string, at time.Time, seq uint64) op {
	return func(c *State) Effect { c.ApplyClosed(kf, at, seq); return Effect{} }
}

func message(at time.Time, seq uint64, leave bool) op {
	return func(c *State) Effect { c.ApplyMessage(at, seq, leave); return Effect{} }
}

func left(at time.Time, seq uint64, queued time.Time) op {
	return func(c *State) Effect { c.ApplyLeft(at, seq, queued); return Effect{} }
}

func seenWaiting(p, queued time.Time, pos int) op {
	return func(c *State) Effect {
		c.ApplyWaitingSeen(WaitingSeen{At: p, QueuedAt: queued, Position: pos})
		return Effect{}
	}
}

func estimated(p time.Time, pos int, wait int64) op {
	return func(c *State) Effect {
		c.ApplyWaitingSeen(WaitingSeen{At: p, Position: pos, Estimate: true, WaitSeconds: wait, WaitP90: 2 * wait})
		return Effect{}
	}
}

func seenServed(kf string, sessionAt, p time.Time) op {
	return func(c *State) Effect { _, e := c.ApplyServedSeen(kf, sessionAt, p, within); return e }
}

func seenIdle(p time.Time) op {
	return func(c *State) Effect { c.ApplyIdleSeen(ObservedAt(p)); return Effect{} }
}

func staleClosing(kf string, sessionAt time.Time) op {
	return func(c *State) Effect {
		c.Closing = Closing{Reason: ClosedByStale, KfAccount: kf, SessionAt: sessionAt, Done: true}
		return Effect{}
	}
}

func run(ops ...op) (State, []string) {
	st := State{OpenID: "o1", Status: StatusNone}
	var closes []string
	for _, o := range ops {
		if e := o(&st); e.CloseKf != "" {
			closes = append(closes, e.CloseKf)
		}
	}
	return st, closes
}

func TestTransitions(t *testing.T) {
	// A waiting customer, queued at 0 and seen by a poll at 5.
	waiting := []op{message(sec(0), 1, false), seenWaiting(sec(5), sec(0), 3)}
	// The same customer after leaving at 60.
	hasLeft := append(append([]op{}, waiting...), message(sec(60), 2, true), left(sec(60), 2, sec(0)))
	with := func(base []op, more ...op) []op { return append(append([]op{}, base...), more...) }

	tests := []struct {
		name       string
		ops        []op
		wantStatus Status
		wantKf     string
		wantBy     string
		wantCloses []string
		check      func(t *testing.T, st State)
	}{
		{name: "a poll that lists the customer makes them waiting with their place",
			ops: waiting, wantStatus: StatusWaiting,
			check: func(t *testing.T, st State) {
				if st.Position != 3 || !st.Since.Equal(sec(0)) {
					t.Errorf("position %d since %v", st.Position, st.Since)
				}
			}},
		{name: "a wait estimate records position and estimate",
			ops: with(waiting, estimated(sec(20), 2, 120)), wantStatus: StatusWaiting,
			check: func(t *testing.T, st State) {
				if st.Position != 2 || st.WaitSeconds != 120 || st.WaitP90Seconds != 240 {
					t.Errorf("%+v", st)
				}
			}},
		{name: "an older estimate does not replace a newer one",
			ops: with(waiting, estimated(sec(20), 2, 120), estimated(sec(10), 4, 600)), wantStatus: StatusWaiting,
			check: func(t *testing.T, st State) {
				if st.WaitSeconds != 120 {
					t.Errorf("wait %d", st.WaitSeconds)
				}
			}},
		{name: "a created event makes a waiting customer served",
			ops: with(waiting, created(wang, sec(30), 3)), wantStatus: StatusServed, wantKf: wang},
		{name: "a switch moves the session to the new agent",
			ops: with(waiting, created(wang, sec(30), 3), switched(wang, li, sec(40), 4)), wantStatus: StatusServed, wantKf: li},
		{name: "a close ends the session and names the agent",
			ops: with(waiting, created(wang, sec(30), 3), closed(wang, sec(90), 4)), wantStatus: StatusClosed, wantKf: wang, wantBy: ClosedByAgent},
		{name: "a close handled before its create still ends the session",
			ops: with(waiting, closed(wang, sec(90), 4), created(wang, sec(30), 3)), wantStatus: StatusClosed, wantKf: wang},
		{name: "in one second the event later in the stream wins, whatever the handling order",
			ops: with(waiting, closed(wang, sec(30), 4), created(wang, sec(30), 3)), wantStatus: StatusClosed},
		{name: "in one second a new session after a close wins",
			ops: with(waiting, created(li, sec(30), 5), closed(wang, sec(30), 4)), wantStatus: StatusServed, wantKf: li},
		{name: "a redelivered close does not undo a later session",
			ops:        with(waiting, created(wang, sec(30), 3), closed(wang, sec(90), 4), created(li, sec(95), 5), closed(wang, sec(90), 4)),
			wantStatus: StatusServed, wantKf: li},
		{name: "a poll never overrides an event of the same second",
			ops:        with(waiting, created(wang, sec(30), 3), seenWaiting(sec(30).Add(600*time.Millisecond), time.Time{}, 1)),
			wantStatus: StatusServed},
		{name: "a wait estimate made before the session started does not bring the customer back",
			ops: with(waiting, created(wang, sec(30), 3), estimated(sec(29), 1, 60)), wantStatus: StatusServed},
		{name: "getsession finding nobody closes a served session whose close event was lost",
			ops: with(waiting, created(wang, sec(30), 3), seenIdle(sec(300))), wantStatus: StatusClosed, wantKf: wang, wantBy: ClosedByUnknown},
		{name: "getsession finding nobody ends a wait",
			ops: with(waiting, seenIdle(sec(300))), wantStatus: StatusNone},
		{name: "getsession finding an agent repairs a lost create",
			ops: with(waiting, seenServed(wang, sec(30), sec(300))), wantStatus: StatusServed, wantKf: wang,
			check: func(t *testing.T, st State) {
				if !st.Since.Equal(sec(30)) || !st.Observed {
					t.Errorf("since %v observed %v", st.Since, st.Observed)
				}
			}},
		{name: "a poll of the known session changes nothing",
			ops: with(waiting, created(wang, sec(30), 3), seenServed(wang, sec(30), sec(300))), wantStatus: StatusServed,
			check: func(t *testing.T, st State) {
				if st.Observed {
					t.Error("the event's fact was replaced by the poll")
				}
			}},
		{name: "a stale close is recorded as closed by the sweeper",
			ops:        with(waiting, created(wang, sec(30), 3), staleClosing(wang, sec(30)), closed(wang, sec(2000), 4)),
			wantStatus: StatusClosed, wantBy: ClosedByStale},
		{name: "a waiting customer who asks to leave has left",
			ops: hasLeft, wantStatus: StatusLeft,
			check: func(t *testing.T, st State) {
				if !st.QueuedAt.Equal(sec(0)) || !st.Since.Equal(sec(60)) || st.Position != 0 {
					t.Errorf("%+v", st)
				}
			}},
		{name: "leaving is superseded by a session that started after the message",
			ops: with(waiting, created(wang, sec(70), 3), left(sec(60), 2, sec(0))), wantStatus: StatusServed},
		{name: "a snapshot still listing the old case keeps the customer left",
			ops: with(hasLeft, seenWaiting(sec(120), sec(0), 1)), wantStatus: StatusLeft},
		{name: "a listing dated by a later leave phrase (latest_time) keeps the customer left",
			ops: with(hasLeft, message(sec(90), 3, true), seenWaiting(sec(120), sec(90), 1)), wantStatus: StatusLeft},
		{name: "a new queue case after leaving makes the customer waiting",
			ops: with(hasLeft, seenWaiting(sec(300), sec(200), 1)), wantStatus: StatusWaiting},
		{name: "a wait estimate does not bring a customer who left back",
			ops: with(hasLeft, estimated(sec(120), 1, 60)), wantStatus: StatusLeft},
		{name: "another leave phrase changes nothing",
			ops: with(hasLeft, message(sec(70), 3, true)), wantStatus: StatusLeft},
		{name: "any other message after leaving puts the customer back in the queue",
			ops: with(hasLeft, message(sec(70), 3, false)), wantStatus: StatusWaiting,
			check: func(t *testing.T, st State) {
				if !st.QueuedAt.Equal(sec(0)) {
					t.Errorf("queued %v; the old case keeps its place", st.QueuedAt)
				}
			}},
		{name: "a session created after leaving is closed at once (deferred close)",
			ops: with(hasLeft, created(wang, sec(120), 3)), wantStatus: StatusLeft, wantCloses: []string{wang}},
		{name: "a session created in the second of the leave phrase is closed too",
			ops: with(hasLeft, created(wang, sec(60), 3)), wantStatus: StatusLeft, wantCloses: []string{wang}},
		{name: "a session created before leaving is an old event",
			ops: with(hasLeft, created(wang, sec(50), 1)), wantStatus: StatusLeft},
		{name: "a redelivered create is closed again until the close event arrives",
			ops: with(hasLeft, created(wang, sec(120), 3), created(wang, sec(120), 3)), wantStatus: StatusLeft, wantCloses: []string{wang, wang}},
		{name: "after the deferred close a redelivered create does nothing",
			ops:        with(hasLeft, created(wang, sec(120), 3), closed(wang, sec(121), 4), created(wang, sec(120), 3)),
			wantStatus: StatusLeft, wantCloses: []string{wang},
			check: func(t *testing.T, st State) {
				if !st.DeferredClose.Closed {
					t.Error("deferred close not recorded as done")
				}
			}},
		{name: "a session after the deferred one closed is a new conversation",
			ops:        with(hasLeft, created(wang, sec(120), 3), closed(wang, sec(121), 4), created(li, sec(500), 5)),
			wantStatus: StatusServed, wantKf: li, wantCloses: []string{wang}},
		{name: "a session long after leaving is a new conversation",
			ops: with(hasLeft, created(wang, sec(60).Add(within+time.Second), 3)), wantStatus: StatusServed, wantKf: wang},
		{name: "the deferred session handed on before kefu's close is closed with the new agent",
			ops: with(hasLeft, created(wang, sec(120), 3), switched(wang, li, sec(121), 4)), wantStatus: StatusLeft, wantCloses: []string{wang, li}},
		{name: "a poll finding the left customer served repairs a lost create with a deferred close",
			ops: with(hasLeft, seenServed(wang, sec(120), sec(300))), wantStatus: StatusLeft, wantCloses: []string{wang}},
		{name: "a message after the deferred close starts a new wait",
			ops:        with(hasLeft, created(wang, sec(120), 3), closed(wang, sec(121), 4), message(sec(200), 5, false)),
			wantStatus: StatusWaiting, wantCloses: []string{wang},
			check: func(t *testing.T, st State) {
				if !st.QueuedAt.Equal(sec(200)) {
					t.Errorf("queued %v", st.QueuedAt)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, closes := run(tt.ops...)
			if st.Status != tt.wantStatus {
				t.Fatalf("status %s, want %s (%+v)", st.Status, tt.wantStatus, st)
			}
			if tt.wantKf != "" && st.KfAccount != tt.wantKf {
				t.Errorf("kf %q, want %q", st.KfAccount, tt.wantKf)
			}
			if tt.wantBy != "" && st.ClosedBy != tt.wantBy {
				t.Errorf("closed by %q, want %q", st.ClosedBy, tt.wantBy)
			}
			if len(closes) != len(tt.wantCloses) {
				t.Fatalf("closes %v, want %v", closes, tt.wantCloses)
			}
			for i := range closes {
				if closes[i] != tt.wantCloses[i] {
					t.Fatalf("closes %v, want %v", closes, tt.wantCloses)
				}
			}
			if tt.check != nil {
				tt.check(t, st)
			}
		})
	}
}

func TestActivityIsMessagesAndSessionStarts(t *testing.T) {
	tests := []struct {
		name string
		ops  []op
		want time.Time
	}{
		{"a customer message is activity", []op{message(sec(10), 1, false)}, sec(10)},
		{"a created session is activity", []op{message(sec(10), 1, false), created(wang, sec(20), 2)}, sec(20)},
		{"a switch is activity", []op{created(wang, sec(20), 2), switched(wang, li, sec(30), 3)}, sec(30)},
		{"a close is not activity", []op{created(wang, sec(20), 2), closed(wang, sec(40), 3)}, sec(20)},
		{"a poll is not activity", []op{message(sec(10), 1, false), seenServed(wang, sec(5), sec(50))}, sec(10)},
		{"an old event does not move activity back", []op{message(sec(30), 2, false), message(sec(10), 1, false)}, sec(30)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := run(tt.ops...)
			if !st.LastActivity.Equal(tt.want) {
				t.Errorf("last activity %v, want %v", st.LastActivity, tt.want)
			}
		})
	}
}

func TestNoticeSuppression(t *testing.T) {
	tests := []struct {
		name               string
		st                 State
		wantWait, wantSess bool
	}{
		{"a waiting customer hears about the queue", State{Status: StatusWaiting}, false, false},
		{"an unknown customer hears about the queue", State{Status: StatusNone}, false, false},
		{"a served customer hears no wait messages", State{Status: StatusServed}, true, false},
		{"a customer who left hears nothing", State{Status: StatusLeft}, true, true},
		{"a session kefu is closing is not announced again", State{Status: StatusServed, Closing: Closing{Reason: ClosedByStale}}, true, true},
		{"a session kefu failed to close is announced normally", State{Status: StatusServed, Closing: Closing{Reason: ClosedByStale, Failed: true}}, true, false},
		{"a stale close is not announced by the notifier", State{Status: StatusClosed, ClosedBy: ClosedByStale}, false, true},
		{"an agent's close is announced", State{Status: StatusClosed, ClosedBy: ClosedByAgent}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.st.SuppressWaitNotice(); got != tt.wantWait {
				t.Errorf("SuppressWaitNotice = %v", got)
			}
			if got := tt.st.SuppressSessionNotice(); got != tt.wantSess {
				t.Errorf("SuppressSessionNotice = %v", got)
			}
		})
	}
}
