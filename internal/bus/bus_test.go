package bus_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/pkg/events"
)

func openBus(t *testing.T, opts ...bustest.Option) *bus.Bus {
	t.Helper()
	b, _ := bustest.Open(t, append([]bustest.Option{bustest.Streams(events.StreamWeChat, events.StreamDLQ, events.StreamKF)}, opts...)...)
	return b
}

// withRegistry opens the bus with its metrics registered in reg.
func withRegistry(reg prometheus.Registerer) bustest.Option {
	return bustest.Config(func(c *bus.Config) { c.Registerer = reg })
}

func created(openid string) events.SessionCreated {
	return events.SessionCreated{
		Meta:         events.Meta{AppID: "wx1", OccurredAt: time.Unix(1399197672, 0), ReceivedAt: time.Now()},
		WeChatSource: events.WeChatSource{OpenID: openid, CreateTime: 1399197672},
		KfAccount:    "test1@test",
	}
}

func publish(t *testing.T, b *bus.Bus, openid string) bus.Published {
	t.Helper()
	p, err := b.Publish(context.Background(), created(openid), bus.Envelope{
		ID: events.WeChatEventID(openid, 1399197672, "kf_create_session", "test1@test"), Source: "kefu/test",
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPublishSetsHeadersAndDropsDuplicates(t *testing.T) {
	b := openBus(t)
	first := publish(t, b, "o1")
	again := publish(t, b, "o1")
	if first.Duplicate || !again.Duplicate {
		t.Fatalf("first duplicate=%v, second duplicate=%v; want false, true", first.Duplicate, again.Duplicate)
	}
	stream, _ := bus.JetStream(b).Stream(context.Background(), events.StreamWeChat)
	info, _ := stream.Info(context.Background())
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
	}
	raw, err := stream.GetMsg(context.Background(), first.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ce-specversion": "1.0",
		"ce-type":        "kefu.wechat.kf.session.created.v1",
		"ce-source":      "kefu/test",
		"ce-id":          "wx-evt-o1-1399197672-kf_create_session-test1@test",
		"Nats-Msg-Id":    "wx-evt-o1-1399197672-kf_create_session-test1@test",
		"content-type":   "application/json",
	}
	for k, v := range want {
		if got := raw.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if raw.Header.Get("ce-time") == "" {
		t.Error("ce-time missing")
	}
	got, err := events.Decode[events.SessionCreated](raw.Data)
	if err != nil || got.OpenID != "o1" || got.KfAccount != "test1@test" {
		t.Fatalf("body %+v, %v", got, err)
	}
}

func TestEnsureStreamsIsIdempotentAndFollowsConfig(t *testing.T) {
	b, _ := bustest.Open(t, bustest.Config(func(c *bus.Config) { c.StreamMaxAge = 2 * time.Hour }))
	for i := 0; i < 2; i++ {
		if err := b.EnsureStreams(context.Background(), events.StreamWeChat, events.StreamKF, events.StreamTucao, events.StreamNotify, events.StreamDLQ); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	s, err := bus.JetStream(b).Stream(context.Background(), events.StreamTucao)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.MaxAge != 2*time.Hour || cfg.Duplicates < 2*time.Minute || cfg.Storage != jetstream.FileStorage {
		t.Errorf("stream config %+v", cfg)
	}
	if err := b.EnsureStreams(context.Background(), "NOPE"); err == nil {
		t.Error("an unknown stream must be an error")
	}
}

type recorder struct {
	mu   sync.Mutex
	seen map[string]int
	ch   chan string
}

func newRecorder() *recorder { return &recorder{seen: map[string]int{}, ch: make(chan string, 1000)} }

func (r *recorder) add(openid string) {
	r.mu.Lock()
	r.seen[openid]++
	r.mu.Unlock()
	r.ch <- openid
}

func (r *recorder) count(openid string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[openid]
}

func (r *recorder) wait(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-r.ch:
		case <-time.After(15 * time.Second):
			t.Fatalf("got %d of %d messages", i, n)
		}
	}
}

func spec(durable string) bus.ConsumerSpec {
	return bus.ConsumerSpec{
		Role: "test", Stream: events.StreamWeChat, Durable: durable, FilterSubject: events.SubjectSessionAll,
		AckWait: 5 * time.Second, MaxDeliver: 3, Backoff: []time.Duration{50 * time.Millisecond}, Concurrency: 2,
	}
}

func decodeOpenID(t *testing.T, d *bus.Delivery) string {
	ev, err := events.Decode[events.SessionCreated](d.Data)
	if err != nil {
		t.Error(err)
	}
	return ev.OpenID
}

func TestSubscriberAcksAndRetriesTransientErrors(t *testing.T) {
	b := openBus(t)
	rec := newRecorder()
	var failures atomic.Int32
	sub, err := b.Subscribe(context.Background(), spec("retry"), func(ctx context.Context, d *bus.Delivery) error {
		id := decodeOpenID(t, d)
		if id == "flaky" && d.NumDelivered < 2 {
			failures.Add(1)
			return errors.New("transient")
		}
		if d.Header[events.HeaderType] != "kefu.wechat.kf.session.created.v1" || d.Subject != events.SubjectSessionCreated {
			t.Errorf("delivery lost its headers or subject: %q %v", d.Subject, d.Header)
		}
		rec.add(id)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	publish(t, b, "ok")
	publish(t, b, "flaky")
	rec.wait(t, 2)
	if failures.Load() != 1 || rec.seen["flaky"] != 1 || rec.seen["ok"] != 1 {
		t.Fatalf("failures=%d seen=%v", failures.Load(), rec.seen)
	}
}

func dlqMessages(t *testing.T, b *bus.Bus, n int) []*nats.Msg {
	t.Helper()
	sub, err := bus.Conn(b).SubscribeSync("kefu.dlq.>")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	stream, _ := bus.JetStream(b).Stream(context.Background(), events.StreamDLQ)
	deadline := time.Now().Add(15 * time.Second)
	for {
		info, _ := stream.Info(context.Background())
		if int(info.State.Msgs) >= n || time.Now().After(deadline) {
			var out []*nats.Msg
			for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
				m, err := stream.GetMsg(context.Background(), seq)
				if err == nil {
					out = append(out, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
				}
			}
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPoisonMessagesGoToTheDeadLetterSubject(t *testing.T) {
	b := openBus(t)
	var attempts sync.Map
	const oldBudget = 3 // spec's MaxDeliver: once the limit of what went to the DLQ
	longFailing := make(chan struct{})
	var once sync.Once
	sub, err := b.Subscribe(context.Background(), spec("dlq"), func(ctx context.Context, d *bus.Delivery) error {
		id := decodeOpenID(t, d)
		n, _ := attempts.LoadOrStore(id, new(atomic.Int32))
		tries := n.(*atomic.Int32).Add(1)
		switch id {
		case "permanent":
			return bus.Permanent(errors.New("cannot decode"))
		case "always-failing":
			if tries >= 2*oldBudget {
				once.Do(func() { close(longFailing) })
			}
			return errors.New("still down")
		case "panics":
			panic("boom")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	publish(t, b, "permanent")
	publish(t, b, "always-failing")
	publish(t, b, "panics")
	select {
	case <-longFailing:
	case <-time.After(15 * time.Second):
		t.Fatal("a transiently failing message was not retried past MaxDeliver")
	}
	msgs := dlqMessages(t, b, 2)
	if len(msgs) != 2 {
		t.Fatalf("dead letters: %d, want 2 (the permanent error and the panic)", len(msgs))
	}
	reasons := map[string]string{}
	for _, m := range msgs {
		if m.Subject != "kefu.dlq.test" {
			t.Errorf("dead letter on %q", m.Subject)
		}
		if m.Header.Get(bus.HeaderDLQSubject) != events.SubjectSessionCreated || m.Header.Get("ce-type") == "" {
			t.Errorf("dead letter lost its origin: %v", m.Header)
		}
		if m.Header.Get(bus.HeaderDLQMsgID) != m.Header.Get(events.HeaderID) || m.Header.Get(bus.HeaderDLQMsgID) == "" {
			t.Errorf("dead letter lost its Nats-Msg-Id: %v", m.Header)
		}
		ev, _ := events.Decode[events.SessionCreated](m.Data)
		reasons[ev.OpenID] = m.Header.Get(bus.HeaderDLQReason) + " after " + m.Header.Get(bus.HeaderDLQDelivered)
	}
	if !strings.Contains(reasons["permanent"], "cannot decode after 1") {
		t.Errorf("permanent error must go at once: %q", reasons["permanent"])
	}
	if _, ok := reasons["always-failing"]; ok {
		t.Errorf("a transient error reached the dead-letter subject: %q", reasons["always-failing"])
	}
	if !strings.Contains(reasons["panics"], "panic") {
		t.Errorf("a panic must be a dead letter: %q", reasons["panics"])
	}
}

func TestRetryDelayIsCappedExponential(t *testing.T) {
	s := bus.ConsumerSpec{Backoff: []time.Duration{time.Second}, MaxBackoff: 10 * time.Second}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		if got := s.RetryDelay(uint64(i + 1)); got != w {
			t.Errorf("delivery %d: %s, want %s", i+1, got, w)
		}
	}
	if got := s.RetryDelay(1 << 40); got != 10*time.Second {
		t.Errorf("after very many deliveries: %s, want the cap", got)
	}
	s = bus.ConsumerSpec{Backoff: []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}, MaxBackoff: 20 * time.Second}
	for i, w := range []time.Duration{time.Second, 5 * time.Second, 20 * time.Second, 20 * time.Second, 20 * time.Second} {
		if got := s.RetryDelay(uint64(i + 1)); got != w {
			t.Errorf("listed back-off, delivery %d: %s, want %s", i+1, got, w)
		}
	}
}

// An older kefu created its consumers with a delivery limit, past which
// the server silently stops delivering; subscribing lifts it.
func TestSubscribeLiftsTheServersDeliveryLimit(t *testing.T) {
	b := openBus(t)
	cfg := bus.ConsumerConfig(spec("limited"))
	cfg.MaxDeliver = 5
	if _, err := bus.JetStream(b).CreateOrUpdateConsumer(context.Background(), events.StreamWeChat, cfg); err != nil {
		t.Fatal(err)
	}
	sub, err := b.Subscribe(context.Background(), spec("limited"), func(context.Context, *bus.Delivery) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	info, err := b.ConsumerInfo(context.Background(), events.StreamWeChat, "limited")
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Config.MaxDeliver; got != -1 {
		t.Errorf("server MaxDeliver %d, want -1 (unlimited)", got)
	}
}

func TestConsumerPausesWhileItsDependencyIsDown(t *testing.T) {
	b := openBus(t)
	var down atomic.Bool
	var probes atomic.Int32
	var handled sync.Map
	rec := newRecorder()
	s := spec("paused")
	s.ProbeInterval = 20 * time.Millisecond
	s.MaxBackoff = 100 * time.Millisecond
	s.Ready = func(context.Context) error {
		probes.Add(1)
		if down.Load() {
			return errors.New("database unreachable")
		}
		return nil
	}
	var calls atomic.Int32
	sub, err := b.Subscribe(context.Background(), s, func(ctx context.Context, d *bus.Delivery) error {
		calls.Add(1)
		if down.Load() {
			return errors.New("insert: connection refused")
		}
		id := decodeOpenID(t, d)
		if _, dup := handled.LoadOrStore(id, true); !dup {
			rec.add(id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	down.Store(true)
	publish(t, b, "first")
	natstest.Eventually(t, 15*time.Second, func() bool { return sub.Paused() != nil }, "the consumer to pause")
	if err := sub.Paused(); !strings.Contains(err.Error(), "database unreachable") {
		t.Errorf("Paused says %v", err)
	}
	callsAtPause := calls.Load()
	for i := range 20 {
		publish(t, b, fmt.Sprint("during-", i))
	}
	// Several probes later the handler has still not been called: the
	// server pushes nothing to a paused consumer.
	p := probes.Load()
	natstest.Eventually(t, 15*time.Second, func() bool { return probes.Load() >= p+5 }, "probes while paused")
	if got := calls.Load(); got != callsAtPause {
		t.Errorf("handler called %d times while paused", got-callsAtPause)
	}
	// Not even fetched: the server still holds every message published
	// during the pause as not yet delivered.
	if info, err := b.ConsumerInfo(context.Background(), events.StreamWeChat, "paused"); err != nil || info.NumPending < 20 {
		t.Errorf("paused consumer fetched messages: info %+v, %v", info, err)
	}
	down.Store(false)
	rec.wait(t, 21)
	natstest.Eventually(t, 15*time.Second, func() bool { return sub.Paused() == nil }, "the consumer to resume")
	if msgs := dlqMessages(t, b, 0); len(msgs) != 0 {
		t.Errorf("%d messages reached the dead-letter subject", len(msgs))
	}
}

func TestDurableConsumerSurvivesRestartAndSharesWork(t *testing.T) {
	b := openBus(t)
	rec := newRecorder()
	handler := func(ctx context.Context, d *bus.Delivery) error { rec.add(decodeOpenID(t, d)); return nil }
	first, err := b.Subscribe(context.Background(), spec("shared"), handler)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		publish(t, b, fmt.Sprint("a", i))
	}
	rec.wait(t, 10)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// Published while nobody listens: the durable consumer keeps them.
	for i := 0; i < 10; i++ {
		publish(t, b, fmt.Sprint("b", i))
	}
	var perInstance [2]atomic.Int32
	subs := make([]*bus.Subscription, 2)
	for i := range subs {
		i := i
		subs[i], err = b.Subscribe(context.Background(), spec("shared"), func(ctx context.Context, d *bus.Delivery) error {
			perInstance[i].Add(1)
			time.Sleep(5 * time.Millisecond)
			return handler(ctx, d)
		})
		if err != nil {
			t.Fatal(err)
		}
		defer subs[i].Close()
	}
	for i := 0; i < 40; i++ {
		publish(t, b, fmt.Sprint("c", i))
	}
	rec.wait(t, 50)
	// Every message acknowledged, and the server delivered 60 times in
	// all since the consumer was created: none came twice, to either
	// instance (a redelivery would have counted).
	var info *jetstream.ConsumerInfo
	natstest.Eventually(t, 15*time.Second, func() bool {
		info, err = b.ConsumerInfo(context.Background(), events.StreamWeChat, "shared")
		return err == nil && info.AckFloor.Stream == 60 && info.NumAckPending == 0
	}, "all 60 messages acknowledged")
	if info.Delivered.Consumer != 60 || info.NumRedelivered != 0 {
		t.Errorf("the server delivered %d times (%d redelivered) for 60 messages", info.Delivered.Consumer, info.NumRedelivered)
	}
	for id, n := range rec.seen {
		if n != 1 {
			t.Errorf("%s handled %d times", id, n)
		}
	}
	if len(rec.seen) != 60 {
		t.Errorf("handled %d distinct messages, want 60", len(rec.seen))
	}
	if perInstance[0].Load() == 0 || perInstance[1].Load() == 0 {
		t.Errorf("work not shared: %d / %d", perInstance[0].Load(), perInstance[1].Load())
	}
	info, err = b.ConsumerInfo(context.Background(), events.StreamWeChat, "shared")
	if err != nil {
		t.Fatalf("durable consumer gone after close: %v", err)
	}
	if c := info.Config; c.AckPolicy != jetstream.AckExplicitPolicy || c.MaxAckPending != 16 {
		t.Errorf("consumer config %+v", c)
	}
}

func TestEmbeddedServerRefusesABusyPortClearly(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = bus.Open(context.Background(), bus.Config{Listen: l.Addr().String(), DataDir: t.TempDir()})
	if !errors.Is(err, bus.ErrListenInUse) || !strings.Contains(err.Error(), "KEFU_NATS_URL") {
		t.Fatalf("err = %v; want ErrListenInUse suggesting KEFU_NATS_URL", err)
	}
}

func TestEmbeddedServerKeepsDataAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	open := func() *bus.Bus {
		b, err := bus.Open(context.Background(), bus.Config{Listen: "127.0.0.1:0", DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if !b.Embedded() || !strings.HasPrefix(b.ClientURL(), "nats://127.0.0.1:") {
			t.Fatalf("embedded=%v url=%s", b.Embedded(), b.ClientURL())
		}
		if err := b.EnsureStreams(context.Background(), events.StreamWeChat); err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := open()
	publish(t, b, "kept")
	if err := b.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Drain(); err != nil {
		t.Fatal(err)
	}
	b = open()
	defer b.Close()
	s, _ := bus.JetStream(b).Stream(context.Background(), events.StreamWeChat)
	if info, _ := s.Info(context.Background()); info.State.Msgs != 1 {
		t.Fatalf("after restart the stream holds %d messages, want 1", info.State.Msgs)
	}
}

func TestConcurrentLeaseRaceHasOneWinner(t *testing.T) {
	b := openBus(t)
	kv, _ := b.KeyValue(context.Background(), bus.BucketLocks)
	var winners atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			l := bus.NewLease(kv, "race", fmt.Sprint("p", i), time.Minute)
			if ok, err := l.TryAcquire(context.Background()); err != nil {
				t.Error(err)
			} else if ok {
				winners.Add(1)
			}
		}(i)
	}
	wg.Wait()
	if winners.Load() != 1 {
		t.Fatalf("%d winners, want 1", winners.Load())
	}
}

func TestConsumerLagIsExported(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := openBus(t, withRegistry(reg))
	release := make(chan struct{})
	sub, err := b.Subscribe(context.Background(), spec("lagging"), func(ctx context.Context, d *bus.Delivery) error {
		<-release
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	defer close(release)
	for i := 0; i < 20; i++ {
		publish(t, b, fmt.Sprint("lag", i))
	}
	var pending float64
	natstest.Eventually(t, 10*time.Second, func() bool {
		pending = gaugeValue(t, reg, "kefu_consumer_pending_messages") + gaugeValue(t, reg, "kefu_consumer_ack_pending_messages")
		return pending == 20
	}, "lag gauges to say 20 messages outstanding")
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// A consumer's counters exist at 0 from its subscription on: the first
// dead letter is then an increase from 0, which
// increase(kefu_dlq_messages_total[…]) sees, not a series born at 1.
func TestConsumerCountersStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := openBus(t, withRegistry(reg))
	sub, err := b.Subscribe(context.Background(), spec("zeroes"), func(context.Context, *bus.Delivery) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{ // family → series of consumer "zeroes"
		"kefu_dlq_messages_total": 1, "kefu_consumer_redials_total": 1, "kefu_consumer_redeliveries_total": 1,
		"kefu_consumer_messages_total": 5, "kefu_consumer_paused": 1,
	}
	got := map[string]int{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "consumer" && l.GetValue() == "zeroes" {
					got[mf.GetName()]++
					if v := m.GetCounter().GetValue() + m.GetGauge().GetValue(); v != 0 {
						t.Errorf("%s%v = %v before any message, want 0", mf.GetName(), m.GetLabel(), v)
					}
				}
			}
		}
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s has %d series for the new consumer, want %d", name, got[name], n)
		}
	}
}
