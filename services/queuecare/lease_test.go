package queuecare_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/queuecare"
)

// frozenClose is the WeChat API of a replica that a test freezes just
// before its kfsession/close goes out, as a stopped process would be.
type frozenClose struct {
	queuecare.API
	freeze  atomic.Bool
	entered chan struct{}
	resume  chan struct{}
}

func (f *frozenClose) CloseSession(ctx context.Context, kfAccount, openid, text string) error {
	if f.freeze.Load() {
		f.entered <- struct{}{}
		<-f.resume
	}
	return f.API.CloseSession(ctx, kfAccount, openid, text)
}

// Two sweepers racing with a paused one: A marks a stale session and is
// frozen (its WeChat call and its lease renewals) past the lease's TTL; B
// takes over, finishes the close and tells the customer; when A resumes it
// writes nothing — the customer's record and the report stay B's — and its
// sweep ends with ErrLeaseLost.
func TestPausedSweeperCannotOverwriteItsSuccessor(t *testing.T) {
	h := newHarness(t, queuecare.Config{})
	h.agentTakes(1)
	h.say("c9", "你好")
	h.queue("c9")
	h.callbacks()
	h.waitState("c9", "served", is(customers.StatusServed))
	h.clock.Advance(31 * time.Minute)

	const ttl = 2 * time.Second
	replica := func(holder string, api queuecare.API) *queuecare.Service {
		// The loops renew the lease every Tick; a loop may also run the
		// sweep, which is the same as SweepOnce.
		svc, err := queuecare.New(queuecare.Config{AppID: appID, Holder: holder, Tick: ttl / 3, LeaseTTL: ttl,
			Backoff: []time.Duration{50 * time.Millisecond}},
			queuecare.Deps{Bus: h.openBus(), API: api, Logger: h.log, Now: h.clock.Now,
				FeedbackLink: func(openid string) string { return "https://kefu.example/feedback/" + openid }})
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.Start(h.ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			svc.Stop(ctx)
		})
		return svc
	}
	apiA := &frozenClose{API: h.client(h.wxURL), entered: make(chan struct{}), resume: make(chan struct{})}
	apiA.freeze.Store(true)
	a := replica("a", apiA)
	sweepA := make(chan error, 1)
	go func() { _, err := a.SweepOnce(h.ctx); sweepA <- err }()
	select {
	case <-apiA.entered: // A holds the lease and has marked c9; it freezes
	case err := <-sweepA:
		t.Fatalf("A's sweep ended before closing: %v", err)
	}
	marked := h.state("c9")
	if marked.Closing.Reason != customers.ClosedByStale || marked.Closing.Fence == 0 {
		t.Fatalf("c9 not marked by A: %+v", marked.Closing)
	}
	a.Lease().SetRenewHook(func() { <-apiA.resume })

	b := replica("b", h.client(h.wxURL))
	natstest.Eventually(t, patience, func() bool {
		r, err := b.SweepOnce(h.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r != nil
	}, "B takes the sweep over")
	h.callbacks()
	closed := h.waitState("c9", "closed", is(customers.StatusClosed))
	if b.Lease().Fence() <= marked.Closing.Fence {
		t.Fatalf("B's fence %d not above A's %d", b.Lease().Fence(), marked.Closing.Fence)
	}
	h.drain()
	byB := revision(t, h, "c9")
	reportByB := revision(t, h, "report.stale")

	close(apiA.resume)
	select {
	case err := <-sweepA:
		if !errors.Is(err, bus.ErrLeaseLost) {
			t.Errorf("A's sweep after resuming: %v, want ErrLeaseLost", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("A's sweep did not end")
	}
	if got := revision(t, h, "c9"); got != byB {
		t.Errorf("c9 rewritten by the stale sweeper (revision %d → %d): %+v", byB, got, h.state("c9"))
	}
	if got := revision(t, h, "report.stale"); got != reportByB {
		t.Errorf("stale report rewritten by the stale sweeper (revision %d → %d)", reportByB, got)
	}
	if st := h.state("c9"); st.Status != customers.StatusClosed || st.ClosedBy != closed.ClosedBy {
		t.Errorf("c9 after A resumed: %+v", st)
	}
	if sent := h.sentTo("c9"); len(sent) != 1 {
		t.Errorf("%d messages to c9, want 1", len(sent))
	}
	if n := h.notifications(events.NotifyStaleClosed); len(n) != 1 {
		t.Errorf("stale_closed outcomes %+v, want 1", n)
	}
	if got := h.wx.CallCount(wechattest.MethodSessionClose); got > 2 {
		t.Errorf("kfsession/close called %d times", got)
	}
}

func revision(t *testing.T, h *harness, key string) uint64 {
	t.Helper()
	kv, err := h.pub.OpenKeyValue(h.ctx, customers.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(h.ctx, key)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return e.Revision()
}
