package waitmodel

import (
	"time"
)

// SessionCreated records kf_create_session: agent kf took openid at at.
// If openid was waiting, its wait is learned (LES, constant mean and the
// calibration of the P90 band).
func (e *Estimator) SessionCreated(openid, kf string, at time.Time) {
	e.advance(at)
	a := e.agent(kf)
	e.account(a, -1)
	a.sessions[openid] = at
	e.account(a, +1)

	if w, ok := e.waiting[openid]; ok {
		e.served(at, w.since, w.pred, w.predAt, w.predEntry, w.bucket)
		delete(e.waiting, openid)
		e.leftSince++
		return
	}
	if v, ok := e.vanished[openid]; ok {
		e.served(at, v.since, v.pred, v.predAt, v.predEntry, v.bucket)
		delete(e.vanished, openid)
	}
}

// served learns from a customer served at at who waited since since; pred
// is the wait predicted at predAt.
func (e *Estimator) served(at, since time.Time, pred float64, predAt time.Time, entry bool, bucket int) {
	wait := max(0, at.Sub(since).Seconds())
	e.waitSum += wait
	e.waitN++
	e.les, e.lesSet = wait, true
	if pred >= 1 && !predAt.IsZero() {
		ring := &e.calib[bucket]
		if entry {
			ring = &e.calibEntry[bucket]
		}
		ring.add(max(0, at.Sub(predAt).Seconds())/pred, e.cfg.CalibrationSamples)
	}
}

// SessionClosed records kf_close_session: a slot of agent kf is free.
func (e *Estimator) SessionClosed(openid, kf string, at time.Time) {
	e.advance(at)
	a := e.agents[kf]
	if a == nil {
		return
	}
	since, known := a.sessions[openid]
	if !known && a.unknownAge == 0 {
		return // already closed, or never seen: nothing frees up
	}
	e.slotFreed(a, at)
	wasFull := a.capacity > 0 && a.busy() >= a.capacity
	e.account(a, -1)
	if known {
		delete(a.sessions, openid)
	} else {
		a.unknownAge--
	}
	e.account(a, +1)
	if known {
		d := at.Sub(since).Seconds()
		e.durSum += d
		e.durN++
		if wasFull {
			e.shape.add(d)
		}
	}
}

// SessionSwitched records kf_switch_session: the chat moved from one agent
// to another. The source agent's slot frees up; the session's age at the
// destination counts from the switch.
func (e *Estimator) SessionSwitched(openid, from, to string, at time.Time) {
	e.advance(at)
	if a := e.agents[from]; a != nil {
		if _, ok := a.sessions[openid]; ok {
			e.slotFreed(a, at)
			e.account(a, -1)
			delete(a.sessions, openid)
			e.account(a, +1)
		}
	}
	b := e.agent(to)
	e.account(b, -1)
	b.sessions[openid] = at
	e.account(b, +1)
}

// slotFreed counts a departure before agent a loses the session: for the
// per-slot rate if a was full, and for QL-emp if every slot was busy with
// customers waiting.
func (e *Estimator) slotFreed(a *agentState, at time.Time) {
	if a.capacity > 0 && a.busy() >= a.capacity && a.online {
		e.dep++
		e.depS++
	}
	allBusy := e.onlineSlots > 0 && e.busySlots >= e.onlineSlots && e.lastCount > 0
	if !allBusy {
		e.lastBusyDepSet = false
		return
	}
	if e.lastBusyDepSet {
		if g := at.Sub(e.lastBusyDep).Seconds(); g >= 0 {
			e.gaps[e.gapNext] = g
			e.gapNext = (e.gapNext + 1) % len(e.gaps)
			e.gapFilled = min(e.gapFilled+1, len(e.gaps))
		}
	}
	e.lastBusyDep, e.lastBusyDepSet = at, true
}

// Abandoned records a customer known to have left the queue. Customers
// already inferred as abandoned by Observe are not counted twice; unknown
// (never listed) customers are ignored because their waiting time was not
// part of the observed exposure.
func (e *Estimator) Abandoned(openid string, waited time.Duration, at time.Time) {
	e.advance(at)
	if _, ok := e.waiting[openid]; ok {
		delete(e.waiting, openid)
		e.aband++
		e.leftSince++
		return
	}
	if _, ok := e.vanished[openid]; ok {
		delete(e.vanished, openid)
		e.aband++
	}
}
