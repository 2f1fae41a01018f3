package waitmodel_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/queuesim"
	"github.com/kefu-io/kefu/internal/waitmodel"
)

// TestOnSimulatedQueue wires the estimator to the simulator the way the
// service wires it to WeChat and checks, on a short M/M/5 run, that it
// predicts nearly as well as QL told the true service rate and that its
// P90 band covers about 90 % of the served customers.
func TestOnSimulatedQueue(t *testing.T) {
	const (
		servers = 5
		mean    = 5 * time.Minute
	)
	est, err := waitmodel.New(waitmodel.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var agents []queuesim.AgentSpec
	for i := range servers {
		agents = append(agents, queuesim.AgentSpec{Account: fmt.Sprintf("kf%d@x", i), AutoAccept: 1})
	}
	type pred struct{ kefu, p90, oracle float64 }
	preds := map[int]pred{}
	var sim *queuesim.Sim
	sim, err = queuesim.New(queuesim.Config{
		Seed: 42, Customers: 5000, PollInterval: time.Minute, ArrivalRate: 0.9 * servers / mean.Seconds(),
		Service: queuesim.Exponential(mean), Agents: agents,
	}, queuesim.Hooks{
		Event: func(e queuesim.Event) {
			switch e.Kind {
			case queuesim.SessionCreated:
				est.SessionCreated(e.OpenID, e.KfAccount, e.At)
			case queuesim.SessionClosed:
				est.SessionClosed(e.OpenID, e.KfAccount, e.At)
			}
		},
		Poll: func(s waitmodel.Snapshot) { est.Observe(s) },
		Join: func(id int) {
			res := est.Observe(sim.Snapshot())
			e, ok := est.Predict(waitmodel.Kefu, sim.Outcome(id).OpenID)
			if !ok {
				t.Fatalf("joining customer %d not estimated", id)
			}
			preds[id] = pred{e.Wait.Seconds(), e.WaitP90.Seconds(), float64(res.Count) * mean.Seconds() / servers}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sim.Run()
	var n, covered, sq, sqOracle float64
	for id, p := range preds {
		if id < 1000 {
			continue // warm-up: the band is still being calibrated
		}
		w := sim.Outcome(id).Wait.Seconds()
		n++
		sq += (w - p.kefu) * (w - p.kefu)
		sqOracle += (w - p.oracle) * (w - p.oracle)
		if w <= p.p90 {
			covered++
		}
	}
	t.Logf("error ratio %.3f, coverage %.3f over %.0f customers", sq/sqOracle, covered/n, n)
	if ratio := sq / sqOracle; ratio > 1.15 {
		t.Errorf("squared error %.2f× that of QL with the true rate, want ≤ 1.15×", ratio)
	}
	if c := covered / n; c < 0.85 || c > 0.95 {
		t.Errorf("P90 coverage %.3f, want within [0.85, 0.95]", c)
	}
}
