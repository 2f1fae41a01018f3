package queuecare_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/internal/httpapi/httpapitest"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/queuecare"
)

// A waiting customer who says "不等了" is out of the queue: recorded as
// left (no more wait messages), one abandonment event, one confirmation —
// whatever they send next — and when an agent later accepts the stale case,
// kefu closes it at once and the agent's slot goes to the next customer.
func TestLeavePhraseTakesAWaitingCustomerOutOfTheQueue(t *testing.T) {
	h := newHarness(t, queuecare.Config{})

	// c1 and c2 write and join the queue; no agent is online.
	h.say("c1", "你好")
	h.queue("c1")
	queuedAt := h.clock.Now()
	h.clock.Advance(time.Second)
	h.say("c2", "在吗")
	h.queue("c2")
	h.estimate("c1", 1, 300)
	h.waitState("c1", "waiting at position 1", func(st customers.State) bool {
		return st.Status == customers.StatusWaiting && st.Position == 1 && st.WaitSeconds == 300
	})

	h.clock.Advance(3 * time.Minute)
	leftAt := h.clock.Now()
	h.say("c1", " 不等了！")
	st := h.waitState("c1", "left", is(customers.StatusLeft))
	natstest.Eventually(t, patience, func() bool { return len(h.sentTo("c1")) == 1 }, "the confirmation")

	// A second phrase, and the estimator still listing the stale case
	// (WeChat cannot remove it), change nothing.
	h.clock.Advance(10 * time.Second)
	h.say("c1", "取消排队")
	h.estimate("c1", 1, 240)
	h.drain()

	st = h.state("c1")
	if st.Status != customers.StatusLeft || !st.SuppressWaitNotice() || !st.QueuedAt.Equal(queuedAt.Truncate(time.Second)) {
		t.Fatalf("state after leaving: %+v", st)
	}
	if sent := h.sentTo("c1"); len(sent) != 1 || sent[0].Content != queuecare.DefaultLeaveConfirmation {
		t.Fatalf("messages to c1: %+v; want exactly the confirmation", sent)
	}
	ab := h.abandoned()
	if len(ab) != 1 || ab[0].OpenID != "c1" || ab[0].Reason != events.AbandonLeft ||
		ab[0].WaitedSeconds != int64(leftAt.Sub(queuedAt)/time.Second) || !ab[0].OccurredAt.Equal(leftAt) {
		t.Fatalf("abandonment events %+v", ab)
	}
	if ids := h.stream(events.StreamKF, events.SubjectSessionAbandoned); ids[0].id != fmt.Sprintf("kf-left-c1-%d", queuedAt.Unix()) {
		t.Errorf("abandonment id %q", ids[0].id)
	}
	if n := h.notifications(events.NotifyLeftQueue); len(n) != 1 || n[0].OpenID != "c1" || n[0].Outcome != events.OutcomeSent {
		t.Errorf("left_queue outcomes %+v", n)
	}
	if got := h.wx.CallCount(wechattest.MethodSessionClose); got != 0 {
		t.Fatalf("kfsession/close called %d times for a waiting case", got)
	}

	// An agent comes online with one slot: WeChat gives it the stale case
	// first; kefu closes it, and the slot goes to c2.
	h.clock.Advance(time.Minute)
	h.agentTakes(1)
	natstest.Eventually(t, patience, func() bool {
		snap := h.wx.Snapshot()
		return len(snap.Sessions) == 1 && snap.Sessions[0].OpenID == "c2"
	}, "c2 served")
	h.callbacks()
	h.drain()
	if got := h.wx.CallCount(wechattest.MethodSessionClose); got != 1 {
		t.Errorf("kfsession/close called %d times, want 1 (the deferred close)", got)
	}
	if st := h.state("c1"); st.Status != customers.StatusLeft || !st.DeferredClose.Closed || st.DeferredClose.KfAccount != wang {
		t.Errorf("c1 after the deferred close: %+v", st)
	}
	if st := h.state("c2"); st.Status != customers.StatusServed || st.KfAccount != wang {
		t.Errorf("c2: %+v", st)
	}
	if len(h.sentTo("c1")) != 1 || len(h.sentTo("c2")) != 0 {
		t.Errorf("messages: c1 %d, c2 %d", len(h.sentTo("c1")), len(h.sentTo("c2")))
	}
}

// A leave phrase from a customer who is not waiting does nothing harmful:
// no close, no abandonment, nothing sent; a served customer stays served.
func TestLeavePhraseFromACustomerWhoDoesNotWaitDoesNothing(t *testing.T) {
	h := newHarness(t, queuecare.Config{})

	h.agentTakes(1)
	h.say("c4", "你好")
	h.queue("c4")
	h.callbacks()
	h.waitState("c4", "served", is(customers.StatusServed))

	h.clock.Advance(time.Minute)
	h.say("c3", "不等了") // never queued
	h.say("c4", "退出排队")
	natstest.Eventually(t, patience, func() bool {
		return h.metric("kefu_queuecare_leave_requests_total", map[string]string{"outcome": "not_waiting"}) == 1 &&
			h.metric("kefu_queuecare_leave_requests_total", map[string]string{"outcome": "served"}) == 1
	}, "both leave phrases handled")
	h.drain()

	if got := h.wx.CallCount(wechattest.MethodSessionClose); got != 0 {
		t.Errorf("kfsession/close called %d times", got)
	}
	if sent := h.wx.Sent(); len(sent) != 0 {
		t.Errorf("messages sent: %+v", sent)
	}
	if ab := h.abandoned(); len(ab) != 0 {
		t.Errorf("abandonment events: %+v", ab)
	}
	if st := h.state("c4"); st.Status != customers.StatusServed || st.KfAccount != wang {
		t.Errorf("c4: %+v", st)
	}
	if snap := h.wx.Snapshot(); len(snap.Sessions) != 1 || snap.Sessions[0].OpenID != "c4" {
		t.Errorf("sessions in WeChat: %+v", snap.Sessions)
	}
	if st := h.state("c3"); st.Status != customers.StatusNone {
		t.Errorf("c3: %+v", st)
	}
}

// A session idle past the timeout is closed once, with the message and the
// feedback link; a session with recent activity is not.
func TestStaleSessionIsClosedOnceAndABusyOneIsNot(t *testing.T) {
	h := newHarness(t, queuecare.Config{})
	h.agentTakes(2)
	for _, c := range []string{"c5", "c6"} {
		h.say(c, "你好")
		h.queue(c)
	}
	h.callbacks()
	h.waitState("c5", "served", is(customers.StatusServed))
	h.waitState("c6", "served", is(customers.StatusServed))

	h.clock.Advance(20 * time.Minute)
	h.say("c6", "还在吗")
	h.waitState("c6", "active", func(st customers.State) bool { return st.LastActivity.Equal(h.clock.Now()) })
	h.clock.Advance(11 * time.Minute) // c5 idle 31 minutes, c6 11

	rep, err := h.svc.SweepOnce(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Sessions) != 1 || rep.Sessions[0].OpenID != "c5" || rep.Sessions[0].Action != queuecare.ActionClosed ||
		rep.Sessions[0].IdleSeconds != 31*60 {
		t.Fatalf("sweep report %+v", rep.Sessions)
	}
	// A second sweep before kf_close_session is read, and one after.
	if rep, err := h.svc.SweepOnce(h.ctx); err != nil || len(rep.Sessions) > 1 ||
		len(rep.Sessions) == 1 && rep.Sessions[0].Action != queuecare.ActionPending {
		t.Fatalf("second sweep: %v %+v", err, rep)
	}
	h.callbacks()
	st := h.waitState("c5", "closed", is(customers.StatusClosed))
	if rep, err := h.svc.SweepOnce(h.ctx); err != nil || len(rep.Sessions) != 0 {
		t.Fatalf("third sweep: %v %+v", err, rep)
	}
	h.drain()

	if st.ClosedBy != customers.ClosedByStale || st.KfAccount != wang || !st.SuppressSessionNotice() {
		t.Errorf("c5: %+v", st)
	}
	if got := h.wx.CallCount(wechattest.MethodSessionClose); got != 1 {
		t.Errorf("kfsession/close called %d times, want 1", got)
	}
	sent := h.sentTo("c5")
	if len(sent) != 1 || !strings.Contains(sent[0].Content, "30 分钟") ||
		!strings.Contains(sent[0].Content, "https://kefu.example/feedback/c5") {
		t.Errorf("messages to c5: %+v", sent)
	}
	if n := h.notifications(events.NotifyStaleClosed); len(n) != 1 || n[0].OpenID != "c5" {
		t.Errorf("stale_closed outcomes %+v", n)
	}
	if st := h.state("c6"); st.Status != customers.StatusServed || st.Closing.Reason != "" {
		t.Errorf("the busy session was touched: %+v", st)
	}
	if snap := h.wx.Snapshot(); len(snap.Sessions) != 1 || snap.Sessions[0].OpenID != "c6" || len(h.sentTo("c6")) != 0 {
		t.Errorf("c6 in WeChat: %+v; messages %d", snap.Sessions, len(h.sentTo("c6")))
	}
}

// In dry run the sweep only reports: nothing is closed or sent, and the
// list is served at GET /api/kf/stale.
func TestDryRunOnlyReportsStaleSessions(t *testing.T) {
	h := newHarness(t, queuecare.Config{StaleDryRun: true, StaleAfter: 45 * time.Minute})
	h.agentTakes(1)
	h.say("c7", "你好")
	h.queue("c7")
	h.callbacks()
	h.waitState("c7", "served", is(customers.StatusServed))

	if code := h.get("/api/kf/stale", nil); code != http.StatusServiceUnavailable {
		t.Errorf("before any sweep: %d", code)
	}
	h.clock.Advance(44 * time.Minute)
	if rep, err := h.svc.SweepOnce(h.ctx); err != nil || len(rep.Sessions) != 0 {
		t.Fatalf("sweep before the timeout: %v %+v", err, rep)
	}
	h.clock.Advance(2 * time.Minute)
	if _, err := h.svc.SweepOnce(h.ctx); err != nil {
		t.Fatal(err)
	}
	var rep queuecare.StaleReport
	if code := h.get("/api/kf/stale", &rep); code != http.StatusOK {
		t.Fatalf("GET /api/kf/stale: %d", code)
	}
	if !rep.DryRun || rep.StaleAfterSeconds != 45*60 || len(rep.Sessions) != 1 || rep.Sessions[0].OpenID != "c7" ||
		rep.Sessions[0].Action != queuecare.ActionWouldClose || rep.Sessions[0].KfAccount != wang {
		t.Fatalf("report %+v", rep)
	}
	if got := h.metric("kefu_queuecare_stale_sessions", nil); got != 1 {
		t.Errorf("kefu_queuecare_stale_sessions %v", got)
	}
	if got := h.wx.CallCount(wechattest.MethodSessionClose); got != 0 || len(h.wx.Sent()) != 0 {
		t.Errorf("dry run closed %d sessions and sent %d messages", got, len(h.wx.Sent()))
	}
	if st := h.state("c7"); st.Status != customers.StatusServed {
		t.Errorf("c7: %+v", st)
	}
}

// A lost kf_create_session leaves the read model wrong until
// reconciliation asks getsession; a lost kf_close_session likewise.
func TestReconciliationRepairsLostSessionEvents(t *testing.T) {
	h := newHarness(t, queuecare.Config{})
	h.say("c8", "你好")
	h.queue("c8")
	h.waitState("c8", "known", func(st customers.State) bool { return !st.LastActivity.IsZero() })

	h.clock.Advance(time.Minute)
	sessionAt := h.clock.Now().Truncate(time.Second)
	h.wx.DropNextCallback("kf_create_session")
	h.agentTakes(1)
	h.drain()
	if st := h.state("c8"); st.Status == customers.StatusServed {
		t.Fatal("the create event was not lost; the test proves nothing")
	}

	h.clock.Advance(10 * time.Second)
	before := h.wx.CallCount(wechattest.MethodSessionGet)
	n, err := h.svc.ReconcileOnce(h.ctx)
	if err != nil || n != 1 {
		t.Fatalf("reconcile: %d calls, %v", n, err)
	}
	st := h.state("c8")
	if st.Status != customers.StatusServed || st.KfAccount != wang || !st.Since.Equal(sessionAt) {
		t.Fatalf("after reconciliation: %+v", st)
	}
	if got := h.wx.CallCount(wechattest.MethodSessionGet) - before; got != 1 {
		t.Errorf("getsession called %d times", got)
	}
	if n, _ := h.svc.ReconcileOnce(h.ctx); n != 0 {
		t.Errorf("checked again within ReconcileEvery: %d calls", n)
	}

	var got customers.State
	if code := h.get("/api/kf/customers/c8", &got); code != http.StatusOK || got.Status != customers.StatusServed || got.KfAccount != wang {
		t.Errorf("GET customer: %d %+v", code, got)
	}

	h.wx.DropNextCallback("kf_close_session")
	if err := h.wx.CloseSession("c8"); err != nil {
		t.Fatal(err)
	}
	h.callbacks()
	h.clock.Advance(6 * time.Minute)
	if n, err := h.svc.ReconcileOnce(h.ctx); err != nil || n != 1 {
		t.Fatalf("second reconcile: %d calls, %v", n, err)
	}
	if st := h.state("c8"); st.Status != customers.StatusClosed || st.ClosedBy != customers.ClosedByUnknown {
		t.Errorf("after the lost close: %+v", st)
	}
	if got := h.metric("kefu_queuecare_reconcile_corrections_total", nil); got != 2 {
		t.Errorf("corrections counted %v, want 2", got)
	}
}

func TestCustomerEndpoint(t *testing.T) {
	h := newHarness(t, queuecare.Config{})
	h.say("c9", "你好")
	h.waitState("c9", "known", func(st customers.State) bool { return !st.LastActivity.IsZero() })
	tests := []struct {
		name, path string
		want       int
	}{
		{"a known customer is 200", "/api/kf/customers/c9", http.StatusOK},
		{"an unknown customer is 404", "/api/kf/customers/cNobody", http.StatusNotFound},
		{"an openid with a dot is 400", "/api/kf/customers/c9.x", http.StatusBadRequest},
		{"an openid with a KV wildcard is 400", "/api/kf/customers/c%2A", http.StatusBadRequest},
		{"an over-long openid is 400", "/api/kf/customers/" + strings.Repeat("a", 129), http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code := h.get(tt.path, nil); code != tt.want {
				t.Errorf("GET %s: %d, want %d", tt.path, code, tt.want)
			}
		})
	}
	resp, err := http.Post(h.web.URL+"/api/kf/customers/c9", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	} else {
		httpapitest.CheckProblem(t, resp.StatusCode, resp.Header, body)
	}
}

// Reconciling 1,000 active customers with the default settings costs at
// most ReconcileCallsPerMinute (60) getsession calls a minute, counted by
// the fake WeChat, and reaches new customers at that pace.
func TestReconciliationStaysWithinItsCallBudget(t *testing.T) {
	const active = 1000
	// The default Tick: the budget's burst is one tick's share.
	h := newHarness(t, queuecare.Config{Tick: 10 * time.Second})
	for i := range active {
		openid := fmt.Sprintf("o%04d", i)
		h.queue(openid)
		now := h.clock.Now()
		ev := events.MessageReceived{Meta: events.Meta{AppID: appID, OccurredAt: now, ReceivedAt: now},
			WeChatSource: events.WeChatSource{OpenID: openid, CreateTime: now.Unix()}, MsgType: "text", MsgID: fmt.Sprint(i), Content: "你好"}
		if _, err := h.pub.Publish(h.ctx, ev, bus.Envelope{ID: events.WeChatMessageID(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, patience, func() bool {
		return h.metric("kefu_queuecare_events_total", map[string]string{"kind": "message", "outcome": "applied"}) == active
	}, "every customer in the read model")

	perMinute := make([]int, 2)
	for minute := range perMinute {
		before := h.wx.CallCount(wechattest.MethodSessionGet)
		for range 6 { // the loop's default Tick is 10 s
			h.clock.Advance(10 * time.Second)
			if _, err := h.svc.ReconcileOnce(h.ctx); err != nil {
				t.Fatal(err)
			}
		}
		perMinute[minute] = h.wx.CallCount(wechattest.MethodSessionGet) - before
	}
	t.Logf("getsession calls per minute reconciling %d active customers: %v (budget 60)", active, perMinute)
	for i, n := range perMinute {
		if n > 60 || n < 50 {
			t.Errorf("minute %d: %d calls; want the budget of 60 used but not exceeded", i+1, n)
		}
	}
	waiting := 0
	for i := range active {
		if h.state(fmt.Sprintf("o%04d", i)).Status == customers.StatusWaiting {
			waiting++
		}
	}
	if total := perMinute[0] + perMinute[1]; waiting != total {
		t.Errorf("%d customers found waiting after %d checks", waiting, total)
	}
}
