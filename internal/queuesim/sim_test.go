package queuesim

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/waitmodel"
)

// erlangC returns the mean wait in queue of M/M/s (seconds).
func erlangC(s int, lambda, mu float64) float64 {
	a := lambda / mu
	term, sum := 1.0, 0.0
	for k := range s {
		if k > 0 {
			term *= a / float64(k)
		}
		sum += term
	}
	last := term * a / float64(s) * float64(s) / (float64(s) - a)
	c := last / (sum + last)
	return c / (float64(s)*mu - lambda)
}

func agents(n, slots int) []AgentSpec {
	out := make([]AgentSpec, n)
	for i := range out {
		out[i] = AgentSpec{Account: fmt.Sprintf("kf%02d@test", i), AutoAccept: slots}
	}
	return out
}

type tally struct {
	waits, queued, served, abandoned float64
	n                                int
}

func run(t *testing.T, cfg Config, warmup int) (tally, *Sim) {
	t.Helper()
	s, err := New(cfg, Hooks{})
	if err != nil {
		t.Error(err)
		return tally{}, nil
	}
	s.Run()
	var tl tally
	for id := warmup; id < s.Arrivals(); id++ {
		o := s.Outcome(id)
		tl.n++
		tl.waits += o.Wait.Seconds()
		if o.Queued {
			tl.queued++
		}
		if o.Served {
			tl.served++
		}
		if o.Abandoned {
			tl.abandoned++
		}
	}
	return tl, s
}

func TestMMsMatchesErlangC(t *testing.T) {
	// The standard error of one run's mean wait at ρ = 0.9 is about 2 % at
	// 400k customers; three independent runs (run two at a time) cut it to about 1.2 %.
	const (
		servers = 4
		rho     = 0.9
		mean    = 100 * time.Second
	)
	mu := 1 / mean.Seconds()
	lambda := rho * servers * mu
	seeds := []uint64{7, 8, 9}
	results := make([]tally, len(seeds))
	var wg sync.WaitGroup
	for i, seed := range seeds {
		wg.Go(func() {
			results[i], _ = run(t, Config{
				Seed: seed, Customers: 400_000, ArrivalRate: lambda,
				Service: Exponential(mean), Agents: agents(servers, 1), PollInterval: -1,
			}, 20_000)
		})
	}
	wg.Wait()
	var waits float64
	var n int
	for _, r := range results {
		waits += r.waits
		n += r.n
	}
	got := waits / float64(n)
	want := erlangC(servers, lambda, mu)
	if rel := math.Abs(got-want) / want; rel > 0.03 {
		t.Fatalf("mean wait %.2fs, Erlang C %.2fs: off by %.1f%% (> 3%%)", got, want, 100*rel)
	}
}

func TestSanity(t *testing.T) {
	// Little's law and utilisation on a multi-chat, slowed-down queue:
	// every chat of an agent with j chats runs at speed j^-α.
	const mean = 60 * time.Second
	cfg := Config{
		Seed: 3, Customers: 60_000, ArrivalRate: 0.05, Service: Exponential(mean),
		Alpha: 0.5, Agents: agents(3, 2), PollInterval: 30 * time.Second,
	}
	var areaQ, last, busyArea float64
	var polls int
	var s *Sim
	cfg2 := cfg
	hooks := Hooks{Poll: func(sn waitmodel.Snapshot) {
		now := sn.At.Sub(cfg2.Start).Seconds()
		areaQ += float64(sn.Count) * (now - last)
		for _, a := range sn.Agents {
			busyArea += float64(a.Accepted) * (now - last)
		}
		last = now
		polls++
		if sn.Count != s.Waiting() || len(sn.Waiting) > 100 {
			t.Fatalf("snapshot count %d, listed %d, waiting %d", sn.Count, len(sn.Waiting), s.Waiting())
		}
	}}
	cfg2.Start = time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC)
	var err error
	s, err = New(cfg2, hooks)
	if err != nil {
		t.Fatal(err)
	}
	s.Run()
	var waits float64
	for id := range s.Arrivals() {
		o := s.Outcome(id)
		if !o.Served {
			t.Fatalf("customer %d not served without patience", id)
		}
		waits += o.Wait.Seconds()
	}
	span := last
	lambda := float64(s.Arrivals()) / span
	// Little: L = λ·W (time-average queue length from polls).
	L, W := areaQ/span, waits/float64(s.Arrivals())
	if rel := math.Abs(L-lambda*W) / (lambda * W); rel > 0.05 {
		t.Errorf("Little's law: L=%.3f, λW=%.3f", L, lambda*W)
	}
	// Work conservation: the agents deliver λ·E[S] work per second; with
	// j chats an agent delivers j^(1-α) work per second.
	if lambda*mean.Seconds() > 3*math.Pow(2, 0.5) {
		t.Fatalf("unstable test configuration")
	}
	if busyArea/span <= lambda*mean.Seconds()/math.Pow(2, 0.5) {
		t.Errorf("mean chats in service %.3f below the minimum %.3f", busyArea/span, lambda*mean.Seconds()/math.Pow(2, 0.5))
	}
}

func TestDeterministicBySeed(t *testing.T) {
	cfg := Config{
		Customers: 3000, ArrivalRate: 0.1, Amplitude: 0.3, Period: time.Hour,
		Service: HyperExponential(30*time.Second, 2), Alpha: 0.8, Agents: agents(2, 2),
		Patience: Exponential(2 * time.Minute), SpecificFraction: 0.2, SwitchProb: 0.05,
		Absences: []Absence{{Account: "kf01@test", Start: 10 * time.Minute, Length: 5 * time.Minute, Every: 30 * time.Minute}},
	}
	trace := func(seed uint64) []Event {
		c := cfg
		c.Seed = seed
		var evs []Event
		s, err := New(c, Hooks{Event: func(e Event) { evs = append(evs, e) }})
		if err != nil {
			t.Fatal(err)
		}
		s.Run()
		return evs
	}
	a, b, other := trace(11), trace(11), trace(12)
	if !slices.Equal(a, b) {
		t.Fatal("same seed gave different event streams")
	}
	if slices.Equal(a, other) {
		t.Fatal("different seeds gave the same event stream")
	}
	kinds := map[EventKind]int{}
	for _, e := range a {
		kinds[e.Kind]++
	}
	for _, k := range []EventKind{Arrived, SessionCreated, SessionClosed, SessionSwitched, Abandoned, AgentOffline, AgentOnline} {
		if kinds[k] == 0 {
			t.Errorf("no %v event in a run that exercises it", k)
		}
	}
}
