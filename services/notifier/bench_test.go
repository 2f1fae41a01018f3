package notifier_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
)

// The benchmarks publish kefu.wechat.kf.session.created events on an
// embedded NATS server and measure until the fake WeChat accepts the
// custom/send for each: the whole path of a notification, through
// JetStream, the kefu_notified bucket, the WeChat client over HTTP and
// the outcome event.
//
//	go test -run '^$' -bench BenchmarkNotify -benchtime 3000x ./services/notifier
//
// On 2 vCPU (load ≈ 1): 200 events/s p50 0.7 ms, p99 1.5–1.8 ms; 1,000
// events/s p50 0.5 ms, p99 2–5 ms; limiter off 6,300–6,700 notifications/s
// at ≈ 290 CPU-µs each for the whole process. README.md has the details.

// BenchmarkNotifyLatency publishes at a fixed rate and reports the
// percentiles of publish → custom/send received.
func BenchmarkNotifyLatency(b *testing.B) {
	for _, rate := range []int{200, 1000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			h, openids := benchSetup(b, 2*rate) // the limiter is on, above the load
			interval := time.Second / time.Duration(rate)
			published := make([]time.Time, b.N)
			b.ResetTimer()
			start := time.Now()
			for i, o := range openids {
				if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
					time.Sleep(d)
				}
				ev, id := h.created(o, wang)
				published[i] = time.Now()
				h.publish(ev, id)
			}
			sent := benchWait(b, h, len(openids))
			b.StopTimer()
			at := map[string]time.Time{}
			for _, m := range sent {
				at[m.OpenID] = m.Time
			}
			lat := make([]time.Duration, len(openids))
			for i, o := range openids {
				lat[i] = at[o].Sub(published[i])
			}
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkNotifyThroughput publishes b.N events as fast as eight
// publishers can, with the rate limiter off, and reports notifications per
// second from the first publish to the last custom/send.
func BenchmarkNotifyThroughput(b *testing.B) {
	h, openids := benchSetup(b, -1)
	b.ResetTimer()
	cpu := processCPU()
	start := time.Now()
	var wg sync.WaitGroup
	const publishers = 8
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < len(openids); i += publishers {
				ev, id := h.created(openids[i], wang)
				h.publish(ev, id)
			}
		}()
	}
	wg.Wait()
	sent := benchWait(b, h, len(openids))
	b.StopTimer()
	last := start
	for _, m := range sent {
		if m.Time.After(last) {
			last = m.Time
		}
	}
	b.ReportMetric(float64(len(openids))/last.Sub(start).Seconds(), "notifications/s")
	// Everything runs in this process — NATS server, fake WeChat, notifier,
	// publishers — so this bounds the notifier's own cost from above.
	b.ReportMetric(float64(processCPU()-cpu)/float64(time.Microsecond)/float64(len(openids)), "cpu-µs/notification")
	b.ReportMetric(0, "ns/op")
}

// benchSetup starts a notifier (rate limit in messages/s; negative: off)
// and b.N customers who wrote to the account.
func benchSetup(b *testing.B, rateLimit int) (*harness, []string) {
	b.Helper()
	h := newHarness(b, harnessOptions{})
	cfg := testConfig("bench")
	cfg.Concurrency = 64
	cfg.MaxAckPending = 2048
	cfg.AckWait = 30 * time.Second
	cfg.SendTimeout = 10 * time.Second
	cfg.RecordTimeout = 5 * time.Second
	cfg.RateLimit = float64(rateLimit)
	h.start(cfg)
	openids := make([]string, b.N)
	for i := range openids {
		openids[i] = fmt.Sprintf("o-bench-%06d", i)
	}
	h.customer(openids...)
	// One message first: the access token and the agents' nicknames are
	// fetched once per process, not per event.
	h.customer("o-warm")
	ev, id := h.created("o-warm", wang)
	h.publish(ev, id)
	natstest.Eventually(b, patience, func() bool { return h.wx.CallCount(wechattest.MethodCustomSend) == 1 }, "the warm-up message")
	return h, openids
}

// benchWait waits for n more custom/send calls and returns the messages
// sent after the warm-up.
func benchWait(b *testing.B, h *harness, n int) []wechattest.SentMessage {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for h.wx.CallCount(wechattest.MethodCustomSend) < n+1 {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d messages sent", h.wx.CallCount(wechattest.MethodCustomSend)-1, n)
		}
		time.Sleep(time.Millisecond)
	}
	// A call is counted when it arrives, the message when it is accepted.
	natstest.Eventually(b, patience, func() bool { return len(h.wx.Sent()) >= n+1 }, "the last message")
	sent := h.wx.Sent()[1:]
	if len(sent) != n {
		b.Fatalf("%d messages, want %d", len(sent), n)
	}
	natstest.Eventually(b, patience, func() bool {
		s, err := h.pub.Stream(context.Background(), events.StreamNotify)
		if err != nil {
			return false
		}
		info, err := s.Info(context.Background())
		return err == nil && info.State.Msgs == uint64(n+1)
	}, "the outcome events")
	return sent
}
