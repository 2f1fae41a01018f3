package waitmodel

import (
	"math"
	"slices"
)

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
