package customers

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

// Who or what ended a session (State.ClosedBy).
const (
	ClosedByAgent   = "agent"   // kf_close_session that kefu did not ask for
	ClosedByStale   = "stale"   // queue care's sweeper: no activity for its StaleAfter
	ClosedByLeft    = "left"    // the deferred close of a customer who had left
	ClosedByUnknown = "unknown" // found gone by reconciliation; the event was lost
)

// State is the read model of one customer, kept in the kefu_customers
// bucket under the openid and served at GET /api/kf/customers/{openid}.
// Its JSON is the stored format: fields are only ever added, so a record
// written by an older kefu still reads (testdata/*-v1.json).
type State struct {
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

	// LastSession is the latest session event by its time, which the
	// notifier records and reads (session.go). It is bookkeeping, not
	// part of the customer's state as GET /api/kf/customers/{openid}
	// answers it.
	LastSession SessionMark `json:"last_session,omitzero"`
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
	// close over (services/queuecare/sweeper.go).
	Fence uint64 `json:"fence,omitempty"`
}

// DeferredClose is the session opened for a customer who had left.
type DeferredClose struct {
	KfAccount string    `json:"kf_account"`
	SessionAt time.Time `json:"session_at,omitzero"`
	// Closed: kf_close_session arrived, or the session was found gone.
	Closed bool `json:"closed,omitempty"`
}

// Pending reports a deferred close kefu has yet to see done.
func (d DeferredClose) Pending() bool { return !d.SessionAt.IsZero() && !d.Closed }

// SuppressWaitNotice reports whether a wait message must not be sent: the
// customer left the queue or is being served.
func (c State) SuppressWaitNotice() bool {
	return c.Status == StatusLeft || c.Status == StatusServed
}

// SuppressSessionNotice reports whether the notifier must stay silent
// about this customer's session events: they left (kefu closes the
// session an agent opens for them), or kefu closed or is closing the
// session itself and sent its own message.
func (c State) SuppressSessionNotice() bool {
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

// IdleSince is the start of a served session's current idle stretch.
func (c State) IdleSince() time.Time {
	if c.LastActivity.After(c.Since) {
		return c.LastActivity
	}
	return c.Since
}

// ActiveAt is the latest sign of life that makes a customer worth
// reconciling.
func (c State) ActiveAt() time.Time {
	t := c.LastActivity
	for _, u := range []time.Time{c.FactAt, c.EstimatedAt, c.PositionAt} {
		if u.After(t) {
			t = u
		}
	}
	return t
}
