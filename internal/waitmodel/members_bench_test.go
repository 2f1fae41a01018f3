package waitmodel_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/waitmodel"
)

// BenchmarkSnapshot measures one poll's work in the estimator — Members
// reconciling the snapshot and Observe estimating every customer — with
// 10,000 customers waiting beyond the 100 listed and known from their
// joins ("members-10000"), against what a poll cost before joins were
// known: the 100 listed customers and one tail estimate for the rest
// ("listed-100", same queue). The learned state is warm (duration shape
// ready, so the departure curves are built from session ages).
//
//	go test -run '^$' -bench BenchmarkSnapshot -benchtime 200x ./internal/waitmodel/
func BenchmarkSnapshot(b *testing.B) {
	for _, tc := range []struct {
		name    string
		members int
	}{{"listed-100", 0}, {"members-10000", 10_000}} {
		b.Run(tc.name, func(b *testing.B) {
			est, snap, members := warmQueue(b, 10_000, tc.members > 0)
			var buf []waitmodel.WaitingCase
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				snap.At = snap.At.Add(time.Duration(i+1) * time.Second)
				var s waitmodel.Snapshot
				s, buf = members.Complete(snap, buf)
				res := est.Observe(s)
				if len(res.Estimates) != 100+tc.members {
					b.Fatalf("%d estimates", len(res.Estimates))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/snapshot")
		})
	}
}

// warmQueue returns an estimator that has learned from 2,000 sessions of
// 50 agents × 2 slots, a snapshot of 100 listed customers out of 100 +
// unlisted, and the unlisted ones as members.
func warmQueue(b *testing.B, unlisted int, joined bool) (*waitmodel.Estimator, waitmodel.Snapshot, *waitmodel.Members) {
	b.Helper()
	est, err := waitmodel.New(waitmodel.Config{})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	at := t0
	var agents []waitmodel.Agent
	for i := range 50 {
		agents = append(agents, waitmodel.Agent{Account: fmt.Sprintf("kf%02d", i), Status: 1, AutoAccept: 2})
	}
	open := map[string][]string{}
	for i := range 2000 {
		kf := agents[i%50].Account
		if len(open[kf]) == 2 {
			est.SessionClosed(open[kf][0], kf, at)
			open[kf] = open[kf][1:]
		}
		id := fmt.Sprint("s", i)
		est.SessionCreated(id, kf, at)
		open[kf] = append(open[kf], id)
		at = at.Add(time.Duration(rng.ExpFloat64() * 3 * float64(time.Second)))
	}
	for i := range agents {
		for _, id := range open[agents[i].Account] {
			agents[i].Sessions = append(agents[i].Sessions, waitmodel.Session{OpenID: id, Since: at.Add(-time.Duration(rng.IntN(600)) * time.Second)})
		}
		agents[i].Accepted = len(agents[i].Sessions)
	}
	snap := waitmodel.Snapshot{At: at, Count: 100 + unlisted, Agents: agents}
	members := &waitmodel.Members{}
	for i := range 100 + unlisted {
		c := waitmodel.WaitingCase{OpenID: fmt.Sprintf("w%05d", i), Since: at.Add(-time.Hour + time.Duration(i)*100*time.Millisecond)}
		if i < 100 {
			snap.Waiting = append(snap.Waiting, c)
		} else if joined {
			members.Join(c.OpenID, "", c.Since)
		}
	}
	// Everyone listed or a member has been seen once, as in steady state.
	s, _ := members.Complete(snap, nil)
	est.Observe(s)
	return est, snap, members
}
