package waitmodel

import (
	"math"
	"time"
)

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
