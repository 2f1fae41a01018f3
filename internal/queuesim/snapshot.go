package queuesim

import (
	"time"

	"github.com/kefu-io/kefu/internal/waitmodel"
)

// Waiting is the number of customers in the queue now.
func (s *Sim) Waiting() int { return s.waiting }

// Snapshot returns what kefu's poll would return now. The slices are reused
// by the next call.
func (s *Sim) Snapshot() waitmodel.Snapshot {
	sn := &s.snap
	sn.At = s.Now()
	sn.Count = s.waiting
	sn.Waiting = sn.Waiting[:0]
	for _, id := range s.order.ids[s.order.head:] {
		if len(sn.Waiting) == s.cfg.ListLimit {
			break
		}
		c := &s.cust[id]
		if c.state != waiting {
			continue
		}
		w := waitmodel.WaitingCase{OpenID: c.openid, Since: s.reported(c.arrival)}
		if c.kf >= 0 {
			w.KfAccount = s.agents[c.kf].spec.Account
		}
		sn.Waiting = append(sn.Waiting, w)
	}
	sn.Agents = sn.Agents[:0]
	for i := range s.agents {
		a := &s.agents[i]
		if !a.online {
			continue
		}
		ag := waitmodel.Agent{Account: a.spec.Account, Status: 1, AutoAccept: a.spec.AutoAccept, Accepted: len(a.chats)}
		if len(sn.Agents) < cap(sn.Agents) {
			ag.Sessions = sn.Agents[:len(sn.Agents)+1][len(sn.Agents)].Sessions[:0]
		}
		for _, ch := range a.chats {
			ag.Sessions = append(ag.Sessions, waitmodel.Session{OpenID: s.cust[ch.cust].openid, Since: s.reported(ch.start)})
		}
		sn.Agents = append(sn.Agents, ag)
	}
	return *sn
}

// Outcome returns the truth about customer id (as passed to Hooks.Join and
// Event.Customer).
func (s *Sim) Outcome(id int) Outcome {
	c := &s.cust[id]
	o := Outcome{OpenID: c.openid, Arrived: s.timeAt(c.arrival), Queued: c.queued}
	if c.kf >= 0 {
		o.KfAccount = s.agents[c.kf].spec.Account
	}
	switch c.state {
	case inService, done:
		o.Served = true
		o.Wait = time.Duration((c.start - c.arrival) * float64(time.Second))
	case gone:
		o.Abandoned = true
		o.Wait = time.Duration((c.start - c.arrival) * float64(time.Second))
	case waiting:
		o.Wait = time.Duration((s.now - c.arrival) * float64(time.Second))
	}
	return o
}

// Arrivals is the number of customers generated so far.
func (s *Sim) Arrivals() int { return len(s.cust) }
