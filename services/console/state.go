package console

import (
	"math"
	"sort"
	"time"
)

// Bounds of what the console keeps. Everything it holds comes from the
// bus, but a bound keeps a runaway publisher from growing its memory.
const (
	maxWaiting  = 50000 // waiting customers (getwaitcase lists 100; joins add the rest)
	maxRecent   = 200   // served, left, accuracy points, session-length history
	maxPosts    = 100   // latest Tucao posts
	maxReplies  = 5     // replies shown under a post
	maxAgents   = 1000  // agents of one account
	maxGroups   = 1000  // groups in kefu_groups
	maxExtra    = 8     // fields of an event the console does not know, per customer
	maxExtraLen = 64    // characters of one such field's value
	maxText     = 2000  // characters of a post or reply shown
)

// paceChangeRatio is the relative move of the learned session length the
// console marks as a change of pace.
const paceChangeRatio = 0.2

// state is everything the page shows. It is changed only by the hub, under
// its lock, and every change is recorded as an op for the live stream.
type state struct {
	waiting  map[string]*Waiting
	served   []Served // oldest first
	left     []Left   // oldest first
	agents   map[string]*Agent
	posts    []Post // newest first
	groups   map[string]Group
	summary  Summary
	accuracy Accuracy
	pace     Pace
	// lastSession is each customer's last session, for linking posts.
	lastSession map[string]LinkedSession
	// servedAt keeps a queue view taken before a customer was served from
	// putting them back in the queue.
	servedAt map[string]time.Time
	// pending holds what events said about a customer not in the queue
	// yet (say, the agent they chose, which comes before they join, on
	// another stream), merged when they join.
	pending map[string]*Waiting
}

// maxPending bounds pending.
const maxPending = 1000

func newState(staleAfter time.Duration) *state {
	return &state{
		waiting: map[string]*Waiting{}, agents: map[string]*Agent{}, groups: map[string]Group{},
		lastSession: map[string]LinkedSession{}, servedAt: map[string]time.Time{}, pending: map[string]*Waiting{},
		summary: Summary{StaleAfterSeconds: int64(staleAfter / time.Second)},
		pace:    Pace{History: []PacePoint{}},
	}
}

// op is one change of the state, as the page applies it: put v under key
// k of collection c, delete it (Del), or replace a whole section (no K).
type op struct {
	C   string `json:"c"`
	K   string `json:"k,omitempty"`
	V   any    `json:"v,omitempty"`
	Del bool   `json:"del,omitempty"`
}

// ops collects the changes of one event.
type ops []op

func (o *ops) put(c, k string, v any) { *o = append(*o, op{C: c, K: k, V: v}) }
func (o *ops) del(c, k string)        { *o = append(*o, op{C: c, K: k, Del: true}) }
func (o *ops) set(c string, v any)    { *o = append(*o, op{C: c, V: v}) }

// Snapshot is the whole state, the first message of every live stream and
// the body of GET /console/api/state.
type Snapshot struct {
	Seq      uint64    `json:"seq"`
	Summary  Summary   `json:"summary"`
	Waiting  []Waiting `json:"waiting"`
	Served   []Served  `json:"served"`
	Left     []Left    `json:"left"`
	Agents   []Agent   `json:"agents"`
	Posts    []Post    `json:"posts"`
	Groups   []Group   `json:"groups"`
	Accuracy Accuracy  `json:"accuracy"`
	Pace     Pace      `json:"pace"`
}

func (s *state) snapshot(seq uint64) Snapshot {
	out := Snapshot{Seq: seq, Summary: s.summary, Accuracy: s.accuracy, Pace: s.pace,
		Waiting: make([]Waiting, 0, len(s.waiting)), Served: append([]Served{}, s.served...), Left: append([]Left{}, s.left...),
		Agents: make([]Agent, 0, len(s.agents)), Posts: append([]Post{}, s.posts...), Groups: make([]Group, 0, len(s.groups))}
	for _, w := range s.waiting {
		out.Waiting = append(out.Waiting, *w)
	}
	sort.Slice(out.Waiting, func(i, j int) bool { return waitingLess(&out.Waiting[i], &out.Waiting[j]) })
	for _, a := range s.agents {
		out.Agents = append(out.Agents, *a)
	}
	sort.Slice(out.Agents, func(i, j int) bool { return out.Agents[i].KfAccount < out.Agents[j].KfAccount })
	for _, g := range s.groups {
		out.Groups = append(out.Groups, g)
	}
	sort.Slice(out.Groups, func(i, j int) bool { return out.Groups[i].Name < out.Groups[j].Name })
	return out
}

// waitingLess orders the queue: by position, customers without one last,
// then by arrival.
func waitingLess(a, b *Waiting) bool {
	pa, pb := a.Position, b.Position
	if pa == 0 {
		pa = math.MaxInt
	}
	if pb == 0 {
		pb = math.MaxInt
	}
	if pa != pb {
		return pa < pb
	}
	if !a.Since.Equal(b.Since) {
		return a.Since.Before(b.Since)
	}
	return a.OpenID < b.OpenID
}

func appendBounded[T any](list []T, v T) []T {
	list = append(list, v)
	if len(list) > maxRecent {
		list = append(list[:0:0], list[len(list)-maxRecent:]...)
	}
	return list
}

// truncate cuts s to at most n runes.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
