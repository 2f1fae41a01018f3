package customers

import "time"

// The transitions below move a State by one fact; each reports whether it
// changed anything, so the store writes only real changes. within is the
// deferred-close window: only a session that begins within it of a
// customer's leaving is their stale case.

// ObservedAt is the time of the fact an observation made at p stands for:
// an observation made at p (nanoseconds, kefu's clock)
// counts as a fact of the second before p's, so it never overrides an event
// WeChat stamped with the same second (CreateTime has whole seconds) — and
// a clock skew under a second cannot invert them.
func ObservedAt(p time.Time) time.Time { return p.Truncate(time.Second).Add(-time.Second) }

// newerEvent reports whether a WeChat event at (at, seq) is newer than the
// fact behind the current status.
func (c *State) newerEvent(at time.Time, seq uint64) bool {
	switch {
	case at.After(c.FactAt):
		return true
	case at.Before(c.FactAt):
		return false
	}
	return c.Observed || seq > c.FactSeq
}

// become sets a new status with its fact and clears what belongs to the
// old one.
func (c *State) become(s Status, at time.Time, seq uint64, observed bool) {
	c.Status, c.FactAt, c.FactSeq, c.Observed = s, at, seq, observed
	if s != StatusWaiting {
		c.Position, c.PositionAt, c.WaitSeconds, c.WaitP90Seconds, c.EstimatedAt = 0, time.Time{}, 0, 0, time.Time{}
	}
	if s != StatusWaiting && s != StatusLeft {
		c.QueuedAt = time.Time{}
	}
	c.KfAccount, c.ClosedBy, c.Closing, c.DeferredClose = "", "", Closing{}, DeferredClose{}
}

// Touch records activity at at.
func (c *State) Touch(at time.Time) bool {
	if at.After(c.LastActivity) {
		c.LastActivity = at
		return true
	}
	return false
}

// Effect is what a transition asks the caller to do once it is stored.
type Effect struct {
	// CloseKf: close this agent's session with the customer (deferred close).
	CloseKf string
}

// deferSession handles a session (created, switched, or seen by a poll)
// that appeared at at for a customer who left. handled is false when the
// session is a new conversation rather than the stale case.
func (c *State) deferSession(kf string, at time.Time, within time.Duration) (changed, handled bool, eff Effect) {
	d := c.DeferredClose
	switch {
	case at.Before(c.FactAt):
		// A session from before they left: an old event; nothing to do.
		// One of the same second is taken as the stale case: they asked
		// to leave, and closing matches what they asked for.
		return false, true, Effect{}
	case at.Sub(c.FactAt) > within:
		return false, false, Effect{}
	case d.SessionAt.Equal(at) && d.KfAccount == kf:
		// The same session again (a redelivery, or a poll after the event).
		if d.Closed {
			return false, true, Effect{}
		}
		return false, true, Effect{CloseKf: kf}
	case d.Closed:
		// The stale case was closed already: this is a new conversation.
		return false, false, Effect{}
	}
	c.DeferredClose = DeferredClose{KfAccount: kf, SessionAt: at}
	return true, true, Effect{CloseKf: kf}
}

// ApplyCreated: kf_create_session at (at, seq).
func (c *State) ApplyCreated(kf string, at time.Time, seq uint64, within time.Duration) (bool, Effect) {
	changed := c.Touch(at)
	if c.Status == StatusLeft {
		ch, handled, eff := c.deferSession(kf, at, within)
		if handled {
			return changed || ch, eff
		}
	}
	return c.servedBy(kf, at, seq, changed), Effect{}
}

// servedBy makes kf serve the customer from a session event at (at, seq),
// unless a newer fact stands; changed says whether the caller changed
// anything already.
func (c *State) servedBy(kf string, at time.Time, seq uint64, changed bool) bool {
	if !c.newerEvent(at, seq) {
		return changed
	}
	c.become(StatusServed, at, seq, false)
	c.KfAccount, c.Since = kf, at
	return true
}

// ApplySwitched: kf_switch_session at (at, seq).
func (c *State) ApplySwitched(from, to string, at time.Time, seq uint64, within time.Duration) (bool, Effect) {
	changed := c.Touch(at)
	if c.Status == StatusLeft {
		d := c.DeferredClose
		if d.Pending() && at.After(d.SessionAt) && (from == "" || from == d.KfAccount) {
			// The stale session was handed on before kefu's close landed.
			c.DeferredClose.KfAccount = to
			return true, Effect{CloseKf: to}
		}
		if ch, handled, eff := c.deferSession(to, at, within); handled {
			return changed || ch, eff
		}
	}
	return c.servedBy(to, at, seq, changed), Effect{}
}

// ApplyClosed: kf_close_session at (at, seq).
func (c *State) ApplyClosed(kf string, at time.Time, seq uint64) bool {
	if c.Status == StatusLeft {
		d := c.DeferredClose
		if d.Pending() && !at.Before(d.SessionAt) && (kf == "" || kf == d.KfAccount) {
			c.DeferredClose.Closed = true
			return true
		}
		return false
	}
	if !c.newerEvent(at, seq) {
		return false
	}
	by := ClosedByAgent
	if c.Status == StatusServed && c.Closing.Reason != "" && c.Closing.KfAccount == kf {
		by = c.Closing.Reason
	}
	c.become(StatusClosed, at, seq, false)
	c.Since, c.KfAccount, c.ClosedBy = at, kf, by
	return true
}

// ApplyMessage: a customer message at (at, seq). A message other than a
// leave phrase from a customer who left means they want service after
// all: they are waiting again.
func (c *State) ApplyMessage(at time.Time, seq uint64, leave bool) bool {
	changed := c.Touch(at)
	if at.After(c.LastMessageAt) {
		c.LastMessageAt, changed = at, true
	}
	if c.Status != StatusLeft || leave || !c.newerEvent(at, seq) {
		return changed
	}
	queued := c.QueuedAt
	if !c.DeferredClose.SessionAt.IsZero() || queued.IsZero() {
		// The old case is gone (an agent took it and kefu closed it): the
		// message starts a new one, if ingest transfers it.
		queued = at
	}
	c.become(StatusWaiting, at, seq, false)
	c.Since, c.QueuedAt = queued, queued
	return true
}

// ApplyJoined: ingest transferred a message the customer sent at at
// (kefu.wechat.kf.queue.joined, sequence seq). Unless they wait already
// (the first join counts), are served (the message went to their agent)
// or left (ApplyMessage decides whether they came back), they joined the
// queue then.
func (c *State) ApplyJoined(at time.Time, seq uint64) bool {
	switch c.Status {
	case StatusWaiting, StatusServed, StatusLeft:
		return false
	}
	return c.queueEvent(StatusWaiting, at, seq, at)
}

// queueEvent applies the event (at, seq) that makes the customer waiting
// or left, in the queue since queued, unless a newer fact stands.
func (c *State) queueEvent(st Status, at time.Time, seq uint64, queued time.Time) bool {
	if !c.newerEvent(at, seq) {
		return false
	}
	c.become(st, at, seq, false)
	c.Since, c.QueuedAt = at, queued
	return true
}

// Outcomes of ApplyLeft.
type LeaveResult int

const (
	LeaveApplied    LeaveResult = iota // the customer is now left
	LeaveAlready                       // they had left before
	LeaveSuperseded                    // a newer fact (say, served) stands
)

// ApplyLeft: the customer, waiting since queued, asked to leave with the
// message at (at, seq).
func (c *State) ApplyLeft(at time.Time, seq uint64, queued time.Time) LeaveResult {
	if c.Status == StatusLeft {
		return LeaveAlready
	}
	if !c.queueEvent(StatusLeft, at, seq, queued) {
		return LeaveSuperseded
	}
	return LeaveApplied
}

// WaitingSeen is a poll that saw the customer in the queue.
type WaitingSeen struct {
	At       time.Time // the poll
	QueuedAt time.Time // zero when the poll does not say
	Position int       // 0: not known
	// Estimate is set for a WaitEstimated.
	Estimate             bool
	WaitSeconds, WaitP90 int64
}

// ApplyWaitingSeen: a queue snapshot, wait estimate or getsession saw the
// customer waiting.
func (c *State) ApplyWaitingSeen(w WaitingSeen) bool {
	t := ObservedAt(w.At)
	if w.QueuedAt.After(t) {
		t = w.QueuedAt
	}
	changed := false
	switch {
	case c.Status == StatusLeft:
		// Their stale case stays listed; only a newer case counts. With
		// getwaitcase's latest_time the listed time is their latest
		// message, which may be a second leave phrase: not a new case.
		if w.QueuedAt.IsZero() || !w.QueuedAt.After(c.FactAt) || !w.QueuedAt.After(c.LastMessageAt) {
			return false
		}
		fallthrough
	case c.Status != StatusWaiting:
		if c.Status != StatusLeft && !t.After(c.FactAt) {
			return false
		}
		queued := w.QueuedAt
		if queued.IsZero() {
			queued = w.At.Truncate(time.Second)
		}
		c.become(StatusWaiting, t, 0, true)
		c.Since, c.QueuedAt = queued, queued
		changed = true
	case !w.QueuedAt.IsZero() && !w.QueuedAt.Equal(c.QueuedAt):
		c.Since, c.QueuedAt = w.QueuedAt, w.QueuedAt
		changed = true
	}
	if w.Position > 0 && w.At.After(c.PositionAt) {
		c.Position, c.PositionAt = w.Position, w.At
		changed = true
	}
	if w.Estimate && w.At.After(c.EstimatedAt) {
		c.Position, c.PositionAt = w.Position, w.At
		c.WaitSeconds, c.WaitP90Seconds, c.EstimatedAt = w.WaitSeconds, w.WaitP90, w.At
		changed = true
	}
	return changed
}

// ApplyServedSeen: a queue snapshot or getsession at p saw kf serving the
// customer in a session that began at sessionAt.
func (c *State) ApplyServedSeen(kf string, sessionAt, p time.Time, within time.Duration) (bool, Effect) {
	if c.Status == StatusLeft {
		if ch, handled, eff := c.deferSession(kf, sessionAt, within); handled {
			return ch, eff
		}
	}
	if c.Status == StatusServed && c.KfAccount == kf && (sessionAt.IsZero() || c.Since.Equal(sessionAt)) {
		return false, Effect{}
	}
	t := ObservedAt(p)
	if sessionAt.After(t) {
		t = sessionAt
	}
	if !t.After(c.FactAt) {
		return false, Effect{}
	}
	c.become(StatusServed, t, 0, true)
	c.KfAccount, c.Since = kf, sessionAt
	if sessionAt.IsZero() {
		c.Since = p.Truncate(time.Second)
	}
	return true, Effect{}
}

// ApplyIdleSeen: getsession at p says the customer neither waits nor is
// served; at is the time of the fact (ObservedAt(p) for a poll).
func (c *State) ApplyIdleSeen(at time.Time) bool {
	switch c.Status {
	case StatusWaiting:
		if !at.After(c.FactAt) {
			return false
		}
		c.become(StatusNone, at, 0, true)
		c.Since = at
		return true
	case StatusServed:
		if !at.After(c.FactAt) {
			return false
		}
		by := ClosedByUnknown
		if c.Closing.Reason != "" && !c.Closing.Failed {
			by = c.Closing.Reason
		}
		kf := c.KfAccount
		c.become(StatusClosed, at, 0, true)
		c.Since, c.KfAccount, c.ClosedBy = at, kf, by
		return true
	case StatusLeft:
		if c.DeferredClose.Pending() && at.After(c.DeferredClose.SessionAt) {
			c.DeferredClose.Closed = true
			return true
		}
	}
	return false
}
