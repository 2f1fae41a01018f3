package console

import (
	"encoding/json"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
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

// queueView is the estimator's view of the queue (the kefu_state bucket's
// queue.<appid> key, the body of GET /api/kf/queue).
type queueView struct {
	At           time.Time `json:"at"`
	WaitingCount int       `json:"waiting_count"`
	Waiting      []struct {
		OpenID         string    `json:"openid"`
		Since          time.Time `json:"since"`
		KfAccount      string    `json:"kf_account"`
		Position       int       `json:"position"`
		WaitSeconds    int64     `json:"wait_seconds"`
		WaitP90Seconds int64     `json:"wait_p90_seconds"`
		Unknown        bool      `json:"unknown"`
		Model          string    `json:"model"`
	} `json:"waiting"`
	Unlisted int                  `json:"unlisted"`
	Tail     *TailEstimate        `json:"tail"`
	Agents   []events.AgentStatus `json:"agents"`
	Mean     int64                `json:"mean_session_seconds"`
}

// applyQueueView replaces the listed part of the queue and the agents.
func (s *state) applyQueueView(v queueView, o *ops) {
	listed := make(map[string]bool, len(v.Waiting))
	for _, c := range v.Waiting {
		if c.OpenID == "" {
			continue
		}
		if at, ok := s.servedAt[c.OpenID]; ok && !at.Before(v.At) {
			continue // served after this view was taken
		}
		listed[c.OpenID] = true
		w := s.waiting[c.OpenID]
		if w == nil {
			if len(s.waiting) >= maxWaiting {
				continue
			}
			w = s.join(c.OpenID)
		}
		w.Since, w.KfAccount, w.Position, w.Listed = c.Since, c.KfAccount, c.Position, true
		w.Unknown, w.Model = c.Unknown, c.Model
		if !c.Unknown {
			s.estimate(w, c.WaitSeconds, c.WaitP90Seconds, v.At)
		}
		o.put("waiting", w.OpenID, *w)
	}
	for id, w := range s.waiting {
		if w.Listed && !listed[id] {
			// Out of the listed cases: served or gone; the session or
			// abandonment event says which.
			delete(s.waiting, id)
			o.del("waiting", id)
		}
	}
	s.summary.At, s.summary.WaitingCount, s.summary.Unlisted, s.summary.Tail = v.At, v.WaitingCount, v.Unlisted, v.Tail
	if v.Mean > 0 {
		s.summary.SessionSeconds = v.Mean
		s.pacePoint(v.At, v.Mean, o)
	}
	o.set("summary", s.summary)

	seen := make(map[string]bool, len(v.Agents))
	for _, a := range v.Agents {
		if a.KfAccount == "" || (len(s.agents) >= maxAgents && s.agents[a.KfAccount] == nil) {
			continue
		}
		seen[a.KfAccount] = true
		ag := &Agent{KfAccount: a.KfAccount, Status: a.Status, AutoAccept: a.AutoAccept, AcceptedCase: a.AcceptedCase, Sessions: []AgentSession{}}
		for _, ss := range a.Sessions {
			ag.Sessions = append(ag.Sessions, AgentSession{OpenID: ss.OpenID, Since: ss.Since})
		}
		s.agents[a.KfAccount] = ag
		o.put("agents", ag.KfAccount, *ag)
	}
	for id := range s.agents {
		if !seen[id] {
			// getonlinekflist lists online agents only.
			delete(s.agents, id)
			o.del("agents", id)
		}
	}
	// Forget served marks older than the view: the view now knows.
	for id, at := range s.servedAt {
		if at.Before(v.At.Add(-time.Minute)) {
			delete(s.servedAt, id)
		}
	}
}

func (s *state) pacePoint(at time.Time, seconds int64, o *ops) {
	h := s.pace.History
	if n := len(h); n > 0 {
		last := h[n-1].Seconds
		if last == seconds {
			return
		}
		if last > 0 && math.Abs(float64(seconds-last))/float64(last) > paceChangeRatio {
			s.pace.Changes++
		}
	}
	h = append(h, PacePoint{At: at, Seconds: seconds})
	if len(h) > maxRecent {
		h = h[len(h)-maxRecent:]
	}
	s.pace.History = h
	o.set("pace", s.pace)
}

// estimate records an estimate, keeping the first for the accuracy plot.
func (s *state) estimate(w *Waiting, wait, p90 int64, at time.Time) {
	// Whole seconds, like the estimate itself (and shorter on the wire).
	at = at.Truncate(time.Second)
	w.Estimated, w.WaitSeconds, w.WaitP90Seconds, w.EstimatedAt = true, wait, p90, at
	if w.firstAt.IsZero() {
		w.firstWait, w.firstP90, w.firstAt = wait, p90, at
	}
}

// kfFields are the fields of kefu.kf.* events the console reads; the rest
// (of events it does not know yet) are shown as they are.
type kfFields struct {
	events.Meta
	OpenID         string `json:"openid"`
	Position       int    `json:"position"`
	KfAccount      string `json:"kf_account"`
	WaitSeconds    int64  `json:"wait_seconds"`
	WaitP90Seconds int64  `json:"wait_p90_seconds"`
	Model          string `json:"model"`
	WaitedSeconds  int64  `json:"waited_seconds"`
	Reason         string `json:"reason"`
}

// known are the fields of kfFields and of the metadata: not shown as extra.
var known = map[string]bool{"app_id": true, "product_id": true, "occurred_at": true, "received_at": true, "openid": true,
	"position": true, "kf_account": true, "wait_seconds": true, "wait_p90_seconds": true, "model": true,
	"waited_seconds": true, "reason": true, "msg_id": true}

// applyKF applies an event of the KEFU_KF stream (or a kefu.wechat.kf.*
// event that is not a session's). Subjects the console
// does not know still count when they name a customer: a join (a subject
// ending in "joined") puts them in the queue, and any other adds its
// fields to the customer's row.
func (s *state) applyKF(subject string, data []byte, o *ops) {
	var e kfFields
	if err := json.Unmarshal(data, &e); err != nil || e.OpenID == "" {
		return
	}
	at := e.OccurredAt
	switch {
	case subject == events.SubjectQueueSnapshot:
		return // the queue view (kefu_state) carries the same and the estimates
	case subject == events.SubjectSessionAbandoned:
		s.leave(e.OpenID, at, e.WaitedSeconds, e.Reason, o)
		return
	}
	w := s.waiting[e.OpenID]
	joined := strings.HasSuffix(subject, ".joined")
	if w == nil {
		if !joined && subject != events.SubjectWaitEstimated {
			// Not in the queue (yet): keep what it says for when they join.
			p := s.pending[e.OpenID]
			if p == nil {
				if len(s.pending) >= maxPending {
					clear(s.pending)
				}
				p = &Waiting{OpenID: e.OpenID}
				s.pending[e.OpenID] = p
			}
			if e.KfAccount != "" {
				p.KfAccount = e.KfAccount
			}
			s.extra(p, data)
			return
		}
		if at2, ok := s.servedAt[e.OpenID]; ok && !at2.Before(at) {
			return
		}
		if len(s.waiting) >= maxWaiting {
			return
		}
		w = s.join(e.OpenID)
	}
	if joined && w.Since.IsZero() {
		w.Since = at
	}
	if e.Position > 0 {
		w.Position = e.Position
	}
	if e.KfAccount != "" {
		w.KfAccount = e.KfAccount
	}
	if subject == events.SubjectWaitEstimated {
		w.Unknown, w.Model = false, e.Model
		s.estimate(w, e.WaitSeconds, e.WaitP90Seconds, at)
	}
	s.extra(w, data)
	o.put("waiting", w.OpenID, *w)
}

// join adds a customer to the queue, with what events said before.
func (s *state) join(openid string) *Waiting {
	w := &Waiting{OpenID: openid}
	if p, ok := s.pending[openid]; ok {
		w.KfAccount, w.Extra = p.KfAccount, p.Extra
		delete(s.pending, openid)
	}
	s.waiting[openid] = w
	return w
}

// extra keeps the scalar fields the console has no column for.
func (s *state) extra(w *Waiting, data []byte) {
	var all map[string]json.RawMessage
	if json.Unmarshal(data, &all) != nil {
		return
	}
	for k, raw := range all {
		if known[k] || len(k) > maxExtraLen {
			continue
		}
		var v any
		if json.Unmarshal(raw, &v) != nil {
			continue
		}
		var text string
		switch x := v.(type) {
		case string:
			text = x
		case bool, float64:
			text = string(raw)
		default:
			continue // objects and arrays: too big for a row
		}
		if w.Extra == nil {
			w.Extra = map[string]string{}
		}
		if _, ok := w.Extra[k]; !ok && len(w.Extra) >= maxExtra {
			continue
		}
		w.Extra[k] = truncate(text, maxExtraLen)
	}
}

func (s *state) leave(openid string, at time.Time, waited int64, reason string, o *ops) {
	if _, ok := s.waiting[openid]; ok {
		delete(s.waiting, openid)
		o.del("waiting", openid)
	}
	l := Left{OpenID: openid, At: at, WaitedSeconds: waited, Reason: reason}
	s.left = appendBounded(s.left, l)
	o.put("left", openid, l)
}

// sessionCreated moves a waiting customer to served and the session to its agent.
func (s *state) sessionCreated(openid, kf string, at time.Time, o *ops) {
	sv := Served{OpenID: openid, KfAccount: kf, At: at}
	if w, ok := s.waiting[openid]; ok {
		if !w.Since.IsZero() && at.After(w.Since) {
			sv.WaitedSeconds = int64(at.Sub(w.Since) / time.Second)
		}
		if !w.firstAt.IsZero() {
			sv.Estimated, sv.PredictedSeconds, sv.P90Seconds = true, w.firstWait, w.firstP90
			sv.ActualSeconds = max(0, int64(at.Sub(w.firstAt)/time.Second))
		}
		delete(s.waiting, openid)
		o.del("waiting", openid)
	}
	s.servedAt[openid] = at
	delete(s.pending, openid)
	s.served = appendBounded(s.served, sv)
	o.put("served", openid, sv)
	if sv.Estimated {
		s.accuracy = accuracyOf(s.served)
		o.set("accuracy", s.accuracy)
	}
	s.lastSession[openid] = LinkedSession{KfAccount: kf, StartedAt: at}
	s.addSession(kf, openid, at, o)
}

func (s *state) addSession(kf, openid string, at time.Time, o *ops) {
	a := s.agents[kf]
	if a == nil {
		return // the next queue view lists the agent
	}
	for _, ss := range a.Sessions {
		if ss.OpenID == openid {
			return
		}
	}
	a.Sessions = append(a.Sessions, AgentSession{OpenID: openid, Since: at})
	a.AcceptedCase = len(a.Sessions)
	o.put("agents", kf, *a)
}

func (s *state) removeSession(kf, openid string, o *ops) {
	a := s.agents[kf]
	if a == nil {
		return
	}
	for i, ss := range a.Sessions {
		if ss.OpenID == openid {
			a.Sessions = append(a.Sessions[:i:i], a.Sessions[i+1:]...)
			a.AcceptedCase = len(a.Sessions)
			o.put("agents", kf, *a)
			return
		}
	}
}

func (s *state) sessionClosed(openid, kf string, at time.Time, o *ops) {
	ls := s.lastSession[openid]
	ls.KfAccount, ls.ClosedAt = kf, at
	s.lastSession[openid] = ls
	s.removeSession(kf, openid, o)
	if len(s.lastSession) > 4*maxWaiting {
		clear(s.lastSession) // a bound; posts link through the store too
	}
}

func (s *state) sessionSwitched(openid, from, to string, at time.Time, o *ops) {
	since := at
	if a := s.agents[from]; a != nil {
		for _, ss := range a.Sessions {
			if ss.OpenID == openid {
				since = ss.Since
			}
		}
	}
	s.removeSession(from, openid, o)
	s.addSession(to, openid, since, o)
	ls := s.lastSession[openid]
	ls.KfAccount = to
	s.lastSession[openid] = ls
}

// accuracyOf summarises the estimates of the recently served.
func accuracyOf(served []Served) Accuracy {
	var a Accuracy
	var abs, bias float64
	var covered int
	for _, sv := range served {
		if !sv.Estimated {
			continue
		}
		a.N++
		d := float64(sv.ActualSeconds - sv.PredictedSeconds)
		abs += math.Abs(d)
		bias += d
		if sv.ActualSeconds <= sv.P90Seconds {
			covered++
		}
	}
	if a.N > 0 {
		a.MAESeconds = math.Round(abs/float64(a.N)*10) / 10
		a.BiasSeconds = math.Round(bias/float64(a.N)*10) / 10
		a.P90Coverage = math.Round(float64(covered)/float64(a.N)*1000) / 1000
	}
	return a
}

// applyPost adds or updates a Tucao post, linked to the customer's last
// session the console saw (the store links across everything it kept).
func (s *state) applyPost(p events.FeedbackPost, o *ops) {
	post := Post{ID: p.ID, OpenID: p.OpenID, NickName: truncate(p.NickName, 64), Content: truncate(p.Content, maxText),
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, ReplyCount: p.ReplyCount, Replies: parseReplies(p.Replies)}
	if ls, ok := s.lastSession[p.OpenID]; ok && p.OpenID != "" {
		post.Session = &ls
	}
	for i, q := range s.posts {
		if q.ID == p.ID {
			s.posts = append(s.posts[:i:i], s.posts[i+1:]...)
			break
		}
	}
	s.posts = append([]Post{post}, s.posts...)
	sort.SliceStable(s.posts, func(i, j int) bool { return s.posts[i].CreatedAt.After(s.posts[j].CreatedAt) })
	if len(s.posts) > maxPosts {
		dropped := s.posts[maxPosts:]
		s.posts = s.posts[:maxPosts]
		for _, d := range dropped {
			if d.ID == post.ID {
				return // older than everything kept
			}
			o.del("posts", d.ID)
		}
	}
	o.put("posts", post.ID, post)
}

func parseReplies(raw json.RawMessage) []Reply {
	out := []Reply{}
	if len(raw) == 0 {
		return out
	}
	var rs []Reply
	if json.Unmarshal(raw, &rs) != nil {
		return out
	}
	for _, r := range rs {
		if len(out) == maxReplies {
			break
		}
		r.NickName, r.Content, r.CreatedAt = truncate(r.NickName, 64), truncate(r.Content, maxText), truncate(r.CreatedAt, 40)
		out = append(out, r)
	}
	return out
}

// applyGroup follows one key of kefu_groups; a nil value deletes it.
func (s *state) applyGroup(name string, value []byte, o *ops) {
	if value == nil {
		if _, ok := s.groups[name]; ok {
			delete(s.groups, name)
			o.del("groups", name)
		}
		return
	}
	var g Group
	if json.Unmarshal(value, &g) != nil {
		return
	}
	if _, ok := s.groups[name]; !ok && len(s.groups) >= maxGroups {
		return
	}
	g.Name = name
	if g.Members == nil {
		g.Members = []string{}
	}
	if g.Keywords == nil {
		g.Keywords = []string{}
	}
	s.groups[name] = g
	o.put("groups", name, g)
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
