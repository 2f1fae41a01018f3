package bus_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/pkg/events"
)

// countingSub subscribes a handler that counts what it handles.
func countingSub(t *testing.T, b *bus.Bus, durable string) (*bus.Subscription, *atomic.Int64) {
	t.Helper()
	var handled atomic.Int64
	s := spec(durable)
	s.Concurrency = 2
	sub, err := b.Subscribe(context.Background(), s, func(context.Context, *bus.Delivery) error { handled.Add(1); return nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	return sub, &handled
}

// The server closes the bus's connection for good (a control line over
// its limit): the bus dials a new one, and the consumers, which consume
// on the bus's connection, start again there — messages published
// afterwards are handled without a restart.
func TestConsumerConsumesAgainAfterTheBusRedials(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	b := openBus(t, withRegistry(reg))
	sub, handled := countingSub(t, b, "redial-test")
	publish(t, b, "o-before")
	natstest.Eventually(t, 15*time.Second, func() bool { return handled.Load() == 1 }, "the first message handled")

	first := bus.Conn(b)
	if err := first.Publish(strings.Repeat("x", 5000), nil); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, first.IsClosed, "the bus's connection closed")
	natstest.Eventually(t, 15*time.Second, func() bool { return bus.Conn(b) != first && b.Ready(ctx) == nil }, "the bus redialled and ready")

	publish(t, b, "o-after")
	natstest.Eventually(t, 15*time.Second, func() bool { return handled.Load() == 2 }, "the message published after the redial handled")
	if got := counterValue(t, reg, "kefu_consumer_redials_total", "redial-test"); got != 1 {
		t.Errorf("kefu_consumer_redials_total = %v, want 1", got)
	}
	if n := bus.RedialHooks(b); n != 1 {
		t.Errorf("%d redial hooks with one subscription", n)
	}
	if err := sub.Close(); err != nil {
		t.Fatalf("close after a redial: %v", err)
	}
	if n := bus.RedialHooks(b); n != 0 {
		t.Errorf("%d redial hooks kept after the subscription closed", n)
	}
}

// Someone deletes the durable consumer on the server (`nats consumer rm`):
// the subscription creates it again, with its first settings, and goes on.
// This one starts at the beginning of its stream, so it handles the
// stream again: nothing published meanwhile is lost.
func TestConsumerDeletedOnTheServerIsCreatedAgain(t *testing.T) {
	b := openBus(t)
	seen := newRecorder()
	sub, err := b.Subscribe(context.Background(), spec("deleted"), func(_ context.Context, d *bus.Delivery) error {
		seen.add(decodeOpenID(t, d))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	publish(t, b, "o1")
	seen.wait(t, 1)
	if err := bus.JetStream(b).DeleteConsumer(context.Background(), events.StreamWeChat, "deleted"); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "o2")
	natstest.Eventually(t, 15*time.Second, func() bool { return seen.count("o2") == 1 }, "a message published after the deletion handled")
	if _, err := b.ConsumerInfo(context.Background(), events.StreamWeChat, "deleted"); err != nil {
		t.Fatalf("the consumer was not created again: %v", err)
	}
}

// A consumer that cannot consume (its stream deleted under it) makes the
// bus not ready, naming the consumer, and UnusableSince run — so /readyz
// and, past KEFU_NATS_DOWN_LIMIT, /healthz say so instead of the process
// idling in silence — until the stream is back and it consumes again.
func TestConsumerThatCannotConsumeFailsReadiness(t *testing.T) {
	b := openBus(t)
	ctx := context.Background()
	_, handled := countingSub(t, b, "stalled")
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("Ready with the consumer running: %v", err)
	}
	if err := bus.JetStream(b).DeleteStream(ctx, events.StreamWeChat); err != nil {
		t.Fatal(err)
	}
	// The server may tell the pulls their consumer is gone, or drop them
	// without a word: then two missed heartbeats (10 s) tell.
	natstest.Eventually(t, 30*time.Second, func() bool {
		err := b.Ready(ctx)
		return err != nil && strings.Contains(err.Error(), "consumer stalled not consuming")
	}, "readiness to fail naming the consumer")
	if b.UnusableSince().IsZero() {
		t.Error("UnusableSince zero while a consumer cannot consume")
	}
	if err := b.EnsureStreams(ctx, events.StreamWeChat); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 15*time.Second, func() bool { return b.Ready(ctx) == nil && b.UnusableSince().IsZero() }, "ready again once the stream is back")
	publish(t, b, "o-back")
	natstest.Eventually(t, 15*time.Second, func() bool { return handled.Load() == 1 }, "a message handled once the stream is back")
}

// An older kefu consumed through push consumers, which the server cannot
// turn into pull consumers. Subscribe replaces one by a pull consumer that
// starts at its acknowledgement floor: nothing it had not acknowledged is
// lost, what it had acknowledged in order is not handled again.
func TestPushConsumerOfAnOlderKefuIsReplacedWithoutLoss(t *testing.T) {
	b := openBus(t)
	ctx := context.Background()
	cfg := bus.ConsumerConfig(spec("upgraded"))
	cfg.DeliverSubject = "_kefu.deliver.KEFU_WECHAT.upgraded"
	cfg.DeliverGroup = "upgraded"
	cfg.MaxDeliver = 5 // older kefus set a delivery limit
	old, err := bus.Conn(b).QueueSubscribeSync(cfg.DeliverSubject, cfg.DeliverGroup)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.JetStream(b).CreateOrUpdatePushConsumer(ctx, events.StreamWeChat, cfg); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"o1", "o2", "o3", "o4"} {
		publish(t, b, id)
	}
	// The old kefu acknowledged o1 and o3, and had o2 in hand.
	for i := range 3 {
		m, err := old.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if i != 1 {
			if err := m.AckSync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	old.Unsubscribe() //nolint:errcheck // the old kefu stops

	seen := newRecorder()
	sub, err := b.Subscribe(ctx, spec("upgraded"), func(_ context.Context, d *bus.Delivery) error {
		seen.add(decodeOpenID(t, d))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	seen.wait(t, 3)
	publish(t, b, "o5")
	seen.wait(t, 1)
	for _, id := range []string{"o2", "o3", "o4", "o5"} {
		if seen.count(id) != 1 {
			t.Errorf("%s handled %d times, want once", id, seen.count(id))
		}
	}
	if n := seen.count("o1"); n != 0 {
		t.Errorf("o1, acknowledged below the floor, handled again %d times", n)
	}
	info, err := b.ConsumerInfo(ctx, events.StreamWeChat, "upgraded")
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.DeliverSubject != "" || info.Config.MaxDeliver != -1 {
		t.Errorf("consumer after the upgrade: deliver subject %q, MaxDeliver %d; want a pull consumer without a delivery limit",
			info.Config.DeliverSubject, info.Config.MaxDeliver)
	}
	// Subscribing again keeps the consumer's start.
	sub.Close()
	again, err := b.Subscribe(ctx, spec("upgraded"), func(context.Context, *bus.Delivery) error { return nil })
	if err != nil {
		t.Fatalf("subscribe to the upgraded consumer again: %v", err)
	}
	again.Close()
	info, err = b.ConsumerInfo(ctx, events.StreamWeChat, "upgraded")
	if err != nil || info.Config.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || info.Config.OptStartSeq != 2 {
		t.Errorf("consumer after subscribing again: %+v, %v", info, err)
	}
}

// counterValue is the value of the counter name{consumer=durable} in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, durable string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "consumer" && l.GetValue() == durable {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{consumer=%q}", name, durable)
	return 0
}
