package console

import (
	"math"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

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
