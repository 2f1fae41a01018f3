package queuesim

import (
	"time"

	"github.com/kefu-io/kefu/internal/waitmodel"
)

// EventKind says what happened.
type EventKind int

const (
	// Arrived: a customer wrote in (not reported by WeChat as such).
	Arrived EventKind = iota
	// SessionCreated: kf_create_session.
	SessionCreated
	// SessionClosed: kf_close_session.
	SessionClosed
	// SessionSwitched: kf_switch_session (From → To).
	SessionSwitched
	// Abandoned: the customer left the queue (WeChat reports nothing;
	// production infers it from getwaitcase).
	Abandoned
	// AgentOffline / AgentOnline: the agent left or rejoined
	// getonlinekflist.
	AgentOffline
	AgentOnline
)

func (k EventKind) String() string {
	return [...]string{"arrived", "session_created", "session_closed", "session_switched", "abandoned", "agent_offline", "agent_online"}[k]
}

// Event is one observable occurrence; At is truncated to Resolution.
type Event struct {
	Kind      EventKind
	At        time.Time
	Customer  int
	OpenID    string
	KfAccount string // agent (SessionCreated/Closed, agent events) or requested agent (Arrived)
	From, To  string // SessionSwitched
	Waited    time.Duration
}

// Hooks receive what the simulation produces, in time order. Any may be
// nil. Inside a hook, Sim.Snapshot describes the state right after the
// event.
type Hooks struct {
	Event func(Event)
	// Join is called when a customer enters the waiting queue (it was not
	// taken at once).
	Join func(customer int)
	// Poll is called every PollInterval with the snapshot kefu would get;
	// the snapshot is only valid during the call.
	Poll func(waitmodel.Snapshot)
}

// Outcome is the truth about one customer.
type Outcome struct {
	OpenID    string
	KfAccount string // requested agent, "" for the global queue
	Arrived   time.Time
	Queued    bool // had to wait (entered getwaitcase)
	Served    bool
	Abandoned bool
	Wait      time.Duration // exact, until served or until leaving
}
