package console

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

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
