package waitmodel

import (
	"math"
	"slices"
	"time"
)

// gridPoints is the resolution of a pool's departure curve.
const gridPoints = 128

// view is the last snapshot prepared for predictions.
type view struct {
	at      time.Time
	count   int
	r       float64
	theta   float64
	shapeOK bool
	cases   []caseView
	pools   []pool
	poolOf  map[string]int // agent account → pool of its own queue
	order   []int          // s.Waiting indices in queue order
	ptrs    []*waitState   // aligned with s.Waiting
	ages    []float64

	listedGlobal     int
	listedSpecOnline int
}

type caseView struct {
	w      *waitState // nil for PredictPosition
	openid string
	kf     string
	pos    int     // place in its own queue
	need   int     // departures of its pool needed, ignoring abandonment
	needF  float64 // same, fractional (agent queues share global customers)
	pool   int
	// inferred: the place is inferred from the joins (not listed).
	inferred bool
	// entry: an estimate at the join, between snapshots (EstimateJoin).
	entry bool
}

// pool is a set of slots serving one queue: every online agent for the
// global queue, one agent for its own queue.
type pool struct {
	agents   []*agentState
	slots    int
	queueLen int
	headWait float64 // seconds the head of the queue has waited; <0 none

	built bool
	h     float64 // grid horizon, seconds; the grid step is h/gridPoints
	n     [gridPoints + 1]float64
	harm  []float64 // harm[k] = Σ_{i<k} 1/(D + iθ)

	global bool  // the pool of the global queue
	warp   *warp // expected changes of the agents online; nil: none
}

func (e *Estimator) prepare(s Snapshot) {
	v := &e.v
	v.at = s.At
	v.count = max(s.Count, s.listed())
	v.r = e.rate()
	v.theta = e.theta()
	v.shapeOK = e.shape.ready(e.cfg.MinShapeSamples)

	// Queue order is arrival order; getwaitcase is usually sorted already.
	// The listed cases are the head; the inferred ones follow them.
	ws := s.Waiting
	v.order = v.order[:0]
	for i := range ws {
		v.order = append(v.order, i)
	}
	byPlace := func(a, b *WaitingCase) int {
		if a.Inferred != b.Inferred {
			if a.Inferred {
				return 1
			}
			return -1
		}
		return a.Since.Compare(b.Since)
	}
	if !slices.IsSortedFunc(ws, func(a, b WaitingCase) int { return byPlace(&a, &b) }) {
		slices.SortStableFunc(v.order, func(a, b int) int { return byPlace(&ws[a], &ws[b]) })
	}

	v.pools = v.pools[:0]
	if v.poolOf == nil {
		v.poolOf = make(map[string]int)
	}
	clear(v.poolOf)
	global := pool{headWait: -1, global: true}
	for _, kf := range e.accounts {
		if a := e.agents[kf]; a.online && a.capacity > 0 {
			global.agents = append(global.agents, a)
			global.slots += a.capacity
		}
	}
	v.pools = append(v.pools, global)

	v.cases = slices.Grow(v.cases[:0], len(ws))[:len(ws)]
	// Inferred cases beyond what getwaitcase counts are customers who left
	// unnoticed, somewhere among the inferred ones (Members keeps them
	// until the list passes them): a customer at inferred rank k of n has
	// on average excess·k/n of them ahead.
	inferred, inferredRank := 0, 0
	for i := range ws {
		if ws[i].Inferred {
			inferred++
		}
	}
	excess := 0.0
	if inferred > 0 {
		excess = float64(max(0, len(ws)-s.Count))
	}
	globalAhead, specOnlineAhead := 0, 0
	for i, oi := range v.order {
		c := &ws[oi]
		cv := &v.cases[i]
		*cv = caseView{openid: c.OpenID, kf: c.KfAccount, w: v.ptrs[oi], inferred: c.Inferred}
		if cv.w != nil {
			cv.w.idx = i
		}
		shift := 0.0
		if c.Inferred {
			inferredRank++
			shift = excess * float64(inferredRank) / float64(inferred)
		}
		if c.KfAccount == "" {
			cv.pos = max(1, globalAhead+1-int(math.Round(shift)))
			cv.needF = max(1, float64(globalAhead+specOnlineAhead+1)-shift)
			cv.need = int(math.Ceil(cv.needF))
			if globalAhead == 0 {
				v.pools[0].headWait = s.At.Sub(c.Since).Seconds()
			}
			globalAhead++
			continue
		}
		pi, ok := v.poolOf[c.KfAccount]
		if !ok {
			p := pool{headWait: s.At.Sub(c.Since).Seconds()}
			if a := e.agents[c.KfAccount]; a != nil && a.online && a.capacity > 0 {
				p.agents = []*agentState{a}
				p.slots = a.capacity
			}
			pi = len(v.pools)
			v.pools = append(v.pools, p)
			v.poolOf[c.KfAccount] = pi
		}
		p := &v.pools[pi]
		cv.pool = pi
		cv.pos = p.queueLen + 1
		p.queueLen++
		if p.slots > 0 {
			// Earlier global customers take this agent's freed slots in
			// proportion to its share of all slots.
			share := float64(p.slots) / float64(max(v.pools[0].slots, p.slots))
			cv.needF = float64(cv.pos) + float64(globalAhead)*share
			cv.need = int(math.Ceil(cv.needF))
			specOnlineAhead++
		}
	}
	v.listedGlobal = globalAhead
	v.listedSpecOnline = specOnlineAhead
	v.pools[0].queueLen = globalAhead + max(0, v.count-len(ws))
}
