package waitmodel

import (
	"math"
)

// rate is the learned per-session departure rate of a full agent (1/s),
// shrunk towards PriorServiceTime by one pseudo-session.
func (e *Estimator) rate() float64 {
	prior := e.cfg.PriorServiceTime.Seconds()
	return (e.dep + 1) / (e.expo + prior)
}

// paceChange compares the long-memory rate with the short-memory one and,
// when they differ by more than ChangeZ standard errors of the short one,
// replaces the long memory by the short: the agents' pace changed (a new
// kind of question, a slower team), and hours of the old pace must not
// dilute the new one. The standard error of a rate measured from n
// departures is CV/√n, CV that of the session durations (1 until their
// shape is known): with high-variance sessions a bigger deviation is
// needed.
func (e *Estimator) paceChange() {
	if e.depS < 10 {
		return
	}
	prior := e.cfg.PriorServiceTime.Seconds()
	rl := (e.dep + 1) / (e.expo + prior)
	rs := (e.depS + 1) / (e.expoS + prior)
	cv := 1.0
	if e.shape.ready(e.cfg.MinShapeSamples) {
		cv = math.Sqrt(e.shape.cv2)
	}
	if math.Abs(math.Log(rs/rl)) > e.cfg.ChangeZ*cv/math.Sqrt(e.depS) {
		e.dep, e.expo = e.depS, e.expoS
		e.paceChanges++
	}
}

// PaceChanges returns how many times the change test found that the
// agents' pace changed (since New or UnmarshalState).
func (e *Estimator) PaceChanges() int { return e.paceChanges }

// theta is the learned abandonment rate of a waiting customer (1/s).
func (e *Estimator) theta() float64 {
	if e.waitExpo <= 0 {
		return 0
	}
	return e.aband / (e.waitExpo + e.cfg.PriorServiceTime.Seconds())
}

func bucketOf(need int) int {
	b := 0
	for need > 1 && b < calibBuckets-1 {
		need >>= 1
		b++
	}
	return b
}
