package bus_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
)

func TestPeriodicRunsAtStartOnKickAndStops(t *testing.T) {
	var runs, running, overlap atomic.Int32
	var sawCancel atomic.Bool
	p := bus.NewPeriodic(time.Hour, func(ctx context.Context) {
		if running.Add(1) > 1 {
			overlap.Add(1)
		}
		defer running.Add(-1)
		if runs.Add(1) == 3 {
			<-ctx.Done() // the third run is cut short by Stop
			sawCancel.Store(true)
		}
	})
	unstarted := bus.NewPeriodic(time.Hour, func(context.Context) {})
	if err := unstarted.Stop(context.Background()); err != nil {
		t.Fatalf("stopping a loop never started: %v", err)
	}

	p.Start(context.Background())
	waitUntil(t, func() bool { return runs.Load() == 1 })
	p.Kick()
	waitUntil(t, func() bool { return runs.Load() == 2 })
	p.Kick()
	waitUntil(t, func() bool { return runs.Load() == 3 })
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !sawCancel.Load() || overlap.Load() != 0 {
		t.Fatalf("cancelled=%v overlapping runs=%d", sawCancel.Load(), overlap.Load())
	}
	p.Kick()
	time.Sleep(20 * time.Millisecond)
	if runs.Load() != 3 {
		t.Fatalf("a stopped loop ran again: %d runs", runs.Load())
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
