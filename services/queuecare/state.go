package queuecare

import "time"

// Status is where a customer stands with 多客服.
type Status string

// Statuses of a customer.
const (
	// StatusNone: not known to wait or to be served.
	StatusNone Status = "none"
	// StatusWaiting: in the 多客服 queue.
	StatusWaiting Status = "waiting"
	// StatusServed: an agent serves the customer.
	StatusServed Status = "served"
	// StatusClosed: the last session ended.
	StatusClosed Status = "closed"
	// StatusLeft: the customer asked to leave the queue. WeChat cannot
	// remove a case no agent has accepted, so they may still be listed
	// by getwaitcase; kefu sends them no wait messages and closes the
	// session an agent opens for them (the deferred close).
	StatusLeft Status = "left"
)

// Who or what ended a session (CustomerState.ClosedBy).
const (
	ClosedByAgent   = "agent"   // kf_close_session that kefu did not ask for
	ClosedByStale   = "stale"   // kefu's sweeper: no activity for Config.StaleAfter
	ClosedByLeft    = "left"    // the deferred close of a customer who had left
	ClosedByUnknown = "unknown" // found gone by reconciliation; the event was lost
)

// CustomerState is the read model of one customer, kept in the
// kefu_customers bucket under the openid and served at
// GET /api/kf/customers/{openid}.
type CustomerState struct {
	OpenID string `json:"openid"`
	Status Status `json:"status"`
	// Since is when the current status began: waiting → when the customer
	// entered the queue; served → when KfAccount took the session (created
	// or switched); closed → when it closed; left → when they asked to
	// leave.
	Since time.Time `json:"since,omitzero"`

	// Waiting: the place in the queue (PositionAt: the poll that saw it)
	// and the latest estimate (EstimatedAt: the poll it was made at).
	Position       int       `json:"position,omitempty"`
	PositionAt     time.Time `json:"position_at,omitzero"`
	WaitSeconds    int64     `json:"wait_seconds,omitempty"`
	WaitP90Seconds int64     `json:"wait_p90_seconds,omitempty"`
	EstimatedAt    time.Time `json:"estimated_at,omitzero"`
	// QueuedAt is when the customer entered the queue (waiting and left).
	QueuedAt time.Time `json:"queued_at,omitzero"`

	// KfAccount serves the customer (served) or served the session that
	// ended (closed).
	KfAccount string `json:"kf_account,omitempty"`
	// ClosedBy says who ended the session (closed): ClosedBy….
	ClosedBy string `json:"closed_by,omitempty"`
	// Closing is set while kefu itself closes the served session.
	Closing Closing `json:"closing,omitzero"`
	// DeferredClose is the session an agent opened for a customer who had
	// left, which kefu closes (left).
	DeferredClose DeferredClose `json:"deferred_close,omitzero"`

	// LastActivity is the latest customer message or session event
	// (created, switched): what the stale sweeper measures.
	LastActivity time.Time `json:"last_activity,omitzero"`
	// LastMessageAt is the latest customer message.
	LastMessageAt time.Time `json:"last_message_at,omitzero"`
	// CheckedAt is the latest getsession reconciliation.
	CheckedAt time.Time `json:"checked_at,omitzero"`

	// FactAt, FactSeq and Observed order the facts that set Status: a
	// WeChat event carries its CreateTime (whole seconds) and its
	// KEFU_WECHAT sequence, which orders two events of one second; a poll
	// (queue snapshot, estimate, getsession) is an observation and loses
	// ties. A fact older than these never overrides the status.
	FactAt   time.Time `json:"fact_at,omitzero"`
	FactSeq  uint64    `json:"fact_seq,omitempty"`
	Observed bool      `json:"observed,omitempty"`
	// UpdatedAt is when the record was written, by the writer's clock.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Closing marks a served session kefu is closing.
type Closing struct {
	// Reason is ClosedByStale.
	Reason    string    `json:"reason"`
	KfAccount string    `json:"kf_account"`
	SessionAt time.Time `json:"session_at,omitzero"`
	At        time.Time `json:"at,omitzero"`
	// Done: kfsession/close succeeded; Failed: WeChat refused it for good.
	Done   bool `json:"done,omitempty"`
	Failed bool `json:"failed,omitempty"`
	// Fence is the sweeper lease's fence of the tenure that marked it: only
	// that tenure closes the session, and a later one takes an unfinished
	// close over (sweeper.go).
	Fence uint64 `json:"fence,omitempty"`
}

// DeferredClose is the session opened for a customer who had left.
type DeferredClose struct {
	KfAccount string    `json:"kf_account"`
	SessionAt time.Time `json:"session_at,omitzero"`
	// Closed: kf_close_session arrived, or the session was found gone.
	Closed bool `json:"closed,omitempty"`
}

func (d DeferredClose) pending() bool { return !d.SessionAt.IsZero() && !d.Closed }

// SuppressWaitNotice reports whether a wait message must not be sent: the
// customer left the queue or is being served.
func (c CustomerState) SuppressWaitNotice() bool {
	return c.Status == StatusLeft || c.Status == StatusServed
}

// SuppressSessionNotice reports whether the notifier must stay silent
// about this customer's session events: they left (kefu closes the
// session an agent opens for them), or kefu closed or is closing the
// session itself and sent its own message.
func (c CustomerState) SuppressSessionNotice() bool {
	switch {
	case c.Status == StatusLeft:
		return true
	case c.Status == StatusClosed && (c.ClosedBy == ClosedByStale || c.ClosedBy == ClosedByLeft):
		return true
	case c.Status == StatusServed && c.Closing.Reason != "" && !c.Closing.Failed:
		return true
	}
	return false
}

// idleSince is the start of a served session's current idle stretch.
func (c CustomerState) idleSince() time.Time {
	if c.LastActivity.After(c.Since) {
		return c.LastActivity
	}
	return c.Since
}

// activeAt is the latest sign of life that makes a customer worth
// reconciling.
func (c CustomerState) activeAt() time.Time {
	t := c.LastActivity
	for _, u := range []time.Time{c.FactAt, c.EstimatedAt, c.PositionAt} {
		if u.After(t) {
			t = u
		}
	}
	return t
}

// observationMargin: an observation made at P (nanoseconds, kefu's clock)
// counts as a fact of the second before P's, so it never overrides an event
// WeChat stamped with the same second (CreateTime has whole seconds) — and
// a clock skew under a second cannot invert them.
func observedAt(p time.Time) time.Time { return p.Truncate(time.Second).Add(-time.Second) }

// newerEvent reports whether a WeChat event at (at, seq) is newer than the
// fact behind the current status.
func (c *CustomerState) newerEvent(at time.Time, seq uint64) bool {
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
func (c *CustomerState) become(s Status, at time.Time, seq uint64, observed bool) {
	c.Status, c.FactAt, c.FactSeq, c.Observed = s, at, seq, observed
	if s != StatusWaiting {
		c.Position, c.PositionAt, c.WaitSeconds, c.WaitP90Seconds, c.EstimatedAt = 0, time.Time{}, 0, 0, time.Time{}
	}
	if s != StatusWaiting && s != StatusLeft {
		c.QueuedAt = time.Time{}
	}
	c.KfAccount, c.ClosedBy, c.Closing, c.DeferredClose = "", "", Closing{}, DeferredClose{}
}

// touch records activity at at.
func (c *CustomerState) touch(at time.Time) bool {
	if at.After(c.LastActivity) {
		c.LastActivity = at
		return true
	}
	return false
}

// effect is what a transition asks the caller to do once it is stored.
type effect struct {
	// closeKf: close this agent's session with the customer (deferred close).
	closeKf string
}

// deferSession handles a session (created, switched, or seen by a poll)
// that appeared at at for a customer who left. handled is false when the
// session is a new conversation rather than the stale case.
func (c *CustomerState) deferSession(kf string, at time.Time, within time.Duration) (changed, handled bool, eff effect) {
	d := c.DeferredClose
	switch {
	case at.Before(c.FactAt):
		// A session from before they left: an old event; nothing to do.
		// One of the same second is taken as the stale case: they asked
		// to leave, and closing matches what they asked for.
		return false, true, effect{}
	case at.Sub(c.FactAt) > within:
		return false, false, effect{}
	case d.SessionAt.Equal(at) && d.KfAccount == kf:
		// The same session again (a redelivery, or a poll after the event).
		if d.Closed {
			return false, true, effect{}
		}
		return false, true, effect{closeKf: kf}
	case d.Closed:
		// The stale case was closed already: this is a new conversation.
		return false, false, effect{}
	}
	c.DeferredClose = DeferredClose{KfAccount: kf, SessionAt: at}
	return true, true, effect{closeKf: kf}
}

// applyCreated: kf_create_session at (at, seq).
func (c *CustomerState) applyCreated(kf string, at time.Time, seq uint64, within time.Duration) (bool, effect) {
	changed := c.touch(at)
	if c.Status == StatusLeft {
		ch, handled, eff := c.deferSession(kf, at, within)
		if handled {
			return changed || ch, eff
		}
	}
	if !c.newerEvent(at, seq) {
		return changed, effect{}
	}
	c.become(StatusServed, at, seq, false)
	c.KfAccount, c.Since = kf, at
	return true, effect{}
}

// applySwitched: kf_switch_session at (at, seq).
func (c *CustomerState) applySwitched(from, to string, at time.Time, seq uint64, within time.Duration) (bool, effect) {
	changed := c.touch(at)
	if c.Status == StatusLeft {
		d := c.DeferredClose
		if d.pending() && at.After(d.SessionAt) && (from == "" || from == d.KfAccount) {
			// The stale session was handed on before kefu's close landed.
			c.DeferredClose.KfAccount = to
			return true, effect{closeKf: to}
		}
		if ch, handled, eff := c.deferSession(to, at, within); handled {
			return changed || ch, eff
		}
	}
	if !c.newerEvent(at, seq) {
		return changed, effect{}
	}
	c.become(StatusServed, at, seq, false)
	c.KfAccount, c.Since = to, at
	return true, effect{}
}

// applyClosed: kf_close_session at (at, seq).
func (c *CustomerState) applyClosed(kf string, at time.Time, seq uint64) bool {
	if c.Status == StatusLeft {
		d := c.DeferredClose
		if d.pending() && !at.Before(d.SessionAt) && (kf == "" || kf == d.KfAccount) {
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

// applyMessage: a customer message at (at, seq). A message other than a
// leave phrase from a customer who left means they want service after
// all: they are waiting again.
func (c *CustomerState) applyMessage(at time.Time, seq uint64, leave bool) bool {
	changed := c.touch(at)
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

// applyJoined: ingest transferred a message the customer sent at at
// (kefu.wechat.kf.queue.joined, sequence seq). Unless they wait already
// (the first join counts), are served (the message went to their agent)
// or left (applyMessage decides whether they came back), they joined the
// queue then.
func (c *CustomerState) applyJoined(at time.Time, seq uint64) bool {
	switch c.Status {
	case StatusWaiting, StatusServed, StatusLeft:
		return false
	}
	if !c.newerEvent(at, seq) {
		return false
	}
	c.become(StatusWaiting, at, seq, false)
	c.Since, c.QueuedAt = at, at
	return true
}

// Outcomes of applyLeft.
type leaveResult int

const (
	leaveApplied    leaveResult = iota // the customer is now left
	leaveAlready                       // they had left before
	leaveSuperseded                    // a newer fact (say, served) stands
)

// applyLeft: the customer, waiting since queued, asked to leave with the
// message at (at, seq).
func (c *CustomerState) applyLeft(at time.Time, seq uint64, queued time.Time) leaveResult {
	if c.Status == StatusLeft {
		return leaveAlready
	}
	if !c.newerEvent(at, seq) {
		return leaveSuperseded
	}
	c.become(StatusLeft, at, seq, false)
	c.Since, c.QueuedAt = at, queued
	return leaveApplied
}

// waitingSeen is a poll that saw the customer in the queue.
type waitingSeen struct {
	At       time.Time // the poll
	QueuedAt time.Time // zero when the poll does not say
	Position int       // 0: not known
	// Estimate is set for a WaitEstimated.
	Estimate             bool
	WaitSeconds, WaitP90 int64
}

// applyWaitingSeen: a queue snapshot, wait estimate or getsession saw the
// customer waiting.
func (c *CustomerState) applyWaitingSeen(w waitingSeen) bool {
	t := observedAt(w.At)
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

// applyServedSeen: a queue snapshot or getsession at p saw kf serving the
// customer in a session that began at sessionAt.
func (c *CustomerState) applyServedSeen(kf string, sessionAt, p time.Time, within time.Duration) (bool, effect) {
	if c.Status == StatusLeft {
		if ch, handled, eff := c.deferSession(kf, sessionAt, within); handled {
			return ch, eff
		}
	}
	if c.Status == StatusServed && c.KfAccount == kf && (sessionAt.IsZero() || c.Since.Equal(sessionAt)) {
		return false, effect{}
	}
	t := observedAt(p)
	if sessionAt.After(t) {
		t = sessionAt
	}
	if !t.After(c.FactAt) {
		return false, effect{}
	}
	c.become(StatusServed, t, 0, true)
	c.KfAccount, c.Since = kf, sessionAt
	if sessionAt.IsZero() {
		c.Since = p.Truncate(time.Second)
	}
	return true, effect{}
}

// applyIdleSeen: getsession at p says the customer neither waits nor is
// served; at is the time of the fact (observedAt(p) for a poll).
func (c *CustomerState) applyIdleSeen(at time.Time) bool {
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
		if c.DeferredClose.pending() && at.After(c.DeferredClose.SessionAt) {
			c.DeferredClose.Closed = true
			return true
		}
	}
	return false
}
