package main

import (
	"encoding/csv"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/kefu-io/kefu/internal/waitmodel"
)

type row struct {
	model                     string
	rase, raseSE              float64
	rmse, mae, bias, coverage float64
	n, unknown                int
}

type table struct {
	sc           scenario
	rows         []row
	meanWait     float64
	bestBaseline int // index in rows
	counts           // pooled over the replications
	// kefu's band: median P90/estimate, of every scored customer and at
	// the poll that first listed a customer who joined beyond the 100.
	bandMedian, lateMedian float64
}

// summarise pools the replications (ratios of pooled sums) and takes the
// standard error of RASE from the spread between replications.
func summarise(sc scenario, reps []repResult) table {
	models := waitmodel.Models()
	t := table{sc: sc, bestBaseline: -1}
	for _, r := range reps {
		t.counts.add(r.counts)
	}
	t.lateMedian = pooledMedian(reps, func(r repResult) []float64 { return r.lateBands })
	t.bandMedian = pooledMedian(reps, func(r repResult) []float64 { return r.bands })
	names := make([]string, 0, len(models)+1)
	for _, m := range models {
		names = append(names, m.String())
	}
	if sc.oracle || sc.bayes {
		names = append(names, oracleName(sc))
	}
	for mi, name := range names {
		var tot sums
		var per []float64
		for _, r := range reps {
			s := r.sums[mi]
			tot.add(s)
			if s.n > 0 && s.w > 0 {
				mw := s.w / float64(s.n)
				per = append(per, s.err2/float64(s.n)/(mw*mw))
			}
		}
		rw := row{model: name, n: tot.n, unknown: tot.unknown}
		if tot.n > 0 {
			n := float64(tot.n)
			mw := tot.w / n
			t.meanWait = mw
			rw.rase = tot.err2 / n / (mw * mw)
			rw.rmse = math.Sqrt(tot.err2 / n)
			rw.mae = tot.abs / n
			rw.bias = -tot.err / n // predicted − actual
			rw.coverage = tot.covered / n
		}
		if len(per) > 1 {
			var m1, m2 float64
			for _, v := range per {
				m1 += v
			}
			m1 /= float64(len(per))
			for _, v := range per {
				m2 += (v - m1) * (v - m1)
			}
			rw.raseSE = math.Sqrt(m2 / float64(len(per)-1) / float64(len(per)))
		}
		t.rows = append(t.rows, rw)
		if mi > 0 && mi < len(models) && (t.bestBaseline < 0 || rw.rase < t.rows[t.bestBaseline].rase) {
			t.bestBaseline = mi
		}
	}
	return t
}

// pooledMedian is the (upper) median of what pick takes from every
// replication; 0 when there is nothing.
func pooledMedian(reps []repResult, pick func(repResult) []float64) float64 {
	var all []float64
	for _, r := range reps {
		all = append(all, pick(r)...)
	}
	if len(all) == 0 {
		return 0
	}
	slices.Sort(all)
	return all[len(all)/2]
}

// verdict states the scenario's target and whether kefu met it.
func verdict(t table) string {
	k := t.rows[0]
	cov := "P90 coverage in [85 %, 95 %]"
	covOK := k.coverage >= 0.85 && k.coverage <= 0.95
	if t.sc.markov {
		bound := 1 - t.sc.rho
		ok := k.rase <= 1.1*bound
		o := t.rows[len(t.rows)-1]
		return fmt.Sprintf("target RASE ≤ 1.1·(1−ρ) = %.4f: %s (%.4f, %+.1f %% vs bound; %+.1f %% vs %s %.4f on the same customers); %s: %s",
			1.1*bound, yes(ok), k.rase, 100*(k.rase/bound-1), 100*(k.rase/o.rase-1), o.model, o.rase, cov, yes(covOK))
	}
	b := t.rows[t.bestBaseline]
	gain := 1 - k.rase/b.rase
	out := fmt.Sprintf("target RASE ≥ 10 %% below best baseline (%s %.4f): %s (%.1f %% lower); %s: %s",
		b.model, b.rase, yes(gain >= 0.10), 100*gain, cov, yes(covOK))
	if t.sc.oracle || t.sc.bayes {
		o := t.rows[len(t.rows)-1]
		out += fmt.Sprintf("; vs %s %.4f: %+.1f %%", o.model, o.rase, 100*(k.rase/o.rase-1))
	}
	return out
}

// oracleName names the reference row: QL/QL_m knowing the true μ (and θ)
// and the online slots, or the Bayes oracle.
func oracleName(sc scenario) string {
	if sc.bayes {
		return "Bayes oracle (true dist., ages)"
	}
	if sc.markov {
		return "oracle QL (true μ)"
	}
	return "oracle QL_m (true μ, θ)"
}

// oracleBand is the P90/mean factor of an Erlang(n) wait.
func oracleBand(n float64) float64 {
	// Wilson–Hilferty, as in package waitmodel.
	k := math.Max(n, 1)
	c := 1 - 1/(9*k) + 1.2815515655446004/(3*math.Sqrt(k))
	return c * c * c
}

func yes(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func markdown(tables []table, cmd string, o options, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Estimator evaluation results\n\n")
	fmt.Fprintf(&b, "Command: `%s`  \n", cmd)
	fmt.Fprintf(&b, "%d customers × %d replications per scenario (× the scale in the heading where one is given), first %.0f %% of each replication discarded as warm-up; evaluation seeds derive from base %d (checks during development used bases below 1000). Mean chat length %v. Took %v.\n\n",
		o.customers, o.reps, 100*o.warmup, o.seed, meanService, took.Round(time.Second))
	fmt.Fprintf(&b, "Scored: customers who had to queue and were served; prediction made when they joined. RASE = E[(W−Ŵ)²]/E[W]² (± standard error over replications), errors in seconds, bias = E[Ŵ−W], cover = P(W ≤ Ŵ_P90).\n\n")
	for _, t := range tables {
		fmt.Fprintf(&b, "## %s — %s", t.sc.name, t.sc.desc)
		if t.sc.scale > 1 {
			fmt.Fprintf(&b, " — scale ×%d: %d customers per replication", t.sc.scale, t.sc.scale*o.customers)
		}
		fmt.Fprintf(&b, "\n\n")
		fmt.Fprintf(&b, "Queued %d, served %d, abandoned %d (%.1f %%), joined beyond the 100 listed %d; E[W] = %.1f s.", t.queued, t.served, t.aband, pct(t.aband, t.queued), t.unlisted, t.meanWait)
		if t.sc.markov {
			fmt.Fprintf(&b, " Bound 1−ρ = %.4f.", 1-t.sc.rho)
		}
		fmt.Fprintf(&b, "\n\n| model | RASE | ±SE | RMSE s | MAE s | bias s | P90 cover | unknown |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for i, r := range t.rows {
			name := r.model
			if i == 0 {
				name = "**" + name + "**"
			}
			fmt.Fprintf(&b, "| %s | %.4f | %.4f | %.1f | %.1f | %+.1f | %.1f %% | %d |\n", name, r.rase, r.raseSE, r.rmse, r.mae, r.bias, 100*r.coverage, r.unknown)
		}
		fmt.Fprintf(&b, "\n%s\n\n", verdict(t))
		fmt.Fprintf(&b, "kefu band: median P90/estimate %.2f×", t.bandMedian)
		if t.inferredN > 0 {
			fmt.Fprintf(&b, "; P90 cover of customers whose place was inferred (beyond the 100 listed) %.1f %% of %d", pct(t.inferredCovered, t.inferredN), t.inferredN)
		}
		if t.lateN > 0 {
			fmt.Fprintf(&b, "; estimate at the poll that first lists a customer who joined beyond the 100: median P90/estimate %.2f×, P90 cover of the rest of the wait %.1f %% of %d", t.lateMedian, pct(t.lateCovered, t.lateN), t.lateN)
		}
		if t.restartN > 0 {
			fmt.Fprintf(&b, "; P90 cover of customers waiting at a restart, on the first estimate after it %.1f %% of %d", pct(t.restartCovered, t.restartN), t.restartN)
		}
		fmt.Fprintf(&b, ".\n\n")
	}
	return b.String()
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func csvOf(tables []table) string {
	var b strings.Builder
	w := csv.NewWriter(&b)
	// Model names hold commas ("oracle QL_m (true μ, θ)"): the writer quotes.
	w.Write([]string{"scenario", "model", "rase", "rase_se", "rmse_s", "mae_s", "bias_s", "p90_coverage", "scored", "unknown", "mean_wait_s", "bound_1_minus_rho"})
	for _, t := range tables {
		bound := ""
		if t.sc.markov {
			bound = fmt.Sprintf("%.4f", 1-t.sc.rho)
		}
		for _, r := range t.rows {
			w.Write([]string{t.sc.name, r.model, fmt.Sprintf("%.5f", r.rase), fmt.Sprintf("%.5f", r.raseSE),
				fmt.Sprintf("%.2f", r.rmse), fmt.Sprintf("%.2f", r.mae), fmt.Sprintf("%.2f", r.bias), fmt.Sprintf("%.4f", r.coverage),
				fmt.Sprint(r.n), fmt.Sprint(r.unknown), fmt.Sprintf("%.2f", t.meanWait), bound})
		}
	}
	w.Flush() // a strings.Builder does not fail
	return b.String()
}
