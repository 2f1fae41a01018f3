package queuesim

import (
	"math"
	"strconv"
	"time"
)

func (s *Sim) arrive() {
	id := len(s.cust)
	c := customer{openid: "o" + strconv.Itoa(id), arrival: s.now, kf: -1}
	if s.cfg.SpecificFraction > 0 && s.rng.Float64() < s.cfg.SpecificFraction {
		c.kf = s.rng.IntN(len(s.agents))
	}
	s.cust = append(s.cust, c)
	s.arrived++
	s.scheduleArrival()
	ev := Event{Kind: Arrived, At: s.reported(s.now), Customer: id, OpenID: c.openid}
	if c.kf >= 0 {
		ev.KfAccount = s.agents[c.kf].spec.Account
	}
	s.emit(ev)

	target := -1
	if c.kf >= 0 {
		if a := &s.agents[c.kf]; a.online && len(a.chats) < a.spec.AutoAccept {
			target = c.kf
		}
	} else {
		for i := range s.agents {
			a := &s.agents[i]
			if a.online && len(a.chats) < a.spec.AutoAccept && (target < 0 || len(a.chats) < len(s.agents[target].chats)) {
				target = i
			}
		}
	}
	if target >= 0 {
		s.startService(target, id)
		return
	}
	cc := &s.cust[id]
	cc.state, cc.queued = waiting, true
	s.waiting++
	s.order.push(id)
	if c.kf >= 0 {
		s.agents[c.kf].queue.push(id)
	} else {
		s.global.push(id)
	}
	if s.cfg.Patience != nil {
		s.push(simEvent{t: s.now + s.cfg.Patience.Sample(s.rng), kind: evPatience, id: id})
	}
	if s.hooks.Join != nil {
		s.hooks.Join(id)
	}
}

// advanceAgent brings the agent's virtual work clock to now.
func (s *Sim) advanceAgent(a *agent) {
	if n := len(a.chats); n > 0 {
		a.v += (s.now - a.last) * s.speedOf(n)
	}
	a.last = s.now
}

func (s *Sim) speedOf(n int) float64 {
	if n < len(s.speed) {
		return s.speed[n]
	}
	return math.Pow(float64(n), -s.cfg.Alpha)
}

// reschedule plans the agent's next completion, invalidating the previous.
func (s *Sim) reschedule(i int) {
	a := &s.agents[i]
	a.ver++
	if len(a.chats) == 0 {
		return
	}
	minF := a.chats[0].finishV
	for _, ch := range a.chats[1:] {
		minF = math.Min(minF, ch.finishV)
	}
	dt := math.Max(0, minF-a.v) / s.speedOf(len(a.chats))
	s.push(simEvent{t: s.now + dt, kind: evCompletion, id: i, ver: a.ver})
}

func (s *Sim) startService(i, id int) {
	a := &s.agents[i]
	s.advanceAgent(a)
	c := &s.cust[id]
	if c.state == waiting {
		s.waiting--
		s.dead++
	}
	c.state, c.start = inService, s.now
	a.chats = append(a.chats, chat{cust: id, finishV: a.v + s.cfg.Service.Sample(s.rng), start: s.now})
	s.active++
	s.reschedule(i)
	s.emit(Event{Kind: SessionCreated, At: s.reported(s.now), Customer: id, OpenID: c.openid, KfAccount: a.spec.Account})
	s.compactOrder()
}

func (s *Sim) complete(i int) {
	a := &s.agents[i]
	s.advanceAgent(a)
	k := 0
	for j := range a.chats {
		if a.chats[j].finishV < a.chats[k].finishV {
			k = j
		}
	}
	ch := a.chats[k]
	a.chats[k] = a.chats[len(a.chats)-1]
	a.chats = a.chats[:len(a.chats)-1]
	s.active--
	c := &s.cust[ch.cust]

	switched := false
	if s.cfg.SwitchProb > 0 && s.rng.Float64() < s.cfg.SwitchProb {
		if to := s.switchTarget(i); to >= 0 {
			b := &s.agents[to]
			s.advanceAgent(b)
			b.chats = append(b.chats, chat{cust: ch.cust, finishV: b.v + s.cfg.Service.Sample(s.rng), start: s.now})
			s.active++
			s.reschedule(to)
			s.emit(Event{Kind: SessionSwitched, At: s.reported(s.now), Customer: ch.cust, OpenID: c.openid, From: a.spec.Account, To: b.spec.Account})
			switched = true
		}
	}
	if !switched {
		c.state = done
		s.emit(Event{Kind: SessionClosed, At: s.reported(s.now), Customer: ch.cust, OpenID: c.openid, KfAccount: a.spec.Account})
	}
	s.fill(i)
	s.reschedule(i)
}

// switchTarget picks, uniformly, another online agent with a free slot.
func (s *Sim) switchTarget(from int) int {
	n, pick := 0, -1
	for i := range s.agents {
		a := &s.agents[i]
		if i != from && a.online && len(a.chats) < a.spec.AutoAccept {
			n++
			if s.rng.IntN(n) == 0 {
				pick = i
			}
		}
	}
	return pick
}

// fill gives the agent's free slots to the earliest waiting customers of
// the global queue and of its own queue.
func (s *Sim) fill(i int) {
	a := &s.agents[i]
	for a.online && len(a.chats) < a.spec.AutoAccept {
		g, okG := s.global.peek(s.cust)
		o, okO := a.queue.peek(s.cust)
		var id int
		switch {
		case okG && okO:
			id = min(g, o) // ids grow with arrival time
		case okG:
			id = g
		case okO:
			id = o
		default:
			return
		}
		s.startService(i, id)
	}
	s.global.compact()
	a.queue.compact()
}

func (s *Sim) abandon(id int) {
	c := &s.cust[id]
	c.state = gone
	s.waiting--
	s.dead++
	s.emit(Event{Kind: Abandoned, At: s.reported(s.now), Customer: id, OpenID: c.openid, Waited: time.Duration((s.now - c.arrival) * float64(time.Second))})
	c.start = s.now
	s.compactOrder()
}

func (s *Sim) compactOrder() {
	if s.dead < 256 || s.dead < s.waiting {
		return
	}
	live := s.order.ids[:0]
	for _, id := range s.order.ids[s.order.head:] {
		if s.cust[id].state == waiting {
			live = append(live, id)
		}
	}
	s.order.ids, s.order.head, s.dead = live, 0, 0
}

func (s *Sim) toggle(idx int, phase uint32) {
	ab := s.cfg.Absences[idx]
	i := s.index[ab.Account]
	a := &s.agents[i]
	if phase == 0 {
		if s.arrived >= s.cfg.Customers {
			return // the day is over; stop the schedule
		}
		a.online = false
		s.emit(Event{Kind: AgentOffline, At: s.reported(s.now), KfAccount: ab.Account})
		s.push(simEvent{t: s.now + ab.Length.Seconds(), kind: evAbsence, id: idx, ver: 1})
		return
	}
	a.online = true
	s.emit(Event{Kind: AgentOnline, At: s.reported(s.now), KfAccount: ab.Account})
	s.fill(i)
	s.reschedule(i)
	if ab.Every > 0 {
		s.push(simEvent{t: s.now + (ab.Every - ab.Length).Seconds(), kind: evAbsence, id: idx, ver: 0})
	}
}
