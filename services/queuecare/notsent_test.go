package queuecare_test

import (
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/queuecare"
)

// refusedDials fails the first n custom/send requests as a refused
// connection does; every other request goes through.
type refusedDials struct {
	next http.RoundTripper
	n    atomic.Int32
}

func (r *refusedDials) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/message/custom/send") && r.n.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	return r.next.RoundTrip(req)
}

// A leave confirmation whose connection was refused never reached
// WeChat: it is not recorded as failed but tried again when the leave
// phrase is redelivered, and the customer gets it once — as the notifier
// does with its own messages.
func TestLeaveConfirmationAfterARefusedConnectionIsRetriedAndSentOnce(t *testing.T) {
	h := newHarness(t, queuecare.Config{})
	h.say("c1", "你好")
	h.queue("c1")
	h.estimate("c1", 1, 300)
	h.waitState("c1", "waiting", is(customers.StatusWaiting))

	// From here a replica whose client makes no retries of its own
	// handles the events: the refused dial reaches queue care.
	if err := h.svc.Stop(h.ctx); err != nil {
		t.Fatal(err)
	}
	dials := &refusedDials{next: &http.Transport{}}
	dials.n.Store(1)
	tokens, err := wechat.NewMemoryTokenSource(&wechat.StableTokenFetcher{BaseURL: h.wxURL, AppID: appID, Secret: appSecret}, wechat.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	client, err := wechat.NewClient(wechat.ClientConfig{BaseURL: h.wxURL, Tokens: tokens, MaxRetries: -1,
		HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: dials}})
	if err != nil {
		t.Fatal(err)
	}
	replica, err := queuecare.New(queuecare.Config{AppID: appID, Holder: "replica", Tick: time.Hour, Backoff: []time.Duration{50 * time.Millisecond}},
		queuecare.Deps{Bus: h.openBus(), API: client, Logger: h.log, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := replica.Start(h.ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replica.Stop(h.ctx) })

	h.say("c1", "不等了")
	h.waitState("c1", "left", is(customers.StatusLeft))
	natstest.Eventually(t, patience, func() bool { return len(h.sentTo("c1")) == 1 }, "the confirmation")
	h.drain()
	if dials.n.Load() >= 0 {
		t.Fatal("the refused connection never happened")
	}
	if n := len(h.sentTo("c1")); n != 1 {
		t.Fatalf("%d confirmations, want exactly 1", n)
	}
	if n := h.notifications(events.NotifyLeftQueue); len(n) != 1 {
		t.Fatalf("sent outcomes %+v, want 1", n)
	}
	if n := h.failedNotifications(events.NotifyLeftQueue); len(n) != 0 {
		t.Fatalf("failed outcomes %+v: a confirmation that never left kefu was given up", n)
	}
}
