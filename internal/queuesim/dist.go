package queuesim

import (
	"math"
	"math/rand/v2"
	"time"
)

// Dist is a distribution of durations, sampled in seconds.
type Dist interface {
	Sample(r *rand.Rand) float64
	Mean() float64
}

type exponential struct{ mean float64 }

// Exponential returns the exponential distribution with the given mean.
func Exponential(mean time.Duration) Dist { return exponential{mean.Seconds()} }

func (d exponential) Sample(r *rand.Rand) float64 { return r.ExpFloat64() * d.mean }
func (d exponential) Mean() float64               { return d.mean }

type logNormal struct{ mean, mu, sigma float64 }

// LogNormal returns the lognormal distribution with the given mean and
// coefficient of variation (standard deviation / mean).
func LogNormal(mean time.Duration, cv float64) Dist {
	s2 := math.Log1p(cv * cv)
	return logNormal{mean: mean.Seconds(), mu: math.Log(mean.Seconds()) - s2/2, sigma: math.Sqrt(s2)}
}

func (d logNormal) Sample(r *rand.Rand) float64 { return math.Exp(d.mu + d.sigma*r.NormFloat64()) }
func (d logNormal) Mean() float64               { return d.mean }

type hyperExponential struct{ mean, p, m1, m2 float64 }

// HyperExponential returns the two-phase hyperexponential distribution
// with balanced means and the given mean and coefficient of variation
// (cv ≥ 1): with probability p an exponential of mean m/(2p), else one of
// mean m/(2(1−p)), p = (1 + √((cv²−1)/(cv²+1)))/2.
func HyperExponential(mean time.Duration, cv float64) Dist {
	m := mean.Seconds()
	c2 := math.Max(cv*cv, 1)
	p := (1 + math.Sqrt((c2-1)/(c2+1))) / 2
	return hyperExponential{mean: m, p: p, m1: m / (2 * p), m2: m / (2 * (1 - p))}
}

func (d hyperExponential) Sample(r *rand.Rand) float64 {
	if r.Float64() < d.p {
		return r.ExpFloat64() * d.m1
	}
	return r.ExpFloat64() * d.m2
}
func (d hyperExponential) Mean() float64 { return d.mean }
