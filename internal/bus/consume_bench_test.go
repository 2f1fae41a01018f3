package bus

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/pkg/events"
)

// The consumer benchmarks measure Subscribe against the plainest use of
// the same JetStream API, with 1 KB payloads and a handler that does
// nothing, against an embedded server:
//
//   - subscribe: Subscribe as kefu runs it (one pull Consume on the bus's
//     connection, messages handed to up to Concurrency handlers, with the
//     pause, dead-letter and metrics bookkeeping);
//   - pull: jetstream's Consumer.Consume on the bus's connection, with the
//     same consumer settings (explicit ack, MaxAckPending, AckWait) and
//     Concurrency Consume loops, each message turned into a Delivery and
//     acknowledged as Subscribe's deliver does, and nothing else.
//
// Throughput: b.N messages stored first, then consumed and acknowledged
// (the clock stops when the server counts every ack). Latency: messages
// published one at a time while the consumer runs; p50 and p99 of the time
// from the publish to the handler. The numbers and the decision they led
// to are in the package documentation (doc.go).

const benchPayload = 1024

func benchBus(b *testing.B) *Bus {
	b.Helper()
	srv := natstest.Run(b, nil)
	bus, err := Open(context.Background(), Config{URLs: []string{srv.ClientURL()}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(bus.Close)
	if err := bus.EnsureStreams(context.Background(), events.StreamWeChat); err != nil {
		b.Fatal(err)
	}
	return bus
}

func benchSpec(durable string) ConsumerSpec {
	spec := ConsumerSpec{Role: "bench", Stream: events.StreamWeChat, Durable: durable, FilterSubject: events.SubjectSessionAll}
	spec.setDefaults()
	return spec
}

// benchPublish stores n messages of benchPayload bytes whose first 8 bytes
// are the publish time.
func benchPublish(b *testing.B, bus *Bus, n int) {
	b.Helper()
	ctx := context.Background()
	data := make([]byte, benchPayload)
	futures := make([]jetstream.PubAckFuture, 0, 256)
	for i := range n {
		binary.BigEndian.PutUint64(data, uint64(time.Now().UnixNano()))
		f, err := bus.js().PublishAsync(fmt.Sprintf("kefu.wechat.kf.session.created.v1.o%d", i), data)
		if err != nil {
			b.Fatal(err)
		}
		futures = append(futures, f)
		if len(futures) == cap(futures) || i == n-1 {
			select {
			case <-bus.js().PublishAsyncComplete():
			case <-ctx.Done():
			case <-time.After(30 * time.Second):
				b.Fatal("publish acks did not come")
			}
			futures = futures[:0]
		}
	}
}

// consumer starts one way of consuming; stop ends it.
type benchConsumer func(b *testing.B, bus *Bus, spec ConsumerSpec, handle Handler) (stop func())

func subscribeConsumer(b *testing.B, bus *Bus, spec ConsumerSpec, handle Handler) func() {
	sub, err := bus.Subscribe(context.Background(), spec, handle)
	if err != nil {
		b.Fatal(err)
	}
	return func() { sub.Close() } //nolint:errcheck // the benchmark is over
}

func pullConsumer(b *testing.B, bus *Bus, spec ConsumerSpec, handle Handler) func() {
	ctx := context.Background()
	c, err := bus.js().CreateOrUpdateConsumer(ctx, spec.Stream, ConsumerConfig(spec))
	if err != nil {
		b.Fatal(err)
	}
	var ccs []jetstream.ConsumeContext
	for range spec.Concurrency {
		cc, err := c.Consume(func(m jetstream.Msg) {
			d := &Delivery{Subject: m.Subject(), Data: m.Data(), Header: make(map[string]string, len(m.Headers()))}
			for k, v := range m.Headers() {
				if len(v) > 0 {
					d.Header[k] = v[0]
				}
			}
			if meta, err := m.Metadata(); err == nil {
				d.NumDelivered, d.StreamSeq, d.Published = meta.NumDelivered, meta.Sequence.Stream, meta.Timestamp
			}
			start := time.Now()
			err := safeHandle(ctx, handle, d)
			bus.metrics.duration.WithLabelValues(spec.Durable).Observe(time.Since(start).Seconds())
			if err == nil {
				m.Ack() //nolint:errcheck // as Subscribe: a lost ack redelivers
				bus.metrics.handled.WithLabelValues(spec.Durable, "ack").Inc()
				return
			}
			m.NakWithDelay(spec.RetryDelay(d.NumDelivered)) //nolint:errcheck // as Subscribe
		}, jetstream.PullMaxMessages(spec.MaxAckPending))
		if err != nil {
			b.Fatal(err)
		}
		ccs = append(ccs, cc)
	}
	return func() {
		for _, cc := range ccs {
			cc.Drain()
			<-cc.Closed()
		}
	}
}

// waitAcked waits until the server counts n acknowledgements of durable.
func waitAcked(b *testing.B, bus *Bus, spec ConsumerSpec, n int) {
	b.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last *jetstream.ConsumerInfo
	for {
		info, err := bus.ConsumerInfo(context.Background(), spec.Stream, spec.Durable)
		if err == nil {
			last = info
			if info.AckFloor.Stream >= uint64(n) && info.NumAckPending == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: not every one of %d messages acknowledged in time: %+v", spec.Durable, n, last)
		}
		time.Sleep(time.Millisecond)
	}
}

func benchThroughput(b *testing.B, consume benchConsumer) {
	bus := benchBus(b)
	benchPublish(b, bus, b.N)
	spec := benchSpec("bench-throughput")
	var handled atomic.Int64
	done := make(chan struct{})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	stop := consume(b, bus, spec, func(context.Context, *Delivery) error {
		if handled.Add(1) == int64(b.N) {
			close(done)
		}
		return nil
	})
	select {
	case <-done:
	case <-time.After(60 * time.Second): // a hang, not a slow run
		b.Fatalf("handled %d of %d", handled.Load(), b.N)
	}
	waitAcked(b, bus, spec, b.N)
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

func benchLatency(b *testing.B, consume benchConsumer) {
	bus := benchBus(b)
	spec := benchSpec("bench-latency")
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	got := make(chan struct{}, 1)
	stop := consume(b, bus, spec, func(_ context.Context, d *Delivery) error {
		sent := time.Unix(0, int64(binary.BigEndian.Uint64(d.Data)))
		mu.Lock()
		lat = append(lat, time.Since(sent))
		mu.Unlock()
		got <- struct{}{}
		return nil
	})
	defer stop()
	data := make([]byte, benchPayload)
	b.ResetTimer()
	for i := range b.N {
		binary.BigEndian.PutUint64(data, uint64(time.Now().UnixNano()))
		if _, err := bus.js().Publish(context.Background(), fmt.Sprintf("kefu.wechat.kf.session.created.v1.o%d", i), data); err != nil {
			b.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			b.Fatalf("message %d not delivered", i)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func BenchmarkConsumeThroughputSubscribe(b *testing.B) { benchThroughput(b, subscribeConsumer) }
func BenchmarkConsumeThroughputPull(b *testing.B)      { benchThroughput(b, pullConsumer) }
func BenchmarkConsumeLatencySubscribe(b *testing.B)    { benchLatency(b, subscribeConsumer) }
func BenchmarkConsumeLatencyPull(b *testing.B)         { benchLatency(b, pullConsumer) }
