package waitmodel

import (
	"slices"
	"strings"
	"time"
)

// Observe ingests a snapshot: it syncs agents and their sessions, infers
// abandonment (listed cases that vanished with no session created within
// AbandonGrace), and returns an estimate for every listed case plus the
// tail of the unlisted ones.
func (e *Estimator) Observe(s Snapshot) Result {
	e.advance(s.At)
	e.syncAgents(s)
	e.observePresence(s)
	// Count is getwaitcase's: inferred cases beyond it are customers who
	// left unnoticed (Members keeps them until the list passes them).
	res := Result{At: s.At, Count: max(s.Count, s.listed())}
	res.Abandoned = e.syncWaiting(s)
	e.lastCount = res.Count
	e.lastAt = s.At

	e.paceChange()
	e.prepare(s)
	res.ServiceFor = time.Duration(1 / e.rate() * float64(time.Second))
	// Reused from the previous Observe: at 10,000 waiting customers a new
	// slice per poll is most of the garbage.
	e.estBuf = slices.Grow(e.estBuf[:0], len(e.v.cases))[:len(e.v.cases)]
	res.Estimates = e.estBuf
	for i := range e.v.cases {
		res.Estimates[i] = e.predictCase(e.cfg.Model, i)
		if w := e.v.cases[i].w; w != nil && w.pred < 0 {
			k := e.predictCase(Kefu, i)
			if !k.Unknown {
				w.pred, w.predAt, w.predEntry = k.Wait.Seconds(), s.At, false
				w.bucket = bucketOf(e.v.cases[i].need)
			}
		}
	}
	e.joinsSince, e.leftSince = 0, 0
	res.Unlisted = max(0, res.Count-len(e.v.cases))
	if res.Unlisted > 0 {
		res.Tail = e.PredictPosition(e.cfg.Model, res.Count)
	}
	return res
}

func (e *Estimator) syncAgents(s Snapshot) {
	e.gen++
	for i := range s.Agents {
		sa := &s.Agents[i]
		a := e.agent(sa.Account)
		a.gen = e.gen
		e.account(a, -1)
		a.online = sa.Status != 0
		a.capacity = sa.AutoAccept
		if a.capacity <= 0 {
			// Auto-accept off: the agent takes cases by hand; treat what it
			// serves as its capacity so it counts as full.
			a.capacity = max(sa.Accepted, 1)
		}
		if len(sa.Sessions) > 0 || sa.Accepted == 0 {
			clear(a.sessions)
			for _, ss := range sa.Sessions {
				a.sessions[ss.OpenID] = ss.Since
			}
			a.unknownAge = 0
		} else {
			a.unknownAge = max(0, sa.Accepted-len(a.sessions))
		}
		e.account(a, +1)
	}
	for i := 0; i < len(e.accounts); i++ {
		kf := e.accounts[i]
		a := e.agents[kf]
		if a.gen == e.gen {
			continue
		}
		// Not in getonlinekflist: offline. Its chats may still close, but
		// it takes no new case.
		e.account(a, -1)
		a.online = false
		if len(a.sessions) == 0 {
			delete(e.agents, kf)
			e.accounts = slices.Delete(e.accounts, i, i+1)
			i--
		}
	}
}

func (e *Estimator) syncWaiting(s Snapshot) []Abandonment {
	before, kept := len(e.waiting), 0
	e.v.ptrs = e.v.ptrs[:0]
	for _, c := range s.Waiting {
		w := e.waiting[c.OpenID]
		switch {
		case w == nil:
			if _, wasGone := e.vanished[c.OpenID]; wasGone {
				delete(e.vanished, c.OpenID) // back in the list: not gone
			}
			w = &waitState{since: c.Since, pred: -1}
			if p, ok := e.restored[c.OpenID]; ok {
				w.pred, w.predAt, w.predEntry, w.bucket = p.Pred, time.UnixMilli(p.At), p.Entry, p.Bucket
			}
			e.waiting[c.OpenID] = w
		case w.gen != e.gen:
			kept++
		}
		if w.inferred && !c.Inferred {
			// Listed now: getwaitcase's time replaces the join time.
			w.since = c.Since
		}
		w.inferred = c.Inferred
		w.kf = c.KfAccount
		w.gen = e.gen
		w.lastSeen = s.At
		e.v.ptrs = append(e.v.ptrs, w)
	}
	for id, w := range e.waiting {
		if kept == before {
			break // every case listed before is still listed
		}
		if w.gen == e.gen {
			continue
		}
		mid := w.lastSeen.Add(s.At.Sub(w.lastSeen) / 2)
		e.vanished[id] = vanishedCase{since: w.since, at: mid, noted: s.At, pred: w.pred, predAt: w.predAt, predEntry: w.predEntry, bucket: w.bucket}
		delete(e.waiting, id)
	}
	e.restored = nil // customers not listed now were served or left meanwhile
	var out []Abandonment
	for id, v := range e.vanished {
		if since, ok := e.servedBy(id); ok {
			// The snapshot shows the session its event has not told yet.
			e.served(since, v.since, v.pred, v.predAt, v.predEntry, v.bucket)
			delete(e.vanished, id)
			continue
		}
		if s.HoldAbandon || s.At.Sub(v.noted) < e.cfg.AbandonGrace {
			continue
		}
		e.aband++
		out = append(out, Abandonment{OpenID: id, Waited: v.at.Sub(v.since), At: v.at})
		delete(e.vanished, id)
	}
	slices.SortFunc(out, func(a, b Abandonment) int { return strings.Compare(a.OpenID, b.OpenID) })
	return out
}

// servedBy reports whether an agent serves openid, since when.
func (e *Estimator) servedBy(openid string) (time.Time, bool) {
	for _, kf := range e.accounts {
		if since, ok := e.agents[kf].sessions[openid]; ok {
			return since, true
		}
	}
	return time.Time{}, false
}
