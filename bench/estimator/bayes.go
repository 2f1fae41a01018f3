package main

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/kefu-io/kefu/internal/queuesim"
	"github.com/kefu-io/kefu/internal/waitmodel"
)

// bayesRuns is the number of Monte Carlo continuations per prediction of
// the Bayes oracle; its sampling noise inflates the oracle's squared error
// by about 1/bayesRuns (0.5 %).
const bayesRuns = 200

// bayesOracle predicts the wait of the customer at place k as E[T_k | the
// snapshot], T_k the time of the k-th slot freed, by Monte Carlo over the
// scenario's true duration distribution: each session in progress ends
// after a residual drawn conditionally on its age (rejection: a duration
// longer than the age), and each freed slot takes the next customer with a
// fresh duration. It knows the true distribution and sees the same queue
// and session ages as the estimator, so no predictor built on that
// information can beat its RASE by more than its sampling noise: it is
// the attainable bound of the scenario. Used for single-chat scenarios
// without abandonment or agent queues, where the wait is exactly T_k.
type bayesOracle struct {
	dist  queuesim.Dist
	rng   *rand.Rand
	ends  []float64
	times []float64
}

func newBayesOracle(d queuesim.Dist, seed uint64) *bayesOracle {
	return &bayesOracle{dist: d, rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)), times: make([]float64, bayesRuns)}
}

func (b *bayesOracle) predict(snap waitmodel.Snapshot, k int) prediction {
	var ages []float64
	free := 0
	for _, a := range snap.Agents {
		if a.Status == 0 {
			continue
		}
		for _, s := range a.Sessions {
			ages = append(ages, math.Max(0, snap.At.Sub(s.Since).Seconds()))
		}
		free += max(0, a.AutoAccept-len(a.Sessions))
	}
	if len(ages)+free == 0 {
		return prediction{unknown: true}
	}
	if k <= free {
		return prediction{}
	}
	var sum float64
	for run := range bayesRuns {
		b.ends = b.ends[:0]
		for range free {
			b.ends = append(b.ends, 0)
		}
		for _, a := range ages {
			b.ends = append(b.ends, b.residual(a))
		}
		var t float64
		for range k {
			i := 0
			for j := 1; j < len(b.ends); j++ {
				if b.ends[j] < b.ends[i] {
					i = j
				}
			}
			t = b.ends[i]
			b.ends[i] = t + b.dist.Sample(b.rng)
		}
		b.times[run] = t
		sum += t
	}
	slices.Sort(b.times)
	return prediction{wait: float32(sum / bayesRuns), p90: float32(b.times[bayesRuns*9/10-1])}
}

// residual draws the remaining life of a session of the given age.
func (b *bayesOracle) residual(age float64) float64 {
	for range 1_000_000 {
		if d := b.dist.Sample(b.rng); d > age {
			return d - age
		}
	}
	return b.dist.Mean() // practically unreachable: an age far in the tail
}
