package queuecare_test

import (
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/services/queuecare"
)

// servedPair puts c1 and c2 in sessions with wang at the same moment.
func servedPair(h *harness) {
	h.t.Helper()
	h.agentTakes(2)
	for _, c := range []string{"c1", "c2"} {
		h.say(c, "你好")
		h.queue(c)
	}
	h.callbacks()
	h.waitState("c1", "served", is(customers.StatusServed))
	h.waitState("c2", "served", is(customers.StatusServed))
}

func actions(rep *queuecare.StaleReport) map[string]string {
	out := map[string]string{}
	for _, s := range rep.Sessions {
		out[s.OpenID] = s.Action
	}
	return out
}

// An agent carrying a conversation on their own — typing in the 多客服
// client, which WeChat does not push to kefu — keeps it open; the same
// session is closed once the agent too has been quiet for StaleAfter.
func TestAgentOnlyConversationIsNotSwept(t *testing.T) {
	h := newHarness(t, queuecare.Config{})
	servedPair(h)

	h.clock.Advance(10 * time.Minute)
	if err := h.wx.AgentMessage("c1", "您的订单正在处理"); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(10 * time.Minute)
	if err := h.wx.AgentMessage("c1", "物流单号稍后发您"); err != nil {
		t.Fatal(err)
	}
	agentWrote := h.clock.Now()
	h.clock.Advance(11 * time.Minute) // no customer message for 31 minutes on either session

	rep, err := h.svc.SweepOnce(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep); len(got) != 2 || got["c1"] != queuecare.ActionAgentActive || got["c2"] != queuecare.ActionClosed {
		t.Fatalf("sweep: %+v, want c1 left open for its agent and the silent c2 closed", rep.Sessions)
	}
	if got := h.wx.CallCount(wechattest.MethodSessionClose); got != 1 {
		t.Errorf("kfsession/close called %d times, want 1 (c2 only)", got)
	}
	if got := h.wx.CallCount(wechattest.MethodMsgRecord); got != 1 {
		t.Errorf("getmsglist called %d times, want 1 for the whole sweep", got)
	}
	if st := h.state("c1"); st.Status != customers.StatusServed || !st.LastActivity.Equal(agentWrote.Truncate(time.Second)) || st.Closing.Reason != "" {
		t.Errorf("c1 after the sweep: %+v; want served, last activity at the agent's message %v", st, agentWrote)
	}
	h.callbacks()
	if snap := h.wx.Snapshot(); len(snap.Sessions) != 1 || snap.Sessions[0].OpenID != "c1" || len(h.sentTo("c1")) != 0 {
		t.Errorf("WeChat sessions %+v, messages to c1 %d; want c1 still served and told nothing", snap.Sessions, len(h.sentTo("c1")))
	}

	// A sweep with nothing newly stale reads no record (c2 may still
	// show as pending until kf_close_session is read).
	if rep, err := h.svc.SweepOnce(h.ctx); err != nil || actions(rep)["c1"] != "" || len(rep.Sessions) > 1 {
		t.Fatalf("sweep right after: %v %+v", err, rep)
	}
	h.callbacks()
	if got := h.wx.CallCount(wechattest.MethodMsgRecord); got != 1 {
		t.Errorf("getmsglist called %d times, want still 1: only sessions about to be swept are looked up", got)
	}

	// The agent stops writing: 30 minutes after their last message the
	// session is stale again, and closed.
	h.clock.Advance(30*time.Minute - 11*time.Minute)
	rep, err = h.svc.SweepOnce(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep); got["c1"] != queuecare.ActionClosed {
		t.Fatalf("sweep after the agent went quiet: %+v, want c1 closed", rep.Sessions)
	}
}

// A message record that cannot be read closes nothing: the sessions wait
// for the next sweep, which closes them once the record answers.
func TestUnreadableMessageRecordClosesNothing(t *testing.T) {
	h := newHarness(t, queuecare.Config{})
	servedPair(h)
	h.clock.Advance(31 * time.Minute)
	h.wx.InjectErrors(wechattest.MethodMsgRecord, 48001, 1) // api unauthorized

	rep, err := h.svc.SweepOnce(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep); got["c1"] != queuecare.ActionRetry || got["c2"] != queuecare.ActionRetry || rep.Sessions[0].Error == "" {
		t.Fatalf("sweep with the record unreadable: %+v, want both held with the error", rep.Sessions)
	}
	if got := h.wx.CallCount(wechattest.MethodSessionClose); got != 0 {
		t.Fatalf("kfsession/close called %d times, want 0", got)
	}
	rep, err = h.svc.SweepOnce(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep); got["c1"] != queuecare.ActionClosed || got["c2"] != queuecare.ActionClosed {
		t.Fatalf("sweep once the record answers: %+v, want both closed", rep.Sessions)
	}
}

// The record is read at most 10 pages a minute, however often sweeps come.
func TestMessageRecordReadsAreRateLimited(t *testing.T) {
	h := newHarness(t, queuecare.Config{StaleDryRun: true})
	servedPair(h)
	h.clock.Advance(31 * time.Minute)
	for i := range 10 {
		rep, err := h.svc.SweepOnce(h.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := actions(rep); got["c1"] != queuecare.ActionWouldClose {
			t.Fatalf("dry-run sweep %d: %+v", i, rep.Sessions)
		}
	}
	rep, err := h.svc.SweepOnce(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep); got["c1"] != queuecare.ActionRetry || got["c2"] != queuecare.ActionRetry {
		t.Fatalf("the 11th sweep in a minute: %+v, want both held (budget spent)", rep.Sessions)
	}
	if got := h.wx.CallCount(wechattest.MethodMsgRecord); got != 10 {
		t.Errorf("getmsglist called %d times in a minute, want 10", got)
	}
	h.clock.Advance(6 * time.Second) // one page's worth of budget back
	rep, err = h.svc.SweepOnce(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep); got["c1"] != queuecare.ActionWouldClose {
		t.Fatalf("sweep after the budget refilled: %+v", rep.Sessions)
	}
}
