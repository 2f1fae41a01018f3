package waitmodel

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// paceTeam drives four always-busy one-chat agents whose sessions last an
// exponential time of the current mean, with a snapshot every 15 s.
type paceTeam struct {
	e     *Estimator
	rng   *rand.Rand
	now   time.Time
	mean  time.Duration
	since [4]time.Time
	ends  [4]time.Time
	ids   [4]string
	next  int
}

func newPaceTeam(e *Estimator, mean time.Duration) *paceTeam {
	p := &paceTeam{e: e, rng: rand.New(rand.NewPCG(7, 11)), now: t0, mean: mean}
	for i := range p.ends {
		p.start(i, t0)
	}
	return p
}

func (p *paceTeam) start(i int, at time.Time) {
	p.next++
	p.ids[i] = fmt.Sprint("s", p.next)
	p.since[i] = at
	p.ends[i] = at.Add(time.Duration(p.rng.ExpFloat64() * float64(p.mean)))
	p.e.SessionCreated(p.ids[i], p.kf(i), at)
}

func (p *paceTeam) kf(i int) string { return fmt.Sprintf("kf%d@x", i) }

// run advances d, closing and replacing sessions in time order.
func (p *paceTeam) run(d time.Duration) Result {
	var r Result
	for end := p.now.Add(d); p.now.Before(end); {
		p.now = p.now.Add(15 * time.Second)
		for {
			i := 0
			for j := range p.ends {
				if p.ends[j].Before(p.ends[i]) {
					i = j
				}
			}
			if p.ends[i].After(p.now) {
				break
			}
			at := p.ends[i]
			p.e.SessionClosed(p.ids[i], p.kf(i), at)
			p.start(i, at)
		}
		snap := Snapshot{At: p.now, Count: 1, Waiting: []WaitingCase{{OpenID: "w", Since: p.now}}}
		for i := range p.ends {
			snap.Agents = append(snap.Agents, Agent{Account: p.kf(i), Status: 1, AutoAccept: 1, Accepted: 1,
				Sessions: []Session{{OpenID: p.ids[i], Since: p.since[i]}}})
		}
		r = p.e.Observe(snap)
	}
	return r
}

// TestPaceChange: a steady pace never trips the change test and is
// learned precisely; when sessions suddenly take twice as long, the
// estimator follows within a few hours instead of the days of its long
// memory.
func TestPaceChange(t *testing.T) {
	e := mustNew(t, Config{})
	team := newPaceTeam(e, 5*time.Minute)
	r := team.run(72 * time.Hour)
	if e.paceChanges != 0 {
		t.Errorf("steady pace: %d pace changes detected, want 0", e.paceChanges)
	}
	if got := r.ServiceFor.Minutes(); math.Abs(got-5) > 0.4 {
		t.Errorf("steady pace: learned session length %.2f min, want 5 ± 0.4", got)
	}

	blind := mustNew(t, Config{ChangeZ: 1e9}) // long memory only
	blindTeam := newPaceTeam(blind, 5*time.Minute)
	blindTeam.run(72 * time.Hour)

	team.mean, blindTeam.mean = 10*time.Minute, 10*time.Minute
	r = team.run(3 * time.Hour)
	rb := blindTeam.run(3 * time.Hour)
	t.Logf("3h after the change: %v with the change test, %v with the long memory only", r.ServiceFor, rb.ServiceFor)
	if e.paceChanges == 0 {
		t.Error("pace doubled: no change detected")
	}
	if got := r.ServiceFor.Minutes(); got < 8 || got > 12 {
		t.Errorf("3h after the pace doubled: learned %.1f min, want 10 ± 2", got)
	}
	if got := rb.ServiceFor.Minutes(); got > 6.5 {
		t.Errorf("long memory alone learned %.1f min; the test should show it lags", got)
	}
}
