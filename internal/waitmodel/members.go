package waitmodel

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Members is the queue as kefu sees customers join it: every customer
// ingest handed to 多客服 (kefu.wechat.kf.queue.joined) who is neither
// served nor gone, with the time they joined. getwaitcase lists only the
// 100 earliest cases; Members knows the ones behind them.
//
// Complete reconciles it with each getwaitcase snapshot: the listed cases
// fix the order of the head (and leave Members: the model follows them
// from the list); the members not listed follow, ordered by join time, as
// inferred cases. Members the snapshot proves gone are left out, so the
// model sees them vanish and infers an abandonment after its grace, as
// for a listed case. Proof is one of: getwaitcase lists everyone (count
// ≤ listed) and the member is not listed; or a customer who joined after
// the member (by kefu's own join times, so neither the clocks nor the
// meaning of getwaitcase's time matter) is listed while the member is
// not — the list holds the earliest cases. Count alone proves nothing
// about who left. Members who joined within Margin of the poll are never
// judged by it: WeChat may not have counted them yet.
//
// A Members is not safe for concurrent use.
type Members struct {
	// Max bounds the members held (default 15,000, about 750 KB saved):
	// a join beyond it is refused.
	Max int
	// Margin: members who joined this close to a poll are not judged by it
	// (default 10s).
	Margin time.Duration

	byID  map[string]*member
	order []*member // by join time; removed members are compacted lazily
	dead  int
	// listed holds the join times of members now listed by getwaitcase:
	// the latest of them is the frontier the list has reached.
	listed map[string]time.Time
}

type member struct {
	openid string
	kf     string
	joined time.Time
	gone   bool
}

// DefaultMaxMembers is the default of Members.Max.
const DefaultMaxMembers = 15_000

func (m *Members) init() {
	if m.byID == nil {
		m.byID = make(map[string]*member)
	}
	if m.listed == nil {
		m.listed = make(map[string]time.Time)
	}
	if m.Max <= 0 {
		m.Max = DefaultMaxMembers
	}
	if m.Margin <= 0 {
		m.Margin = 10 * time.Second
	}
}

// Len is the number of members.
func (m *Members) Len() int { return len(m.byID) }

// Has reports whether openid is a member.
func (m *Members) Has(openid string) bool { _, ok := m.byID[openid]; return ok }

// Join records that openid joined the queue at at, waiting for agent kf
// ("" for any). It reports false when openid is a member already (the
// first join counts) or Members is full.
func (m *Members) Join(openid, kf string, at time.Time) bool {
	m.init()
	if _, ok := m.byID[openid]; ok || len(m.byID) >= m.Max {
		return false
	}
	mb := &member{openid: openid, kf: kf, joined: at}
	m.byID[openid] = mb
	i := len(m.order)
	if i > 0 && at.Before(m.order[i-1].joined) {
		// Joins arrive nearly in order; the rare late one is inserted.
		i, _ = slices.BinarySearchFunc(m.order, at, func(x *member, t time.Time) int {
			if x.joined.After(t) {
				return 1
			}
			return -1
		})
	}
	m.order = slices.Insert(m.order, i, mb)
	return true
}

// Remove takes openid out (served, left, or listed). It reports whether
// it was a member.
func (m *Members) Remove(openid string) bool {
	mb, ok := m.byID[openid]
	if !ok {
		return false
	}
	delete(m.byID, openid)
	mb.gone = true
	m.dead++
	if m.dead > 64 && m.dead > len(m.order)/2 {
		m.compact()
	}
	return true
}

func (m *Members) compact() {
	live := m.order[:0]
	for _, mb := range m.order {
		if !mb.gone {
			live = append(live, mb)
		}
	}
	clear(m.order[len(live):])
	m.order, m.dead = live, 0
}

// Complete reconciles Members with snapshot s and returns s with the
// members it does not list appended to s.Waiting as inferred cases, in
// join order. Listed and served customers leave Members; so do the
// members s proves gone (they are not appended). s.Waiting is not
// modified in place: the result has its own slice, reused by the next
// call through buf.
func (m *Members) Complete(s Snapshot, buf []WaitingCase) (Snapshot, []WaitingCase) {
	m.init()
	listed := make(map[string]time.Time, len(m.listed))
	var frontier time.Time
	for i := range s.Waiting {
		id := s.Waiting[i].OpenID
		t, ok := m.listed[id]
		if mb := m.byID[id]; mb != nil {
			t, ok = mb.joined, true
			m.Remove(id)
		}
		if ok {
			listed[id] = t
			if t.After(frontier) {
				frontier = t
			}
		}
	}
	m.listed = listed
	if len(m.byID) > 0 {
		for i := range s.Agents {
			for _, ss := range s.Agents[i].Sessions {
				m.Remove(ss.OpenID)
			}
		}
	}
	m.compact()
	// Gone: members who would be listed if they still waited.
	cut := frontier.Add(-time.Second) // joins of one second are not ordered
	if s.Count <= len(s.Waiting) {
		cut = s.At.Add(-m.Margin)
	}
	gone := 0
	for gone < len(m.order) && m.order[gone].joined.Before(cut) {
		delete(m.byID, m.order[gone].openid)
		m.order[gone].gone = true
		gone++
	}
	if gone > 0 {
		m.dead += gone
		m.compact()
	}
	buf = append(buf[:0], s.Waiting...)
	for _, mb := range m.order {
		buf = append(buf, WaitingCase{OpenID: mb.openid, Since: mb.joined, KfAccount: mb.kf, Inferred: true})
	}
	s.Waiting = buf
	return s, buf
}

// MarshalJSON stores the members compactly: [openid, join unix ms, kf],
// then the listed ones as [openid, join unix ms, "", 1].
func (m *Members) MarshalJSON() ([]byte, error) {
	out := make([][]any, 0, len(m.byID)+len(m.listed))
	for _, mb := range m.order {
		if !mb.gone {
			out = append(out, []any{mb.openid, mb.joined.UnixMilli(), mb.kf})
		}
	}
	for id, t := range m.listed {
		out = append(out, []any{id, t.UnixMilli(), "", 1})
	}
	return json.Marshal(out)
}

// UnmarshalJSON restores what MarshalJSON wrote, replacing the members.
func (m *Members) UnmarshalJSON(b []byte) error {
	type entry struct {
		OpenID string
		At     int64
		Kf     string
		Listed bool
	}
	var in []entry
	var raw [][]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("unmarshal queue members: %w", err)
	}
	for _, r := range raw {
		if len(r) != 3 && len(r) != 4 {
			return fmt.Errorf("unmarshal queue members: entry of %d fields", len(r))
		}
		var e entry
		if json.Unmarshal(r[0], &e.OpenID) != nil || json.Unmarshal(r[1], &e.At) != nil || json.Unmarshal(r[2], &e.Kf) != nil {
			return fmt.Errorf("unmarshal queue members: malformed entry")
		}
		e.Listed = len(r) == 4
		in = append(in, e)
	}
	m.byID, m.order, m.dead, m.listed = nil, nil, 0, nil
	m.init()
	for _, e := range in {
		if e.Listed {
			if len(m.listed) < m.Max {
				m.listed[e.OpenID] = time.UnixMilli(e.At)
			}
			continue
		}
		m.Join(e.OpenID, e.Kf, time.UnixMilli(e.At))
	}
	return nil
}
