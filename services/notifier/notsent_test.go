package notifier_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/notifier"
)

// flakyKV fails the next reads of the kefu_token bucket, as during a NATS
// blip.
type flakyKV struct {
	jetstream.KeyValue
	fail atomic.Int32
}

var errBlip = errors.New("nats: timeout")

func (k *flakyKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if k.fail.Add(-1) >= 0 {
		return nil, errBlip
	}
	return k.KeyValue.Get(ctx, key)
}

// notSentClient is a client that makes no retry of its own, so that each
// fault reaches the notifier, with its metrics in reg and its token in the
// kefu_token bucket behind kv.
func (h *harness) notSentClient(reg prometheus.Registerer, kv jetstream.KeyValue, rateLimit float64) *wechat.Client {
	h.t.Helper()
	hc := &http.Client{Timeout: 400 * time.Millisecond, Transport: h.transport}
	tokens, err := wechat.NewKVTokenSource(kv, &wechat.StableTokenFetcher{BaseURL: h.wxURL, AppID: appID, Secret: appSecret, HTTPClient: hc},
		wechat.TokenOptions{AppID: appID, LocalCacheTTL: time.Nanosecond})
	if err != nil {
		h.t.Fatal(err)
	}
	c, err := wechat.NewClient(wechat.ClientConfig{BaseURL: h.wxURL, Tokens: tokens, HTTPClient: hc, MaxRetries: -1,
		RateLimit: rateLimit, RateBurst: 1, Metrics: wechat.NewMetrics(reg)})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// startNotSent runs a notifier with notSentClient; it returns the process
// and the bucket wrapper whose reads a test can break.
func (h *harness) startNotSent(rateLimit float64) (*process, *flakyKV) {
	h.t.Helper()
	_, js := natstest.Connect(h.t, h.nats)
	kv, err := js.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: bus.BucketToken})
	if err != nil {
		h.t.Fatal(err)
	}
	flaky := &flakyKV{KeyValue: kv}
	var p *process
	reg := prometheus.NewRegistry()
	cfg := testConfig("p1")
	cfg.MaxDeliver = 2 // certainly-not-sent errors are retried beyond it
	p = h.startWithRegistry(cfg, h.notSentClient(reg, flaky, rateLimit), reg)
	return p, flaky
}

// Every error that certainly left nothing at WeChat is retried, past
// MaxDeliver, and the customer gets the message exactly once.
func TestEveryNotSentErrorIsRetriedAndDeliveredOnce(t *testing.T) {
	cases := []struct {
		name   string
		rate   float64 // client rate limit (0: none)
		inject func(h *harness, kv *flakyKV)
	}{
		{"dial refused", 0, func(h *harness, _ *flakyKV) { h.netFaults.FailDials(3) }},
		{"connect timeout", 0, func(h *harness, _ *flakyKV) { h.netFaults.StallDials(2) }},
		{"TLS handshake failure", 0, func(h *harness, _ *flakyKV) { h.netFaults.FailHandshakes(3) }},
		{"HTTP 429 from the gateway", 0, func(h *harness, _ *flakyKV) {
			h.wx.InjectFault(wechattest.MethodCustomSend, wechattest.FaultTooManyRequests, 3)
		}},
		{"-1 system busy", 0, func(h *harness, _ *flakyKV) { h.wx.InjectErrors(wechattest.MethodCustomSend, -1, 3) }},
		{"45011 frequency limit", 0, func(h *harness, _ *flakyKV) { h.wx.InjectErrors(wechattest.MethodCustomSend, 45011, 3) }},
		{"token fetch timeout", 0, func(h *harness, _ *flakyKV) {
			h.wx.ExpireTokens()
			h.wx.InjectFault(wechattest.MethodStableToken, wechattest.FaultHangAfterHandling, 2)
		}},
		{"kefu_token bucket read error", 0, func(_ *harness, kv *flakyKV) { kv.fail.Store(3) }},
		// One send per 2 s: the warm-up message takes the slot, and the
		// limiter's wait for the next one outlasts SendTimeout (1.5 s) at
		// first.
		{"rate limit wait past the deadline", 0.5, func(*harness, *flakyKV) {}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{tls: true})
			p, kv := h.startNotSent(tc.rate)
			h.customer("o-warm", "o-1")
			ev, id := h.created("o-warm", wang)
			h.publish(ev, id)
			natstest.Eventually(t, patience, func() bool { return len(h.sent()["o-warm"]) == 1 }, "the warm-up message")
			h.transport.CloseIdleConnections() // the next send dials

			tc.inject(h, kv)
			ev, id = h.created("o-1", wang)
			h.publish(ev, id)
			natstest.Eventually(t, patience, func() bool { return len(h.outcomesByCause()[id]) == 1 }, "the outcome")
			natstest.Eventually(t, patience, func() bool { return h.drained(events.StreamWeChat, notifier.DurableSessions) }, "the consumer to drain")
			if o := h.outcomesByCause()[id][0]; o.Outcome != events.OutcomeSent {
				t.Fatalf("outcome %s %q, want sent", o.Outcome, o.ErrMsg)
			}
			if got := len(h.sent()["o-1"]); got != 1 {
				t.Fatalf("the fake carried out %d messages, want exactly 1", got)
			}
			c := p.counted()
			if c["session_created/retry"] < 1 {
				t.Fatalf("counted %v: the fault never reached the notifier", c)
			}
			if c["session_created/failed"] != 0 {
				t.Fatalf("counted %v: a message that was never sent was recorded as failed", c)
			}
		})
	}
}

// A timeout after the request was written may hide a delivered message: it
// is not repeated, but recorded as failed with the reason, counted and
// published on kefu.notify.failed.
func TestTimeoutAfterTheRequestWasWrittenIsAnUnknownOutcome(t *testing.T) {
	h := newHarness(t, harnessOptions{tls: true})
	p, _ := h.startNotSent(0)
	h.customer("o-warm", "o-1")
	ev, id := h.created("o-warm", wang)
	h.publish(ev, id)
	natstest.Eventually(t, patience, func() bool { return len(h.sent()["o-warm"]) == 1 }, "the warm-up message")

	h.wx.InjectFault(wechattest.MethodCustomSend, wechattest.FaultHangAfterHandling, 1)
	calls := h.wx.CallCount(wechattest.MethodCustomSend)
	ev, id = h.created("o-1", wang)
	h.publish(ev, id)
	natstest.Eventually(t, patience, func() bool { return len(h.outcomesByCause()[id]) == 1 }, "the outcome")
	natstest.Eventually(t, patience, func() bool { return h.drained(events.StreamWeChat, notifier.DurableSessions) }, "the consumer to drain")
	o := h.outcomesByCause()[id][0]
	if o.subject != events.SubjectNotifyFailed || !strings.HasPrefix(o.ErrMsg, "unknown outcome: "+wechat.UnknownTimeout+": ") {
		t.Fatalf("outcome %s %q, want kefu.notify.failed with unknown outcome: %s", o.subject, o.ErrMsg, wechat.UnknownTimeout)
	}
	if got := h.wx.CallCount(wechattest.MethodCustomSend) - calls; got != 1 {
		t.Fatalf("custom/send called %d times, want 1 (never repeated)", got)
	}
	if got := len(h.sent()["o-1"]); got != 1 {
		t.Fatalf("the fake carried out %d messages, want 1 (the answer was lost, not the message)", got)
	}
	if c := p.counted(); c["session_created/failed"] != 1 {
		t.Fatalf("counted %v", c)
	}
	if got := p.gauge("kefu_wechat_api_unknown_outcome_total", map[string]string{"method": "custom_send", "reason": wechat.UnknownTimeout}); got != 1 {
		t.Fatalf("kefu_wechat_api_unknown_outcome_total{custom_send,%s} = %v, want 1", wechat.UnknownTimeout, got)
	}
}

// A customer state that cannot be read is not taken for "announce": kefu
// may have closed the session and said goodbye itself.
func TestUnreadableCustomerStateIsRetriedNotAnnounced(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	var reads atomic.Int32
	h.suppress = func(context.Context, string, string) (bool, error) {
		if reads.Add(1) <= 2 {
			return false, errBlip
		}
		return true, nil // queuecare closed this session itself
	}
	p := h.start(testConfig("p1"))
	h.customer("o-1")
	ev, id := h.closed("o-1", wang)
	h.publish(ev, id)
	natstest.Eventually(t, patience, func() bool { return handled(p) == 1 }, "the event handled")
	if got := len(h.sent()["o-1"]); got != 0 {
		t.Fatalf("%d goodbyes sent, want 0", got)
	}
	if c := p.counted(); c["session_closed/skipped"] != 1 || c["session_closed/retry"] != 2 {
		t.Fatalf("counted %v", c)
	}
}
