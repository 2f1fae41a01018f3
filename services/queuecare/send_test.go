package queuecare_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/queuecare"
)

// staleServed brings c5 into a session that has been idle 31 minutes.
func staleServed(h *harness) {
	h.t.Helper()
	h.agentTakes(1)
	h.say("c5", "你好")
	h.queue("c5")
	h.callbacks()
	h.waitState("c5", "served", is(customers.StatusServed))
	h.clock.Advance(31 * time.Minute)
}

func (h *harness) failedNotifications(kind string) []events.Notification {
	h.t.Helper()
	var out []events.Notification
	for _, m := range h.stream(events.StreamNotify, events.SubjectNotifyFailed) {
		n, err := events.Decode[events.Notification](m.data)
		if err != nil {
			h.t.Fatal(err)
		}
		if n.Kind == kind {
			out = append(out, n)
		}
	}
	return out
}

// A confirmation that certainly did not reach WeChat (the gateway's 429,
// beyond the client's own retries) is not given up: the leave phrase is
// redelivered and the customer gets the confirmation once.
func TestLeaveConfirmationNeverSentIsRetriedAndSentOnce(t *testing.T) {
	h := newHarness(t, queuecare.Config{})
	h.say("c1", "你好")
	h.queue("c1")
	h.estimate("c1", 1, 300)
	h.waitState("c1", "waiting", is(customers.StatusWaiting))
	calls := h.wx.CallCount(wechattest.MethodCustomSend)
	h.wx.InjectFault(wechattest.MethodCustomSend, wechattest.FaultTooManyRequests, 2*(wechat.DefaultMaxRetries+1))
	h.say("c1", "不等了")
	h.waitState("c1", "left", is(customers.StatusLeft))
	natstest.Eventually(t, patience, func() bool { return len(h.sentTo("c1")) == 1 }, "the confirmation")
	h.drain()
	if got := h.wx.CallCount(wechattest.MethodCustomSend) - calls; got != 2*(wechat.DefaultMaxRetries+1)+1 {
		t.Fatalf("custom/send called %d times, want every 429 and one success", got)
	}
	if n := len(h.sentTo("c1")); n != 1 {
		t.Fatalf("%d confirmations, want exactly 1", n)
	}
	if n := h.notifications(events.NotifyLeftQueue); len(n) != 1 {
		t.Fatalf("sent outcomes %+v, want 1", n)
	}
	if n := h.failedNotifications(events.NotifyLeftQueue); len(n) != 0 {
		t.Fatalf("failed outcomes %+v, want none", n)
	}
}

// A goodbye refused by the gateway with 429 is repeated by the client at
// once: nothing reached WeChat.
func TestStaleGoodbyeAfterA429IsSentOnce(t *testing.T) {
	h := newHarness(t, queuecare.Config{})
	staleServed(h)
	h.wx.InjectFault(wechattest.MethodCustomSend, wechattest.FaultTooManyRequests, 1)
	rep, err := h.svc.SweepOnce(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Sessions) != 1 || rep.Sessions[0].Action != queuecare.ActionClosed || rep.Sessions[0].Error != "" {
		t.Fatalf("sweep report %+v", rep.Sessions)
	}
	h.callbacks()
	h.waitState("c5", "closed", is(customers.StatusClosed))
	h.drain()
	if n := len(h.sentTo("c5")); n != 1 {
		t.Fatalf("%d goodbyes, want exactly 1", n)
	}
	if n := h.failedNotifications(events.NotifyStaleClosed); len(n) != 0 {
		t.Fatalf("failed outcomes %+v, want none", n)
	}
}

// A goodbye whose answer timed out after the request was written may have
// arrived: it is not repeated, and kefu.notify.failed says why.
func TestStaleGoodbyeTimedOutAfterSendingIsNotRepeated(t *testing.T) {
	h := newHarness(t, queuecare.Config{SendTimeout: 500 * time.Millisecond})
	staleServed(h)
	h.wx.InjectFault(wechattest.MethodCustomSend, wechattest.FaultHangAfterHandling, 1)
	for range 2 {
		if _, err := h.svc.SweepOnce(h.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(h.sentTo("c5")); n != 1 {
		t.Fatalf("%d goodbyes, want 1 (the one whose answer was lost)", n)
	}
	failed := h.failedNotifications(events.NotifyStaleClosed)
	if len(failed) != 1 || !strings.HasPrefix(failed[0].ErrMsg, "unknown outcome: "+wechat.UnknownTimeout+": ") {
		t.Fatalf("failed outcomes %+v, want one with unknown outcome: %s", failed, wechat.UnknownTimeout)
	}
}
