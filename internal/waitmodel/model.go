package waitmodel

import (
	"math"
	"slices"
	"time"
)

// Model names a predictor. Kefu is the estimator of this package; the
// others are the baselines of the literature, computed from the same
// observations so they can be compared on the same runs.
type Model int

const (
	// Kefu: departures needed (customers ahead in every queue that competes
	// for the same slots), corrected for abandonment as in QL_m, turned
	// into time through the expected departure curve of the slots in
	// service (session ages + learned duration shape + learned full-load
	// rate). P90 from calibrated ratios of past errors.
	Kefu Model = iota
	// ConstantMean predicts the long-run mean wait of served customers.
	ConstantMean
	// QL predicts (n+1)/(s·μ), s the slots of the queue's agents and 1/μ
	// the long-run mean session length.
	QL
	// QLm is QL with abandonment: Σ_{i=0..n} 1/(s·μ + i·θ).
	QLm
	// HOL predicts the time the head of the customer's queue has waited
	// so far (scaled by position/queue length for customers not at the
	// tail); LES when the customer is the head.
	HOL
	// LES predicts the wait of the last customer who entered service
	// (scaled by position/queue length for customers not at the tail).
	LES
	// QLEmp predicts (n+1) × the mean gap between recent departures
	// observed while every slot was busy.
	QLEmp
	modelCount
)

// Models lists every model, Kefu first.
func Models() []Model {
	out := make([]Model, 0, modelCount)
	for m := Kefu; m < modelCount; m++ {
		out = append(out, m)
	}
	return out
}

func (m Model) String() string {
	switch m {
	case Kefu:
		return "kefu"
	case ConstantMean:
		return "mean"
	case QL:
		return "QL"
	case QLm:
		return "QL_m"
	case HOL:
		return "HOL"
	case LES:
		return "LES"
	case QLEmp:
		return "QL-emp"
	}
	return "unknown"
}

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

// Predict returns model m's estimate for a customer listed in the last
// snapshot given to Observe.
func (e *Estimator) Predict(m Model, openid string) (Estimate, bool) {
	w := e.waiting[openid]
	if w == nil || w.idx >= len(e.v.cases) || e.v.cases[w.idx].openid != openid {
		return Estimate{}, false
	}
	return e.predictCase(m, w.idx), true
}

// PredictPosition returns model m's estimate for the customer at the given
// 1-based place among all Count waiting customers of the last snapshot,
// assuming it is beyond the listed ones (its openid and requested agent
// are unknown, so it is treated as a global customer).
func (e *Estimator) PredictPosition(m Model, position int) Estimate {
	v := &e.v
	beyond := max(1, position-len(v.cases))
	cv := caseView{
		pos:  v.listedGlobal + beyond,
		need: v.listedGlobal + v.listedSpecOnline + beyond,
	}
	cv.needF = float64(cv.need)
	est := e.predictView(m, &cv)
	est.Position = position - len(v.cases) + v.listedGlobal
	return est
}

// EstimateJoin returns the first estimate of customer c, who joined the
// queue at at (c.Since; Members.Join), without waiting for the next
// snapshot: the customer is placed behind every customer of the last
// snapshot (listed, inferred and unseen) and every join since, as a
// global customer, and the wait predicted from that snapshot is shortened
// by the time elapsed since it. Position counts the customers who left
// the queue since the snapshot (served or abandoned) out. The prediction
// is calibrated apart from those made at a snapshot. ok is false when c
// already waits or is served, or no snapshot was observed yet.
func (e *Estimator) EstimateJoin(c WaitingCase, at time.Time) (Estimate, bool) {
	v := &e.v
	if len(v.pools) == 0 {
		return Estimate{}, false
	}
	if _, ok := e.waiting[c.OpenID]; ok {
		return Estimate{}, false
	}
	if _, ok := e.servedBy(c.OpenID); ok {
		return Estimate{}, false
	}
	beyond := max(0, v.count-len(v.cases)) + e.joinsSince + 1
	cv := caseView{openid: c.OpenID, pos: v.listedGlobal + beyond, need: v.listedGlobal + v.listedSpecOnline + beyond, inferred: true, entry: true}
	cv.needF = float64(cv.need)
	est := e.predictView(e.cfg.Model, &cv)
	est.KfAccount = c.KfAccount
	est.Position = max(1, est.Position-e.leftSince)
	e.joinsSince++
	w := &waitState{since: c.Since, kf: c.KfAccount, gen: e.gen, lastSeen: at, inferred: true, pred: -1, idx: len(v.cases)}
	e.waiting[c.OpenID] = w
	if est.Unknown {
		return est, true
	}
	elapsed := max(0, at.Sub(v.at))
	est.Wait = max(0, est.Wait-elapsed)
	est.WaitP90 = max(est.Wait, est.WaitP90-elapsed)
	k := est
	if e.cfg.Model != Kefu {
		k = e.predictView(Kefu, &cv)
		k.Wait = max(0, k.Wait-elapsed)
	}
	w.pred, w.predAt, w.predEntry, w.bucket = k.Wait.Seconds(), at, true, bucketOf(cv.need)
	return est, true
}

// Serves reports whether an agent serves openid, as far as the events
// and the last snapshot tell.
func (e *Estimator) Serves(openid string) bool {
	_, ok := e.servedBy(openid)
	return ok
}

func (e *Estimator) predictCase(m Model, i int) Estimate {
	return e.predictView(m, &e.v.cases[i])
}

func (e *Estimator) predictView(m Model, cv *caseView) Estimate {
	v := &e.v
	p := &v.pools[cv.pool]
	est := Estimate{OpenID: cv.openid, KfAccount: cv.kf, Position: cv.pos, Model: m.String(), Inferred: cv.inferred}
	if p.slots == 0 {
		est.Unknown = true
		return est
	}
	n := float64(cv.pos - 1)
	s := float64(p.slots)
	var wait, band float64
	switch m {
	case Kefu:
		wait, band = e.kefu(p, cv)
	case ConstantMean:
		wait = e.cfg.PriorServiceTime.Seconds()
		if e.waitN > 0 {
			wait = e.waitSum / e.waitN
		}
		band = gammaQuantileFactor(1, e.z)
	case QL:
		wait = (n + 1) * e.meanDuration() / s
		band = gammaQuantileFactor(n+1, e.z)
	case QLm:
		mu := 1 / e.meanDuration()
		for i := 0.0; i <= n; i++ {
			wait += 1 / (s*mu + i*v.theta)
		}
		band = gammaQuantileFactor(n+1, e.z)
	case HOL:
		if cv.pos > 1 && p.headWait >= 0 {
			wait = p.headWait * float64(cv.pos) / float64(max(p.queueLen, cv.pos))
		} else {
			wait = e.lesWait(cv, p)
		}
		band = gammaQuantileFactor(n+1, e.z)
	case LES:
		wait = e.lesWait(cv, p)
		band = gammaQuantileFactor(n+1, e.z)
	case QLEmp:
		gap := e.meanGap()
		if gap <= 0 {
			gap = e.meanDuration() / float64(max(v.pools[0].slots, 1))
		}
		// An agent's own queue moves with that agent's share of departures.
		gap *= float64(max(v.pools[0].slots, p.slots)) / s
		wait = (n + 1) * gap
		band = gammaQuantileFactor(n+1, e.z)
	}
	wait = math.Min(wait, e.cfg.MaxWait.Seconds())
	p90 := math.Min(wait*band, e.cfg.MaxWait.Seconds())
	est.Wait = time.Duration(wait * float64(time.Second))
	est.WaitP90 = time.Duration(p90 * float64(time.Second))
	return est
}

func (e *Estimator) lesWait(cv *caseView, p *pool) float64 {
	if !e.lesSet {
		return 0
	}
	return e.les * float64(cv.pos) / float64(max(p.queueLen, cv.pos))
}

func (e *Estimator) meanDuration() float64 {
	return (e.durSum + e.cfg.PriorServiceTime.Seconds()) / (e.durN + 1)
}

func (e *Estimator) meanGap() float64 {
	if e.gapFilled == 0 {
		return 0
	}
	var sum float64
	for _, g := range e.gaps[:e.gapFilled] {
		sum += g
	}
	return sum / float64(e.gapFilled)
}

// kefu returns the kefu model's mean wait and P90/mean factor.
func (e *Estimator) kefu(p *pool, cv *caseView) (wait, band float64) {
	v := &e.v
	d := v.r * float64(p.slots)
	need := cv.needF
	// Customers ahead abandon at rate θ each: the expected number of
	// departures the customer needs is D·Σ 1/(D + iθ) (QL_m in departures).
	if v.theta > 0 {
		k := int(need)
		frac := need - float64(k)
		h := p.harmonic(k+1, d, v.theta)
		need = d * (h[k] + frac*(h[k+1]-h[k]))
	}
	if !p.built {
		e.build(p)
	}
	if p.warp != nil {
		wait = e.invertWarped(p, need)
	} else {
		wait = e.invert(p, need)
	}
	b := bucketOf(cv.need)
	switch {
	case cv.entry && e.calibEntry[b].filled >= e.cfg.MinCalibration:
		// Estimates at the join, between snapshots, have errors of their
		// own (the queue moved since the snapshot): their own calibration.
		band = e.calibEntry[b].quantile(e.cfg.Quantile)
	case e.calib[b].filled >= e.cfg.MinCalibration:
		band = e.calib[b].quantile(e.cfg.Quantile)
	default:
		band = gammaQuantileFactor(need, e.z)
	}
	band = math.Max(band, 1)
	if unseen := v.count - len(v.cases); cv.inferred && unseen > 0 && wait > 0 {
		// Customers in the queue whom kefu did not see join may be ahead
		// of an inferred place: the band reaches the place behind them all.
		far := cv.needF + float64(unseen)
		var farWait float64
		if p.warp != nil {
			farWait = e.invertWarped(p, far)
		} else {
			farWait = e.invert(p, far)
		}
		band = math.Max(band, farWait/wait)
	}
	return wait, band
}

func (p *pool) harmonic(k int, d, theta float64) []float64 {
	if p.harm == nil {
		p.harm = append(p.harm, 0)
	}
	for i := len(p.harm) - 1; i < k; i++ {
		p.harm = append(p.harm, p.harm[i]+1/(d+float64(i)*theta))
	}
	return p.harm
}

// invert returns the time at which the pool's expected number of freed
// slots reaches need.
func (e *Estimator) invert(p *pool, need float64) float64 {
	if !p.built {
		e.build(p)
	}
	if need <= p.n[0] {
		return 0
	}
	if need > p.n[gridPoints] {
		return p.h + (need-p.n[gridPoints])/(e.v.r*float64(p.slots))
	}
	k, _ := slices.BinarySearch(p.n[:], need)
	step := p.h / gridPoints
	n0, n1 := p.n[k-1], p.n[k]
	if n1 <= n0 {
		return float64(k) * step
	}
	return (float64(k-1) + (need-n0)/(n1-n0)) * step
}

// residuals fills a.q with the residual mass of the agent's sessions
// ending in each grid cell (shared by the global pool and the agent's own
// pool within one Observe).
func (e *Estimator) residuals(a *agentState, step float64) {
	v := &e.v
	r := v.r
	a.q = [gridPoints + 1]float64{}
	a.qLinear = 0
	a.qGen = e.gen
	// Sorted ages make the float sums independent of map order.
	v.ages = v.ages[:0]
	for _, since := range a.sessions {
		v.ages = append(v.ages, math.Max(0, v.at.Sub(since).Seconds()))
	}
	slices.Sort(v.ages)
	for _, age := range v.ages {
		sa, _ := e.shape.at(age * r)
		if sa < 1e-3 {
			// Older than almost every session seen: no shape information
			// left; an equilibrium slot frees at rate r.
			a.qLinear++
			continue
		}
		prev := 1.0
		for k := 1; k <= gridPoints; k++ {
			st, _ := e.shape.at((age + float64(k)*step) * r)
			cur := st / sa
			a.q[k] += prev - cur
			prev = cur
		}
		a.q[gridPoints] += prev // what is left ends by h (S(h·r) = 0)
	}
}

// build computes N(t), the expected number of slots of the pool freed by
// time t, on a uniform grid t_k = k·h/gridPoints. A slot whose session has
// age a frees first after its residual R_a (learned shape, scaled to mean
// 1/r, conditioned on lasting a), then each new session it takes is a
// renewal: m_a(t) = E[1{R_a ≤ t}·(1 + M(t − R_a))], M the renewal function
// of the duration shape. Summed over slots this is one convolution of the
// pooled residual density with 1 + M. A free slot counts at t = 0 and then
// renews (1 + M(t)). Sessions above an agent's capacity must end before
// any slot frees. With exponential durations N(t) = free + r·t·slots.
func (e *Estimator) build(p *pool) {
	v := &e.v
	r := v.r
	p.h = 8 / r
	if v.shapeOK {
		p.h = e.shape.xmax / r
	}
	p.n = [gridPoints + 1]float64{}
	step := p.h / gridPoints
	var q [gridPoints + 1]float64 // pooled residual mass ending in each cell
	var linear, free, excess float64
	for _, a := range p.agents {
		busy := a.busy()
		free += float64(max(0, a.capacity-busy))
		excess += float64(max(0, busy-a.capacity))
		linear += float64(a.unknownAge)
		if !v.shapeOK {
			linear += float64(len(a.sessions))
			continue
		}
		if a.qGen != e.gen {
			e.residuals(a, step)
		}
		linear += a.qLinear
		for k := range q {
			q[k] += a.q[k]
		}
	}
	m := &e.shape.renewal
	for k := 0; k <= gridPoints; k++ {
		t := float64(k) * step
		var busyN float64
		if v.shapeOK {
			for j := 1; j <= k; j++ {
				// A departure inside cell j happens, on average, mid-cell.
				busyN += q[j] * (1 + (m[k-j]+m[k-j+1])/2)
			}
			busyN += free * m[k]
		} else {
			busyN = free * r * t
		}
		p.n[k] = free + math.Max(0, busyN+linear*r*t-excess)
	}
	p.warp = e.buildWarp(p, p.global)
	p.built = true
}
