package waitmodel

import "time"

// WaitingCase is one entry of getwaitcase: a customer waiting to be taken.
// KfAccount is set when the customer asked for a specific agent; such a
// customer waits for that agent only.
//
// Inferred marks a customer getwaitcase did not list (it lists the 100
// earliest) but kefu saw join (Members): Since is the join time, and the
// place is inferred from the order of the joins.
type WaitingCase struct {
	OpenID    string
	Since     time.Time
	KfAccount string
	Inferred  bool
}

// Session is one entry of getsessionlist: a chat an agent is serving.
type Session struct {
	OpenID string
	Since  time.Time
}

// Agent is one entry of getonlinekflist, with its getsessionlist.
// AutoAccept is the number of chats the agent accepts automatically (its
// slots); Accepted the number it serves now. Sessions may be left empty
// when getsessionlist was not polled: the estimator then keeps the sessions
// it learned from events.
type Agent struct {
	Account    string
	Status     int
	AutoAccept int
	Accepted   int
	Sessions   []Session
}

// Snapshot is what one poll of the queue returns. Count may exceed
// len(Waiting): getwaitcase lists only the 100 earliest cases. Waiting
// holds the listed cases, then the inferred ones (Members.Complete).
//
// HoldAbandon asks Observe not to conclude any abandonment from this
// snapshot: a session event that would explain a vanished case may not
// have been applied yet (the caller's event consumer lags). The cases stay
// pending until a snapshot without it.
type Snapshot struct {
	At          time.Time
	Count       int
	Waiting     []WaitingCase
	Agents      []Agent
	HoldAbandon bool
}

// listed is the number of cases getwaitcase listed (not inferred).
func (s *Snapshot) listed() int {
	n := 0
	for i := range s.Waiting {
		if !s.Waiting[i].Inferred {
			n++
		}
	}
	return n
}

// Estimate is the predicted wait of one customer, counted from the
// snapshot time. Position is the 1-based place in the queue the customer is
// actually in: the global FIFO queue, or the queue of the agent it asked
// for (KfAccount set). Unknown is true when no online agent can take the
// customer (nobody online, or the requested agent is offline): Wait and
// WaitP90 are then zero and must not be shown as a duration.
type Estimate struct {
	OpenID    string
	KfAccount string
	Position  int
	Wait      time.Duration
	WaitP90   time.Duration
	Model     string
	Unknown   bool
	// Inferred: the customer is not listed by getwaitcase; Position is
	// inferred from the order of the joins (WaitingCase.Inferred).
	Inferred bool
}

// Abandonment is a customer who left the queue without being served,
// inferred when a listed case vanished from getwaitcase and no session was
// created for it within Config.AbandonGrace.
type Abandonment struct {
	OpenID string
	Waited time.Duration
	At     time.Time
}

// Result is what Observe returns for one snapshot.
//
// Estimates holds one entry per waiting case (listed, then inferred), in
// queue order; its array is reused by the next Observe.
// Unlisted is Count − len(Waiting): customers beyond the 100 listed, whose
// openid and requested agent are unknown; they are all later than the
// listed ones, so they are estimated as global customers behind them. Tail
// is the estimate for the last of them (position Count, OpenID empty),
// meaningful when Unlisted > 0; Estimator.EstimatePosition gives any other.
type Result struct {
	At         time.Time
	Count      int
	Estimates  []Estimate
	Unlisted   int
	Tail       Estimate
	Abandoned  []Abandonment
	ServiceFor time.Duration // current mean session length under full load, 1/r
}
