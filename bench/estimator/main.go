// Command estimator evaluates kefu's wait-time estimator against the
// baselines of the literature on simulated 多客服 queues: for every
// scenario and replication it runs queuesim, feeds the real estimator what
// production would see, scores every model's prediction made when each
// customer joined the queue against the customer's actual wait, and writes
// docs/estimator-results.{md,csv} and docs/estimator-plot.png.
//
//	go run ./bench/estimator -customers 20000 -reps 3   # quick
//	go run ./bench/estimator                             # 100k × 10
package main

import (
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kefu-io/kefu/internal/queuesim"
	"github.com/kefu-io/kefu/internal/waitmodel"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		log.Fatal(err)
	}
}

type options struct {
	customers int
	reps      int
	warmup    float64
	seed      uint64
	workers   int
	selected  []scenario
	out       string
	plot      string
	estimator waitmodel.Config
}

func parse(args []string) (options, error) {
	fs := flag.NewFlagSet("estimator", flag.ContinueOnError)
	var o options
	var names string
	fs.IntVar(&o.customers, "customers", 100_000, "customers per replication")
	fs.IntVar(&o.reps, "reps", 10, "replications per scenario")
	fs.Float64Var(&o.warmup, "warmup", 0.1, "fraction of each replication's customers discarded as warm-up")
	fs.Uint64Var(&o.seed, "seed", 1000, "base seed of the evaluation (model choices were checked on seeds below 1000)")
	fs.IntVar(&o.workers, "workers", min(2, runtime.NumCPU()), "replications run in parallel")
	fs.StringVar(&names, "scenarios", "all", "all, or a comma-separated list of scenario names")
	fs.StringVar(&o.out, "out", "docs", "directory for estimator-results.{md,csv} and estimator-plot.png; empty: print only")
	fs.StringVar(&o.plot, "plot", "hyperexp", "scenario whose first replication is drawn")
	fs.DurationVar(&o.estimator.HalfLife, "halflife", 0, "estimator HalfLife (0: the default) — to explore the setting on development seeds")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("parse flags: %w", err)
	}
	if o.customers < 100 || o.reps < 1 || o.workers < 1 || o.warmup < 0 || o.warmup >= 1 {
		return o, fmt.Errorf("parse flags: customers ≥ 100, reps ≥ 1, workers ≥ 1, warmup in [0, 1) required")
	}
	if _, err := waitmodel.New(o.estimator); err != nil {
		return o, fmt.Errorf("parse flags: %w", err)
	}
	all := scenarios()
	if names == "all" {
		o.selected = all
		return o, nil
	}
	for _, n := range strings.Split(names, ",") {
		found := false
		for _, s := range all {
			if s.name == strings.TrimSpace(n) {
				o.selected = append(o.selected, s)
				found = true
			}
		}
		if !found {
			return o, fmt.Errorf("parse flags: unknown scenario %q", n)
		}
	}
	return o, nil
}

func run(args []string, stdout io.Writer) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	start := time.Now()
	type job struct{ si, rep int }
	jobs := make(chan job)
	results := make([][]repResult, len(o.selected))
	for i := range results {
		results[i] = make([]repResult, o.reps)
	}
	var points []point
	var wg sync.WaitGroup
	for range o.workers {
		wg.Go(func() {
			for j := range jobs {
				sc := o.selected[j.si]
				draw := sc.name == o.plot && j.rep == 0
				r := replicate(sc, o, seedFor(o.seed, sc.name, j.rep), draw)
				results[j.si][j.rep] = r
				if draw {
					points = r.points
				}
			}
		})
	}
	for si := range o.selected {
		for rep := range o.reps {
			jobs <- job{si, rep}
		}
	}
	close(jobs)
	wg.Wait()

	tables := make([]table, len(o.selected))
	for i, sc := range o.selected {
		tables[i] = summarise(sc, results[i])
	}
	cmd := fmt.Sprintf("go run ./bench/estimator -customers %d -reps %d -seed %d -scenarios %s",
		o.customers, o.reps, o.seed, scenarioNames(o.selected))
	md := markdown(tables, cmd, o, time.Since(start))
	if _, err := io.WriteString(stdout, md); err != nil {
		return fmt.Errorf("print results: %w", err)
	}
	if o.out == "" {
		return nil
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("create output dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.out, "estimator-results.md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("write results table: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.out, "estimator-results.csv"), []byte(csvOf(tables)), 0o644); err != nil {
		return fmt.Errorf("write results csv: %w", err)
	}
	if len(points) > 0 {
		if err := writePlot(filepath.Join(o.out, "estimator-plot.png"), points); err != nil {
			return fmt.Errorf("write plot: %w", err)
		}
	}
	return nil
}

func scenarioNames(sel []scenario) string {
	if len(sel) == len(scenarios()) {
		return "all"
	}
	names := make([]string, len(sel))
	for i, s := range sel {
		names[i] = s.name
	}
	return strings.Join(names, ",")
}

// seedFor derives a replication's seed from the base, the scenario name
// and the replication number, so adding a scenario changes no other.
func seedFor(base uint64, name string, rep int) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return base*1_000_003 + h.Sum64()%1_000_000_007 + uint64(rep)*7919
}

// prediction is what one model said when a customer joined.
type prediction struct {
	wait, p90 float32
	unknown   bool
}

type point struct{ actual, predicted, p90 float64 }

// repResult holds one replication's sums per model.
type repResult struct {
	sums   []sums
	points []point
	counts
	// P90/estimate at the poll that first listed a customer who joined
	// beyond the 100.
	lateBands []float64
	// kefu's P90/estimate of every scored customer.
	bands []float64
}

// restartPrediction is the first kefu estimate after a restart for a
// customer who was waiting then: its P90 and how long they had waited.
type restartPrediction struct{ p90, waited float64 }

// restart does what a restart (or a takeover) of the service does: the
// learned state and the members survive (kefu_state), the rest is rebuilt
// from the next snapshot.
func restart(old *waitmodel.Estimator, members *waitmodel.Members, cfg waitmodel.Config) (*waitmodel.Estimator, *waitmodel.Members) {
	state, err := old.MarshalState()
	if err != nil {
		panic(err)
	}
	mb, err := members.MarshalJSON()
	if err != nil {
		panic(err)
	}
	est, err := waitmodel.New(cfg)
	if err != nil {
		panic(err)
	}
	if err := est.UnmarshalState(state); err != nil {
		panic(err)
	}
	fresh := &waitmodel.Members{}
	if err := fresh.UnmarshalJSON(mb); err != nil {
		panic(err)
	}
	return est, fresh
}

// scoreAfterRestart records kefu's first estimate after a restart for
// every customer waiting then.
func scoreAfterRestart(est *waitmodel.Estimator, sim *queuesim.Sim, s waitmodel.Snapshot, after map[int]restartPrediction) {
	for id := sim.Arrivals() - 1; id >= 0; id-- {
		out := sim.Outcome(id)
		if out.Served || out.Abandoned || !out.Queued {
			if s.At.Sub(out.Arrived) > 24*time.Hour {
				break
			}
			continue
		}
		e, ok := est.Predict(waitmodel.Kefu, out.OpenID)
		if !ok || e.Unknown {
			continue
		}
		if _, seen := after[id]; !seen {
			after[id] = restartPrediction{p90: e.WaitP90.Seconds(), waited: s.At.Sub(out.Arrived).Seconds()}
		}
	}
}

func replicate(sc scenario, o options, seed uint64, draw bool) repResult {
	models := waitmodel.Models()
	customers := o.customers * max(sc.scale, 1)
	cfg := sc.build(customers)
	cfg.Seed = seed
	est, err := waitmodel.New(o.estimator)
	if err != nil {
		panic(err) // validated in parse
	}
	preds := make([][]prediction, customers)
	unlisted := make([]bool, customers)
	late := map[int]listedPrediction{}
	// members is the queue as kefu sees customers join (ingest's
	// kefu.wechat.kf.queue.joined): the customers behind the 100 listed get
	// inferred places, as in production.
	members := &waitmodel.Members{}
	var buf []waitmodel.WaitingCase
	complete := func(s waitmodel.Snapshot) waitmodel.Snapshot {
		s, buf = members.Complete(s, buf)
		return s
	}
	// A restart (sc.restartEvery) saves what was learned and the members
	// and starts a new estimator from them, as the service does; the
	// customers waiting then are scored on the first estimate after it.
	var nextRestart time.Time
	restartPending := false
	after := map[int]restartPrediction{}
	var sim *queuesim.Sim
	var bayes *bayesOracle
	if sc.bayes {
		bayes = newBayesOracle(cfg.Service, seed)
	}
	hooks := queuesim.Hooks{
		Event: func(e queuesim.Event) {
			// Only what WeChat reports reaches the estimator: arrivals and
			// abandonments are learned from snapshots.
			switch e.Kind {
			case queuesim.SessionCreated:
				members.Remove(e.OpenID)
				est.SessionCreated(e.OpenID, e.KfAccount, e.At)
			case queuesim.SessionClosed:
				est.SessionClosed(e.OpenID, e.KfAccount, e.At)
			case queuesim.SessionSwitched:
				est.SessionSwitched(e.OpenID, e.From, e.To, e.At)
			}
		},
		Poll: func(s waitmodel.Snapshot) {
			if sc.restartEvery > 0 {
				if nextRestart.IsZero() {
					nextRestart = s.At.Add(sc.restartEvery)
				}
				if !s.At.Before(nextRestart) {
					est, members = restart(est, members, o.estimator)
					nextRestart = nextRestart.Add(sc.restartEvery)
					restartPending = true
				}
			}
			res := est.Observe(complete(s))
			noteListed(res, unlisted, late)
			if restartPending {
				restartPending = false
				scoreAfterRestart(est, sim, s, after)
			}
		},
		Join: func(id int) {
			// The service polls getwaitcase when a waiting customer writes
			// in; the prediction made then is the one scored.
			out := sim.Outcome(id)
			members.Join(out.OpenID, out.KfAccount, sim.Now())
			snap := complete(sim.Snapshot())
			res := est.Observe(snap)
			openid := out.OpenID
			p := make([]prediction, len(models))
			for mi, m := range models {
				e, ok := est.Predict(m, openid)
				if !ok {
					e = est.PredictPosition(m, res.Count)
					unlisted[id] = true
				}
				if e.Inferred {
					unlisted[id] = true
				}
				p[mi] = prediction{wait: float32(e.Wait.Seconds()), p90: float32(e.WaitP90.Seconds()), unknown: e.Unknown}
			}
			if sc.oracle {
				p = append(p, oraclePrediction(cfg, snap, res.Count))
			}
			if bayes != nil {
				p = append(p, bayes.predict(snap, res.Count))
			}
			preds[id] = p
		},
	}
	sim, err = queuesim.New(cfg, hooks)
	if err != nil {
		panic(fmt.Sprintf("scenario %s: %v", sc.name, err))
	}
	sim.Run()

	r := repResult{sums: make([]sums, len(models)+1)}
	warm := int(o.warmup * float64(customers))
	for id := warm; id < sim.Arrivals(); id++ {
		if preds[id] == nil {
			continue
		}
		out := sim.Outcome(id)
		r.queued++
		if unlisted[id] {
			r.unlisted++
		}
		if out.Abandoned {
			// The literature scores served customers only: an abandoned
			// customer's wait is censored by its patience.
			r.aband++
			continue
		}
		r.served++
		w := out.Wait.Seconds()
		if l, ok := late[id]; ok {
			r.lateN++
			r.lateBands = append(r.lateBands, l.p90/l.wait)
			if out.Arrived.Add(out.Wait).Sub(l.at).Seconds() <= l.p90 {
				r.lateCovered++
			}
		}
		if k := preds[id][0]; !k.unknown && k.wait > 0 {
			r.bands = append(r.bands, float64(k.p90/k.wait))
			if unlisted[id] {
				r.inferredN++
				if w <= float64(k.p90) {
					r.inferredCovered++
				}
			}
		}
		if a, ok := after[id]; ok {
			r.restartN++
			if w-a.waited <= a.p90 {
				r.restartCovered++
			}
		}
		for mi, p := range preds[id] {
			s := &r.sums[mi]
			if p.unknown {
				s.unknown++
				continue
			}
			d := w - float64(p.wait)
			s.n++
			s.w += w
			s.w2 += w * w
			s.err += d
			s.err2 += d * d
			if d < 0 {
				d = -d
			}
			s.abs += d
			if w <= float64(p.p90) {
				s.covered++
			}
		}
		if draw && len(r.points) < 4000 && !preds[id][0].unknown {
			r.points = append(r.points, point{actual: w, predicted: float64(preds[id][0].wait), p90: float64(preds[id][0].p90)})
		}
	}
	return r
}

// oraclePrediction is QL_m with the scenario's true service rate μ and
// abandonment rate θ (θ = 0 without patience: plain QL) and the online
// slots of the snapshot, for the customer at place n (the joining
// customer is last). In M/M/s it is the optimum whose RASE is 1−ρ; with
// exponential service and patience it is the conditional mean wait given
// the place and the online slots.
func oraclePrediction(cfg queuesim.Config, snap waitmodel.Snapshot, n int) prediction {
	var slots float64
	for _, a := range snap.Agents {
		if a.Status != 0 {
			slots += float64(a.AutoAccept)
		}
	}
	if slots == 0 {
		return prediction{unknown: true}
	}
	mu := 1 / cfg.Service.Mean()
	theta := 0.0
	if cfg.Patience != nil {
		theta = 1 / cfg.Patience.Mean()
	}
	var w float64
	for i := range n {
		w += 1 / (slots*mu + float64(i)*theta)
	}
	return prediction{wait: float32(w), p90: float32(w * oracleBand(float64(n)))}
}

// listedPrediction is kefu's estimate at the poll that first listed a
// customer who had joined beyond the 100 listed.
type listedPrediction struct {
	p90, wait float64
	at        time.Time
}

// noteListed records, for customers who joined beyond the 100 listed, the
// estimate of the poll that first lists them: a refinement made long after
// the join, whose band the calibration once inflated.
func noteListed(res waitmodel.Result, unlisted []bool, late map[int]listedPrediction) {
	for _, e := range res.Estimates {
		if isInferred(e) || e.Unknown || e.Wait <= 0 {
			continue
		}
		id, err := strconv.Atoi(strings.TrimPrefix(e.OpenID, "o"))
		if err != nil || id >= len(unlisted) || !unlisted[id] {
			continue
		}
		if _, seen := late[id]; !seen {
			late[id] = listedPrediction{p90: e.WaitP90.Seconds(), wait: e.Wait.Seconds(), at: res.At}
		}
	}
}

func isInferred(e waitmodel.Estimate) bool { return e.Inferred }
