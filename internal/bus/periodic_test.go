package bus_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
)

// Periodic only waits on timers and channels, so the test runs in a
// synctest bubble: time.Sleep advances the bubble's clock at once, and
// synctest.Wait returns when the loop has done all it would do, which is
// what makes "a stopped loop does not run again" a check that can fail.
func TestPeriodicRunsAtStartOnKickAndStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var runs, running, overlap atomic.Int32
		var sawCancel atomic.Bool
		p := bus.NewPeriodic(time.Hour, func(ctx context.Context) {
			if running.Add(1) > 1 {
				overlap.Add(1)
			}
			defer running.Add(-1)
			if runs.Add(1) == 4 {
				<-ctx.Done() // the fourth run is cut short by Stop
				sawCancel.Store(true)
			}
		})
		unstarted := bus.NewPeriodic(time.Hour, func(context.Context) {})
		if err := unstarted.Stop(context.Background()); err != nil {
			t.Fatalf("stopping a loop never started: %v", err)
		}
		wantRuns := func(when string, want int32) {
			t.Helper()
			synctest.Wait()
			if n := runs.Load(); n != want {
				t.Fatalf("%s: %d runs, want %d", when, n, want)
			}
		}

		p.Start(context.Background())
		wantRuns("at start", 1)
		time.Sleep(time.Hour - time.Second)
		wantRuns("before the interval", 1)
		time.Sleep(time.Second)
		wantRuns("after the interval", 2)
		p.Kick()
		wantRuns("after a kick", 3)
		p.Kick()
		wantRuns("after a second kick", 4)
		if err := p.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !sawCancel.Load() || overlap.Load() != 0 {
			t.Fatalf("cancelled=%v overlapping runs=%d", sawCancel.Load(), overlap.Load())
		}
		p.Kick()
		time.Sleep(2 * time.Hour)
		wantRuns("a stopped loop, kicked and past two intervals", 4)
	})
}
