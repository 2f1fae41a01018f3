package console

import (
	"time"
)

// Waiting is one customer in the queue.
type Waiting struct {
	OpenID    string    `json:"openid"`
	Since     time.Time `json:"since,omitzero"`
	KfAccount string    `json:"kf_account,omitempty"`
	Position  int       `json:"position,omitempty"`
	// Estimated is set once an estimate arrived; WaitSeconds and
	// WaitP90Seconds are the remaining wait and its P90 at EstimatedAt.
	// Zero values are left out: a queue of 10,000 is sent whole to every
	// page that opens.
	Estimated      bool      `json:"estimated,omitempty"`
	WaitSeconds    int64     `json:"wait_seconds,omitempty"`
	WaitP90Seconds int64     `json:"wait_p90_seconds,omitempty"`
	EstimatedAt    time.Time `json:"estimated_at,omitzero"`
	Unknown        bool      `json:"unknown,omitempty"`
	Model          string    `json:"model,omitempty"`
	// Listed: in getwaitcase's list (the first 100), as the last queue
	// view said.
	Listed bool `json:"listed,omitempty"`
	// Extra are fields of events the console has no column for (say, a
	// position inferred beyond the 100th): the page shows them as they are.
	Extra map[string]string `json:"extra,omitempty"`

	// first estimate, for the accuracy plot
	firstWait, firstP90 int64
	firstAt             time.Time
}

// Served is a customer an agent accepted.
type Served struct {
	OpenID    string    `json:"openid"`
	KfAccount string    `json:"kf_account"`
	At        time.Time `json:"at,omitzero"`
	// WaitedSeconds is from entering the queue (when known) to the session.
	WaitedSeconds int64 `json:"waited_seconds,omitempty"`
	// PredictedSeconds and P90Seconds are the first estimate's, and
	// ActualSeconds the wait from that estimate to the session.
	Estimated        bool  `json:"estimated"`
	PredictedSeconds int64 `json:"predicted_seconds"`
	P90Seconds       int64 `json:"p90_seconds"`
	ActualSeconds    int64 `json:"actual_seconds"`
}

// Left is a customer who gave up waiting.
type Left struct {
	OpenID        string    `json:"openid"`
	At            time.Time `json:"at,omitzero"`
	WaitedSeconds int64     `json:"waited_seconds"`
	Reason        string    `json:"reason"`
}

// Agent is one agent with the sessions they serve.
type Agent struct {
	KfAccount    string         `json:"kf_account"`
	Status       int            `json:"status"`
	AutoAccept   int            `json:"auto_accept"`
	AcceptedCase int            `json:"accepted_case"`
	Sessions     []AgentSession `json:"sessions"`
}

// AgentSession is a session in progress.
type AgentSession struct {
	OpenID string    `json:"openid"`
	Since  time.Time `json:"since,omitzero"`
}

// Post is a Tucao post as the console shows it.
type Post struct {
	ID         string         `json:"id"`
	OpenID     string         `json:"openid"`
	NickName   string         `json:"nick_name"`
	Content    string         `json:"content"`
	CreatedAt  time.Time      `json:"created_at,omitzero"`
	UpdatedAt  time.Time      `json:"updated_at,omitzero"`
	ReplyCount int            `json:"reply_count"`
	Replies    []Reply        `json:"replies"`
	Session    *LinkedSession `json:"session,omitempty"`
}

// Reply is a reply under a post.
type Reply struct {
	NickName  string `json:"nick_name"`
	Content   string `json:"content"`
	IsAdmin   bool   `json:"is_admin"`
	CreatedAt string `json:"created_at"`
}

// LinkedSession is the customer's last session before a post.
type LinkedSession struct {
	KfAccount string    `json:"kf_account"`
	StartedAt time.Time `json:"started_at,omitzero"`
	ClosedAt  time.Time `json:"closed_at,omitzero"`
}

// Group is an agent group of kefu_groups.
type Group struct {
	Name     string   `json:"name"`
	Members  []string `json:"members"`
	Keywords []string `json:"keywords"`
}

// Summary is the queue as a whole.
type Summary struct {
	At           time.Time `json:"at,omitzero"`
	WaitingCount int       `json:"waiting_count"`
	Unlisted     int       `json:"unlisted"`
	// Tail is the estimate for the last customer beyond the listed ones.
	Tail              *TailEstimate `json:"tail,omitempty"`
	SessionSeconds    int64         `json:"mean_session_seconds"`
	StaleAfterSeconds int64         `json:"stale_after_seconds"`
}

// TailEstimate is the estimate for a position beyond the listed cases.
type TailEstimate struct {
	Position       int   `json:"position"`
	WaitSeconds    int64 `json:"wait_seconds"`
	WaitP90Seconds int64 `json:"wait_p90_seconds"`
	Unknown        bool  `json:"unknown,omitempty"`
}

// Accuracy says how good the estimates were for recently served customers.
type Accuracy struct {
	N int `json:"n"`
	// MAESeconds is the mean absolute error, BiasSeconds the mean of
	// actual − predicted (positive: customers waited longer than told).
	MAESeconds  float64 `json:"mae_seconds"`
	BiasSeconds float64 `json:"bias_seconds"`
	// P90Coverage is the share of actual waits within their P90 (0.9 when
	// the band is right).
	P90Coverage float64 `json:"p90_coverage"`
}

// Pace is the learned session length over time.
type Pace struct {
	History []PacePoint `json:"history"`
	// Changes counts moves of the learned length by more than
	// paceChangeRatio between consecutive values the console saw.
	Changes int `json:"changes"`
}

// PacePoint is one learned mean session length.
type PacePoint struct {
	At      time.Time `json:"at"`
	Seconds int64     `json:"seconds"`
}
