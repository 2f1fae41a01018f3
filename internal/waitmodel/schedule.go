package waitmodel

import (
	"math"
	"slices"
	"time"
)

// Agents' presence by time of day.
//
// Teams work in shifts: lunch breaks, a shift that ends at 18:00, a
// colleague who starts at 10:00. A customer who joins at 11:55 behind
// twenty others waits longer if half the team leaves at 12:00, and a
// customer waiting at 12:50 less if they come back at 13:00. Every agent
// that getonlinekflist ever listed gets a profile: for each 5-minute slot
// of the day, the (decayed) fraction of each past day's snapshots in
// which it was online. The prediction then weighs the slots of every
// agent by the chance it is still (or again) online at each future time:
//
//   - an agent online now, whose profile says it usually is online at this
//     time (p_now ≥ ½), is online at t with probability min(1, p_t/p_now);
//   - an agent offline now, whose profile says it usually is offline now
//     (p_now < ½), returns by t with probability (p_t − p_now)/(1 − p_now);
//   - anything else (no profile yet, an agent off its usual pattern) is
//     taken as it is now.
//
// A flat profile (breaks at random times) therefore changes nothing; only
// a pattern that repeats day after day does.

const (
	daySlots   = 288 // 5-minute slots of a day
	slotSecs   = 86400 / daySlots
	secsPerDay = 86400
)

// presence is one agent's profile.
type presence struct {
	capacity   int
	lastOnline time.Time
	slots      [daySlots]presenceSlot
}

// presenceSlot holds one slot of the day: Frac/Days is the decayed mean
// over past days of the fraction of snapshots that found the agent
// online; On/N count the current day, folded in when the day changes.
type presenceSlot struct {
	Frac, Days float64
	Day        int64
	On, N      float64
}

func (ps *presenceSlot) observe(day int64, online bool, keep float64) {
	if ps.N > 0 && ps.Day != day {
		f := math.Pow(keep, float64(day-ps.Day))
		ps.Frac = ps.Frac*f + ps.On/ps.N
		ps.Days = ps.Days*f + 1
		ps.On, ps.N = 0, 0
	}
	ps.Day = day
	ps.N++
	if online {
		ps.On++
	}
}

// prob returns the usual probability that the agent is online in this
// slot, and whether enough days describe it. The day of the latest
// observations counts as a whole day.
func (ps *presenceSlot) prob(minDays float64) (float64, bool) {
	frac, days := ps.folded()
	if days < minDays || days <= 0 {
		return 0, false
	}
	return frac / days, true
}

// folded returns Frac and Days with the latest day's observations folded
// in.
func (ps *presenceSlot) folded() (frac, days float64) {
	if ps.N == 0 {
		return ps.Frac, ps.Days
	}
	return ps.Frac + ps.On/ps.N, ps.Days + 1
}

// daySlot returns the day number and slot of the day of t (UTC days: a
// day is 86,400 s whatever the time zone, so the profile of any fixed
// offset is the same profile rotated).
func daySlot(t time.Time) (day int64, slot int, intoSlot float64) {
	sec := t.Unix()
	day = sec / secsPerDay
	if sec < 0 && sec%secsPerDay != 0 {
		day--
	}
	tod := float64(sec-day*secsPerDay) + float64(t.Nanosecond())/1e9
	slot = int(tod / slotSecs)
	return day, slot, tod - float64(slot*slotSecs)
}

// observePresence updates every known agent's profile from a snapshot
// (agents of the snapshot are online, the others offline) and forgets
// agents not seen for ScheduleForget.
func (e *Estimator) observePresence(s Snapshot) {
	if e.cfg.ScheduleMinDays < 0 {
		return
	}
	if e.roster == nil {
		e.roster = make(map[string]*presence)
	}
	day, slot, _ := daySlot(s.At)
	keep := math.Pow(0.5, 1/e.cfg.ScheduleHalfLife.Hours()*24)
	for i := range s.Agents {
		a := &s.Agents[i]
		if a.Status == 0 {
			continue
		}
		pr := e.roster[a.Account]
		if pr == nil {
			pr = &presence{}
			e.roster[a.Account] = pr
		}
		pr.capacity = max(a.AutoAccept, 1)
		pr.lastOnline = s.At
	}
	for kf, pr := range e.roster {
		online := pr.lastOnline.Equal(s.At)
		if !online && s.At.Sub(pr.lastOnline) > e.cfg.ScheduleForget {
			delete(e.roster, kf)
			continue
		}
		pr.slots[slot].observe(day, online, keep)
	}
}

// horizonSlots is how far ahead presence is applied: one day, then the
// last value holds.
const horizonSlots = daySlots

// warp is a pool's future capacity relative to now, piecewise constant on
// the slots of the day: seg 0 is the rest of the current slot, seg j > 0
// the j-th following slot. speed is the expected share of the pool's
// current slots still online; ret the expected slots of agents now offline
// that are back.
type warp struct {
	first float64 // length of seg 0, seconds
	speed [horizonSlots + 1]float64
	ret   [horizonSlots + 1]float64
	// Prefix integrals at the start of each segment.
	tau, retInt, retMax [horizonSlots + 2]float64

	// The last inversion, a bracket for the next (invertWarped).
	lastNeed, lastWait float64
	lastSet            bool
}

// buildWarp returns the pool's warp, or nil when every agent is expected
// to stay as it is (no profile, flat profiles, or no change ahead).
func (e *Estimator) buildWarp(p *pool, global bool) *warp {
	if len(e.roster) == 0 || p.slots == 0 || e.cfg.ScheduleMinDays < 0 {
		return nil
	}
	minDays := e.cfg.ScheduleMinDays
	_, slot, into := daySlot(e.v.at)
	var w *warp
	ensure := func() {
		if w == nil {
			w = &warp{first: slotSecs - into}
			for j := range w.speed {
				w.speed[j] = 1
			}
		}
	}
	for _, a := range p.agents {
		pr := e.roster[a.account]
		if pr == nil {
			continue
		}
		pNow, ok := pr.slots[slot].prob(minDays)
		if !ok || pNow < 0.5 {
			continue
		}
		for j := 1; j <= horizonSlots; j++ {
			pt, ok := pr.slots[(slot+j)%daySlots].prob(minDays)
			if !ok || pt >= pNow {
				continue
			}
			ensure()
			w.speed[j] -= float64(a.capacity) * (1 - pt/pNow) / float64(p.slots)
		}
	}
	if global {
		for _, kf := range e.rosterOrder() {
			if a := e.agents[kf]; a != nil && a.online {
				continue
			}
			pr := e.roster[kf]
			if e.v.at.Sub(pr.lastOnline) > secsPerDay*time.Second {
				continue // gone for more than a day: not coming back on schedule
			}
			pNow, ok := pr.slots[slot].prob(minDays)
			if !ok || pNow >= 0.5 {
				continue
			}
			for j := 1; j <= horizonSlots; j++ {
				pt, ok := pr.slots[(slot+j)%daySlots].prob(minDays)
				if !ok || pt <= pNow {
					continue
				}
				ensure()
				w.ret[j] += float64(pr.capacity) * (pt - pNow) / (1 - pNow)
			}
		}
	}
	if w == nil {
		return nil
	}
	for j := 0; j <= horizonSlots; j++ {
		w.speed[j] = math.Max(w.speed[j], 0)
		l := float64(slotSecs)
		if j == 0 {
			l = w.first
		}
		w.tau[j+1] = w.tau[j] + w.speed[j]*l
		w.retInt[j+1] = w.retInt[j] + w.ret[j]*l
		w.retMax[j+1] = math.Max(w.retMax[j], w.ret[j])
	}
	return w
}

// rosterOrder lists the roster's accounts sorted (deterministic sums).
func (e *Estimator) rosterOrder() []string {
	e.rosterKeys = e.rosterKeys[:0]
	for kf := range e.roster {
		e.rosterKeys = append(e.rosterKeys, kf)
	}
	slices.Sort(e.rosterKeys)
	return e.rosterKeys
}

// seg returns the segment of time t (seconds from now) and its start.
func (w *warp) seg(t float64) (int, float64) {
	if t < w.first {
		return 0, 0
	}
	j := 1 + int((t-w.first)/slotSecs)
	if j > horizonSlots {
		j = horizonSlots
	}
	return j, w.first + float64(j-1)*slotSecs
}

// freed returns the expected slots freed by t: the current agents'
// departures on the warped clock τ(t) = ∫ speed, plus the slots of
// returning agents (free when they come back, then turning over at r).
func (e *Estimator) freedWarped(p *pool, t float64) float64 {
	w := p.warp
	j, start := w.seg(t)
	dt := t - start
	tau := w.tau[j] + w.speed[j]*dt
	ret := w.retInt[j] + w.ret[j]*dt
	back := math.Max(w.retMax[j], w.ret[j])
	return e.freedAt(p, tau) + back + e.v.r*ret
}

// freedAt returns N(t), the expected slots freed by t with the current
// agents online throughout (linear beyond the grid).
func (e *Estimator) freedAt(p *pool, t float64) float64 {
	if t >= p.h {
		return p.n[gridPoints] + (t-p.h)*e.v.r*float64(p.slots)
	}
	f := t / p.h * gridPoints
	k := int(f)
	return p.n[k] + (f-float64(k))*(p.n[k+1]-p.n[k])
}

// invertWarped returns the first time the warped N reaches need, to half
// a second, by bisection (N is non-decreasing). Customers are estimated in
// queue order, so the previous answer of the pool brackets the next one.
func (e *Estimator) invertWarped(p *pool, need float64) float64 {
	if need <= p.n[0] {
		return 0
	}
	w := p.warp
	maxT := e.cfg.MaxWait.Seconds()
	lo, hi := 0.0, maxT
	if w.lastSet && need >= w.lastNeed {
		lo = w.lastWait
		// Gallop from the previous answer at the pool's present pace.
		step := math.Max(1, (need-w.lastNeed)/(e.v.r*float64(p.slots)))
		for hi = lo + step; hi < maxT && e.freedWarped(p, hi) < need; hi = lo + step {
			lo = hi
			step *= 2
		}
		hi = math.Min(hi, maxT)
	}
	if e.freedWarped(p, hi) < need {
		return maxT
	}
	for hi-lo > 0.5 {
		mid := (lo + hi) / 2
		if e.freedWarped(p, mid) >= need {
			hi = mid
		} else {
			lo = mid
		}
	}
	w.lastNeed, w.lastWait, w.lastSet = need, lo, true
	return (lo + hi) / 2
}
