package feedback_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback"
	"github.com/kefu-io/kefu/services/feedback/store"
	"github.com/kefu-io/kefu/services/feedback/store/storetest"
)

// The database is cut off (a TCP proxy between kefu and PostgreSQL closes
// every connection and refuses new ones) while posts and sessions keep
// coming, for longer than the retry budget that used to dead-letter them
// (MaxDeliver 5 × the back-off): after it is restored every post and every
// session fact is stored, and the dead-letter subject holds only the one
// malformed message published meanwhile.
func TestStoreOutageLosesNothingAndDeadLettersNothing(t *testing.T) {
	open, proxy := storetest.PostgresBehindProxy(t)
	st, err := open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := newHarness(t, st)
	cfg := testConfig()
	cfg.Backoff = []time.Duration{20 * time.Millisecond}
	cfg.MaxBackoff = 100 * time.Millisecond
	cfg.ProbeInterval = 50 * time.Millisecond
	svc := h.start(cfg, h.reg)
	ctx := context.Background()

	// The budget that used to end in the dead-letter subject: 5 tries,
	// each after at most MaxBackoff. The outage lasts far longer.
	oldBudget := 5 * cfg.MaxBackoff
	outage := 10 * oldBudget

	h.publishPost(post(1, "o-before", t0, "故障之前"))
	h.drainedAll()
	if err := svc.Ready(ctx); err != nil {
		t.Fatalf("ready before the outage: %v", err)
	}

	proxy.Cut()
	cutAt := time.Now()
	const posts, sessions = 40, 20
	var wg sync.WaitGroup
	wg.Go(func() {
		// Spread over the first part of the outage, so that messages
		// arrive before, while and after the consumers pause.
		for i := range posts {
			if err := h.sendPost(post(int64(100+i), fmt.Sprint("o-", i%sessions), t0.Add(time.Duration(i)*time.Minute), "故障期间")); err != nil {
				t.Error(err)
			}
			time.Sleep(outage / (4 * posts))
		}
	})
	wg.Go(func() {
		for i := range sessions {
			openid := fmt.Sprint("o-", i)
			at := t0.Add(-time.Hour + time.Duration(i)*time.Second)
			m, w := wechat(openid, at)
			if err := h.sendSession(events.SessionCreated{Meta: m, WeChatSource: w, KfAccount: "kf1@test"}, openid, at.Unix(), "kf_create_session", "kf1@test"); err != nil {
				t.Error(err)
			}
			m, w = wechat(openid, at.Add(10*time.Minute))
			if err := h.sendSession(events.SessionClosed{Meta: m, WeChatSource: w, KfAccount: "kf1@test"}, openid, w.CreateTime, "kf_close_session", "kf1@test"); err != nil {
				t.Error(err)
			}
			time.Sleep(outage / (4 * sessions))
		}
	})
	if _, err := h.bus.PublishRaw(ctx, events.SubjectPostCreated, []byte(`{"id": "399", "content": `), bus.Envelope{Source: "kefu/test"}); err != nil {
		t.Fatal(err)
	}

	// Readiness says so, and both consumers stop taking messages.
	natstest.Eventually(t, 20*time.Second, func() bool { return svc.Ready(ctx) != nil }, "readiness to fail")
	natstest.Eventually(t, 20*time.Second, func() bool {
		return metric(t, h.reg, "kefu_consumer_paused", map[string]string{"consumer": feedback.DurablePosts}) == 1 &&
			metric(t, h.reg, "kefu_consumer_paused", map[string]string{"consumer": feedback.DurableSessions}) == 1
	}, "both consumers to pause")
	wg.Wait()
	if err := svc.Ready(ctx); err == nil || !strings.Contains(err.Error(), "feedback") {
		t.Errorf("ready during the outage: %v", err)
	}
	time.Sleep(time.Until(cutAt.Add(outage)))
	proxy.Restore()
	restoredAt := time.Now()

	natstest.Eventually(t, 20*time.Second, func() bool {
		return metric(t, h.reg, "kefu_feedback_items_total", map[string]string{"kind": "post"}) >= posts+1 &&
			metric(t, h.reg, "kefu_feedback_items_total", map[string]string{"kind": "session"}) >= 2*sessions
	}, "every post and session fact stored")
	h.drainedAll()
	t.Logf("outage %s (old budget %s); caught up %s after the restore", outage, oldBudget, time.Since(restoredAt).Round(time.Millisecond))
	natstest.Eventually(t, 20*time.Second, func() bool { return svc.Ready(ctx) == nil }, "readiness back")

	if got := allPosts(t, svc); len(got) != posts+1 {
		t.Errorf("%d posts stored, want %d", len(got), posts+1)
	}
	page := get[store.SessionPage](t, svc, "/api/feedback/sessions", nil)
	if len(page.Items) != sessions {
		t.Errorf("%d closed sessions stored, want %d", len(page.Items), sessions)
	}
	dlq := deadLetters(t, h.bus)
	if len(dlq) != 1 || dlq[events.SubjectPostCreated+" 399"] == "" {
		t.Errorf("dead letters %v, want only the malformed post", dlq)
	}
	if n := metric(t, h.reg, "kefu_consumer_messages_total", map[string]string{"consumer": feedback.DurablePosts, "outcome": "retry"}); n == 0 {
		t.Error("no post was retried: the outage did not reach the consumer")
	}
}
