package queuecare_test

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/estimator"
	"github.com/kefu-io/kefu/services/queuecare"
)

// estimator starts the estimator on the same bus and fake, with queue
// care's read model telling who left, as the application wires it.
func (h *harness) estimator() *estimator.Service {
	h.t.Helper()
	s, err := estimator.New(estimator.Config{AppID: appID, PollInterval: time.Hour, Holder: "estimator-test"}, estimator.Deps{
		Bus: h.openBus(), API: h.client(h.wxURL), Logger: h.log, Now: h.clock.Now,
		Left: func(ctx context.Context, openid string) bool {
			st, err := h.svc.States().Get(ctx, openid)
			return err == nil && st.Status == customers.StatusLeft
		},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := s.Start(h.ctx); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { s.Stop(context.Background()) })
	return s
}

// Customers join through ingest's transfer. Whether getsession answers a
// queued customer with their queue time or with 0: a leave phrase takes
// the customer out, the agent who later accepts them gets the session
// closed, and nobody who stayed is reported abandoned — neither by queue
// care (reconciling with getsession) nor by the estimator (polling
// getwaitcase).
func TestLeaveWhicheverWayGetSessionAnswers(t *testing.T) {
	for _, zero := range []bool{false, true} {
		t.Run(fmt.Sprint("getsession createtime 0: ", zero), func(t *testing.T) {
			opts := []option{withTransfer()}
			if zero {
				opts = append(opts, withGetSessionZero())
			}
			h := newHarness(t, queuecare.Config{}, opts...)
			est := h.estimator()
			for _, c := range []string{"c1", "c2", "c3"} {
				h.say(c, "你好")
				h.clock.Advance(time.Second)
			}
			h.callbacks()
			if n := len(h.wx.Snapshot().Waiting); n != 3 {
				t.Fatalf("%d customers in WeChat's queue, want 3 (ingest transfers)", n)
			}
			for _, c := range []string{"c1", "c2", "c3"} {
				h.waitState(c, "waiting from the join", is(customers.StatusWaiting))
			}
			if err := est.PollOnce(h.ctx); err != nil {
				t.Fatal(err)
			}
			// Reconciliation asks getsession; an answer of 0 is no proof
			// that a waiting customer left.
			h.clock.Advance(10 * time.Minute)
			if n, err := h.svc.ReconcileOnce(h.ctx); err != nil || n == 0 {
				t.Fatalf("reconciliation: %d calls, %v", n, err)
			}
			for _, c := range []string{"c2", "c3"} {
				if st := h.state(c); st.Status != customers.StatusWaiting {
					t.Fatalf("%s after reconciliation: %+v", c, st)
				}
			}

			h.say("c1", "不等了")
			h.waitState("c1", "left", is(customers.StatusLeft))
			natstest.Eventually(t, patience, func() bool { return len(h.sentTo("c1")) == 1 }, "the confirmation")
			if n := len(h.wx.Snapshot().Waiting); n != 3 {
				t.Fatalf("the leave phrase changed WeChat's queue: %d waiting", n)
			}

			// An agent accepts all three: c1's session (the stale case) is
			// closed at once; c2 and c3 are served.
			h.clock.Advance(time.Minute)
			h.agentTakes(3)
			natstest.Eventually(t, patience, func() bool { return h.wx.CallCount(wechattest.MethodSessionClose) == 1 }, "c1's session closed")
			h.callbacks()
			h.drain()
			for _, c := range []string{"c2", "c3"} {
				h.waitState(c, "served", is(customers.StatusServed))
			}
			if st := h.state("c1"); st.Status != customers.StatusLeft || !st.DeferredClose.Closed {
				t.Fatalf("c1 after the agent accepted: %+v", st)
			}
			// The estimator polls on, past its abandonment grace.
			for range 3 {
				h.clock.Advance(time.Minute)
				if err := est.PollOnce(h.ctx); err != nil {
					t.Fatal(err)
				}
			}
			h.drain()
			ab := h.abandoned()
			if len(ab) != 1 || ab[0].OpenID != "c1" || ab[0].Reason != events.AbandonLeft {
				t.Fatalf("abandonments %+v, want c1 leaving only", ab)
			}
			for _, c := range []string{"c2", "c3"} {
				if st := h.state(c); st.Status != customers.StatusServed {
					t.Fatalf("%s: %+v", c, st)
				}
			}
		})
	}
}

// From the customer's message to their first estimate: the fake posts the
// callback, ingest transfers the message and publishes the join, the
// estimator estimates the customer from its last poll — within a second,
// without waiting for the next poll.
func TestFirstEstimateWithinASecondOfTheJoinCallback(t *testing.T) {
	h := newHarness(t, queuecare.Config{}, withTransfer())
	h.say("busy", "你好")
	h.agentTakes(1) // wang serves "busy"; everyone else waits
	nc, _ := natstest.ConnectURL(t, h.pub.ClientURL())
	snaps, err := nc.SubscribeSync(events.SubjectQueueSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	defer snaps.Unsubscribe()
	h.estimator() // polls once as it starts, then hourly
	if _, err := snaps.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("no first poll: %v", err)
	}
	sub, err := nc.SubscribeSync(events.SubjectWaitEstimated)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()
	before := h.wx.CallCounts()
	for i, c := range []string{"w1", "w2", "w3"} {
		sent := time.Now()
		h.say(c, "在吗")
		m, err := sub.NextMsg(time.Second)
		if err != nil {
			t.Fatalf("%s: no estimate within a second of the callback: %v", c, err)
		}
		ev, err := events.Decode[events.WaitEstimated](m.Data)
		if err != nil || ev.OpenID != c || ev.Position != i+1 || ev.WaitSeconds <= 0 {
			t.Fatalf("%s: estimate %+v (%v)", c, ev, err)
		}
		t.Logf("%s: estimate %v after the callback was sent", c, time.Since(sent).Round(time.Millisecond))
	}
	// Ingest, queue care and the estimator took the joins in without a
	// single WeChat API call.
	h.drain()
	if after := h.wx.CallCounts(); !maps.Equal(before, after) {
		t.Errorf("WeChat API calls on the way from the callback to the estimate: before %v, after %v", before, after)
	}
}
