package waitmodel

import (
	"math"
	"slices"
)

// shape is the empirical distribution of session durations (seconds),
// normalised to mean 1, kept as survival S(x) and its integral
// I(x) = ∫₀ˣ S(u) du on a uniform grid so that the residual life of a
// session of a given age costs two table lookups.
type shape struct {
	ring   []float64 // recent durations, seconds
	next   int
	filled int
	added  int // samples since the table was built

	mean  float64   // mean of the samples the table was built from
	cv2   float64   // their squared coefficient of variation
	xmax  float64   // largest normalised sample
	surv  []float64 // S at x_j = j·xmax/(len−1)
	integ []float64
	// renewal is the renewal function M of the normalised durations at
	// x_k = k·xmax/gridPoints: expected completions by x of a slot that
	// starts a fresh session at 0 and renews at every completion.
	renewal [gridPoints + 1]float64
}

const shapeGrid = 256

func newShape(capacity int) shape {
	return shape{ring: make([]float64, capacity)}
}

func (s *shape) add(d float64) {
	if d <= 0 || math.IsNaN(d) || math.IsInf(d, 0) {
		return
	}
	s.ring[s.next] = d
	s.next = (s.next + 1) % len(s.ring)
	if s.filled < len(s.ring) {
		s.filled++
	}
	s.added++
}

// ready rebuilds the table when a tenth of the samples are new and reports
// whether there are enough samples to trust it.
func (s *shape) ready(min int) bool {
	if s.filled < min {
		return false
	}
	if s.surv == nil || s.added*10 >= s.filled {
		s.rebuild()
	}
	return true
}

func (s *shape) rebuild() {
	xs := slices.Clone(s.ring[:s.filled])
	slices.Sort(xs)
	var sum float64
	for _, x := range xs {
		sum += x
	}
	s.mean = sum / float64(len(xs))
	var ss float64
	for _, x := range xs {
		ss += (x - s.mean) * (x - s.mean)
	}
	s.cv2 = ss / float64(len(xs)) / (s.mean * s.mean)
	// A few huge outliers would stretch the grid and blur the body; the top
	// 0.1 % is folded into the last cell.
	s.xmax = xs[len(xs)-1-len(xs)/1000] / s.mean
	if s.xmax <= 0 {
		s.xmax = 1
	}
	if s.surv == nil {
		s.surv = make([]float64, shapeGrid)
		s.integ = make([]float64, shapeGrid)
	}
	step := s.xmax / (shapeGrid - 1)
	n := float64(len(xs))
	i := 0
	for j := range shapeGrid {
		x := float64(j) * step * s.mean
		for i < len(xs) && xs[i] <= x {
			i++
		}
		s.surv[j] = float64(len(xs)-i) / n
		if j > 0 {
			s.integ[j] = s.integ[j-1] + step*(s.surv[j]+s.surv[j-1])/2
		}
	}
	s.surv[shapeGrid-1] = 0
	s.added = 0

	// M(x) = F(x) + ∫ M(x−u) dF(u), discretised with the completion inside
	// a cell taken at mid-cell (implicit in M_k for the first cell).
	var f [gridPoints + 1]float64
	for k := range f {
		sv, _ := s.at(float64(k) * s.xmax / gridPoints)
		f[k] = 1 - sv
	}
	m := &s.renewal
	m[0] = 0
	for k := 1; k <= gridPoints; k++ {
		sum := f[k] + (f[1]-f[0])*m[k-1]/2
		for j := 2; j <= k; j++ {
			sum += (f[j] - f[j-1]) * (m[k-j] + m[k-j+1]) / 2
		}
		m[k] = sum / (1 - (f[1]-f[0])/2)
	}
}

// at returns S(x) and I(x) for x in normalised units (mean 1).
func (s *shape) at(x float64) (surv, integ float64) {
	if x <= 0 {
		return 1, 0
	}
	f := x / s.xmax * (shapeGrid - 1)
	if f >= shapeGrid-1 {
		return 0, s.integ[shapeGrid-1]
	}
	j := int(f)
	w := f - float64(j)
	return s.surv[j] + w*(s.surv[j+1]-s.surv[j]), s.integ[j] + w*(s.integ[j+1]-s.integ[j])
}

// snapshot returns the stored samples oldest first, for MarshalState.
func (s *shape) samples() []float64 {
	out := make([]float64, 0, s.filled)
	if s.filled < len(s.ring) {
		return append(out, s.ring[:s.filled]...)
	}
	out = append(out, s.ring[s.next:]...)
	return append(out, s.ring[:s.next]...)
}

// ratioRing keeps recent calibration ratios and their quantile.
type ratioRing struct {
	vals   []float64
	next   int
	filled int
	dirty  bool
	q      float64
}

func (r *ratioRing) add(v float64, capacity int) {
	if r.vals == nil {
		r.vals = make([]float64, capacity)
	}
	r.vals[r.next] = v
	r.next = (r.next + 1) % len(r.vals)
	if r.filled < len(r.vals) {
		r.filled++
	}
	r.dirty = true
}

func (r *ratioRing) quantile(p float64) float64 {
	if r.dirty {
		xs := slices.Clone(r.vals[:r.filled])
		slices.Sort(xs)
		r.q = xs[min(len(xs)-1, int(math.Ceil(p*float64(len(xs))))-1)]
		r.dirty = false
	}
	return r.q
}

func (r *ratioRing) samples() []float64 {
	out := make([]float64, 0, r.filled)
	if r.filled < len(r.vals) {
		return append(out, r.vals[:r.filled]...)
	}
	out = append(out, r.vals[r.next:]...)
	return append(out, r.vals[:r.next]...)
}

// gammaQuantileFactor returns q/k where q is the quantile of a gamma
// distribution with shape k and rate 1 at the level whose standard normal
// quantile is z (Wilson–Hilferty): the band of a wait that is the sum of k
// exponential departure gaps, as a multiple of its mean. It is the band
// used before enough calibration ratios exist.
func gammaQuantileFactor(k, z float64) float64 {
	if k < 1 {
		k = 1
	}
	c := 1 - 1/(9*k) + z/(3*math.Sqrt(k))
	return c * c * c
}

// normalQuantile is the standard normal quantile (Acklam's rational
// approximation, ample for a band level).
func normalQuantile(p float64) float64 {
	a := [...]float64{-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00}
	b := [...]float64{-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01}
	c := [...]float64{-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00}
	d := [...]float64{7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00}
	const lo = 0.02425
	switch {
	case p < lo:
		q := math.Sqrt(-2 * math.Log(p))
		return (((((c[0]*q+c[1])*q+c[2])*q+c[3])*q+c[4])*q + c[5]) / ((((d[0]*q+d[1])*q+d[2])*q+d[3])*q + 1)
	case p > 1-lo:
		q := math.Sqrt(-2 * math.Log(1-p))
		return -(((((c[0]*q+c[1])*q+c[2])*q+c[3])*q+c[4])*q + c[5]) / ((((d[0]*q+d[1])*q+d[2])*q+d[3])*q + 1)
	}
	q := p - 0.5
	r := q * q
	return (((((a[0]*r+a[1])*r+a[2])*r+a[3])*r+a[4])*r + a[5]) * q / (((((b[0]*r+b[1])*r+b[2])*r+b[3])*r+b[4])*r + 1)
}
