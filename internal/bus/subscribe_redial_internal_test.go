package bus

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/pkg/events"
)

// The server closes a consumer's own connection for good (a control line
// over its limit): nats.go gives up on it, so the consumer dials a new
// one and subscribes again — messages published afterwards are handled
// without a restart, readiness fails only while it is gone, and the old
// connection no longer counts in the bus's health.
func TestConsumerDialsAgainAfterTheServerClosedItsConnection(t *testing.T) {
	srv := natstest.Run(t, nil)
	ctx := context.Background()
	b, err := Open(ctx, Config{URLs: []string{srv.ClientURL()}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if err := b.EnsureStreams(ctx, events.StreamWeChat); err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int64
	sub, err := b.Subscribe(ctx, ConsumerSpec{
		Stream: events.StreamWeChat, Durable: "redial-test", Role: "test", FilterSubject: events.SubjectSessionAll,
		Concurrency: 2,
	}, func(context.Context, *Delivery) error { handled.Add(1); return nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })

	publish := func(openid string) {
		t.Helper()
		ev := events.SessionCreated{
			Meta:         events.Meta{AppID: "wx1", OccurredAt: time.Unix(1399197672, 0), ReceivedAt: time.Now()},
			WeChatSource: events.WeChatSource{OpenID: openid, CreateTime: 1399197672},
			KfAccount:    "test1@test",
		}
		if _, err := b.Publish(ctx, ev, Envelope{ID: events.WeChatEventID(openid, 1399197672, "kf_create_session", "test1@test"), Source: "kefu/test"}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	publish("o-before")
	waitFor("the first message handled", func() bool { return handled.Load() == 1 })

	sub.mu.Lock()
	first := sub.conn
	sub.mu.Unlock()
	if err := first.Publish(strings.Repeat("x", 5000), nil); err != nil {
		t.Fatal(err)
	}
	waitFor("the consumer's connection closed", first.IsClosed)
	if first.LastError() == nil || !strings.Contains(strings.ToLower(first.LastError().Error()), "maximum control line") {
		t.Fatalf("connection closed for another reason: %v", first.LastError())
	}

	waitFor("a new connection", func() bool {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		return sub.conn != first && sub.conn.IsConnected() && len(sub.subs) == 2
	})
	var m dto.Metric
	if err := b.metrics.resubscribed.WithLabelValues("redial-test").Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Errorf("kefu_consumer_redials_total = %v, want 1", got)
	}
	publish("o-after")
	waitFor("the message published after the redial handled", func() bool { return handled.Load() == 2 })
	waitFor("the bus ready again (the closed connection no longer counts)", func() bool { return b.Ready(ctx) == nil })

	// Close still drains the new connection and ends the subscription.
	if err := sub.Close(); err != nil {
		t.Fatalf("close after a redial: %v", err)
	}
	sub.mu.Lock()
	last := sub.conn
	sub.mu.Unlock()
	if !last.IsClosed() {
		t.Error("Close left the replacement connection open")
	}
}
