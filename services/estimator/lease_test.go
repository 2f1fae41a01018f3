package estimator_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/services/estimator"
)

// pausable is the WeChat API of a replica that a test can freeze in the
// middle of a poll, as a stopped process would be.
type pausable struct {
	estimator.QueueAPI
	entered chan struct{} // receives when a paused call begins
	resume  chan struct{} // closed to let it go on
	paused  atomic.Bool
}

func (p *pausable) GetWaitCase(ctx context.Context) (wechat.WaitCases, error) {
	if p.paused.Load() {
		p.entered <- struct{}{}
		<-p.resume
	}
	return p.QueueAPI.GetWaitCase(ctx)
}

// Two replicas racing with a paused one: A holds the lease and is frozen
// mid-poll (its calls and its lease renewals) past the lease's TTL; B takes
// over and saves the model; when A resumes, its writes do not land — the
// state and the queue view stay B's — and A reports the lease lost.
func TestPausedLeaderCannotOverwriteItsSuccessor(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	const ttl = 2 * time.Second
	apiA := &pausable{QueueAPI: h.api, entered: make(chan struct{}), resume: make(chan struct{})}
	newService := func(holder string, api estimator.QueueAPI) *estimator.Service {
		s, err := estimator.New(estimator.Config{AppID: appID, PollInterval: time.Hour, LeaseTTL: ttl, Holder: holder}, estimator.Deps{Bus: h.bus, API: api})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err != nil { // the loop's first poll runs at once
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Stop(context.Background()) })
		return s
	}
	a := newService("a", apiA)
	state, err := h.bus.KeyValue(ctx, bus.BucketState)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 15*time.Second, func() bool { _, err := state.Get(ctx, "queue."+appID); return err == nil }, "A's first poll")
	aFence := a.Lease().Fence()

	freeze := make(chan struct{})
	a.Lease().SetRenewHook(func() {
		select {
		case <-freeze:
			<-apiA.resume
		default:
		}
	})
	apiA.paused.Store(true)
	close(freeze)
	pollA := make(chan error, 1)
	go func() { pollA <- a.PollOnce(ctx) }()
	<-apiA.entered // A is inside its poll, holding the lease, frozen

	b := newService("b", h.api)
	deadline := time.Now().Add(10 * ttl)
	for !b.Lease().Held() {
		if time.Now().After(deadline) {
			t.Fatal("B never took over from the frozen A")
		}
		if err := b.PollOnce(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b.Lease().Fence() <= aFence {
		t.Fatalf("B's fence %d not above A's %d", b.Lease().Fence(), aFence)
	}
	revs := func() map[string]uint64 {
		out := map[string]uint64{}
		for _, key := range []string{"estimator." + appID, "queue." + appID} {
			e, err := state.Get(ctx, key)
			if err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			out[key] = e.Revision()
		}
		return out
	}
	fences := h.bus.FencedKV(state, nil)
	byB := revs()

	close(apiA.resume)
	var errA error
	select {
	case errA = <-pollA:
	case <-time.After(30 * time.Second):
		t.Fatal("A's poll did not end")
	}
	if !errors.Is(errA, bus.ErrLeaseLost) {
		t.Fatalf("A's poll after resuming: %v, want ErrLeaseLost", errA)
	}
	if a.Lease().Held() {
		t.Fatal("A still believes it holds the lease")
	}
	after := revs()
	for key, rev := range byB {
		if after[key] != rev {
			t.Errorf("%s rewritten (revision %d → %d) by the stale leader", key, rev, after[key])
		}
		if fence, _, err := fences.Fence(ctx, key); err != nil || fence != b.Lease().Fence() {
			t.Errorf("%s carries fence %d (%v), want B's %d", key, fence, err, b.Lease().Fence())
		}
	}
}
