package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The bus hands out no connection and no JetStream context: a handle taken
// from it would stay bound to the connection of that moment and break
// after a redial (live.go), and code holding one could bypass the
// de-duplication ids, the dead-letter rules and the bucket declarations
// kept here. What kefu's roles and tools need beyond publishing
// (publish.go), consuming (subscribe.go) and buckets (buckets.go) are the
// few operations below; each goes to the connection of the moment.

// Stream returns a handle on a stream: its info, its messages, ordered
// consumers on it. Take it per use: it stays bound to today's connection.
func (b *Bus) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	return b.js().Stream(ctx, name)
}

// StreamNames lists the streams, or with a subject those that capture it.
func (b *Bus) StreamNames(ctx context.Context, subject string) ([]string, error) {
	var opts []jetstream.StreamListOpt
	if subject != "" {
		opts = append(opts, jetstream.WithStreamListSubject(subject))
	}
	lister := b.js().StreamNames(ctx, opts...)
	var names []string
	for n := range lister.Name() {
		names = append(names, n)
	}
	return names, lister.Err()
}

// ConsumerInfo is the state of a durable consumer, push or pull.
func (b *Bus) ConsumerInfo(ctx context.Context, stream, durable string) (*jetstream.ConsumerInfo, error) {
	st, err := b.js().Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	c, err := st.Consumer(ctx, durable)
	if errors.Is(err, jetstream.ErrNotPullConsumer) {
		var pc jetstream.PushConsumer
		if pc, err = st.PushConsumer(ctx, durable); err == nil {
			return pc.CachedInfo(), nil
		}
	}
	if err != nil {
		return nil, err
	}
	return c.CachedInfo(), nil
}

// AccountInfo is JetStream's account information: whether JetStream
// answers, and its limits and usage.
func (b *Bus) AccountInfo(ctx context.Context) (*jetstream.AccountInfo, error) {
	return b.js().AccountInfo(ctx)
}

// Listen hands every message published on subjects to handle (core NATS:
// stored by a stream or not) until stop is called. It returns once the
// server has the subscriptions, so nothing published afterwards is missed.
// The subscriptions stay on today's connection: a listener that must
// outlive a redial listens again from Bus.OnRedial.
func (b *Bus) Listen(ctx context.Context, subjects []string, handle func(*nats.Msg)) (stop func(), err error) {
	nc := b.gen.Load().nc
	var subs []*nats.Subscription
	stop = func() {
		for _, s := range subs {
			s.Unsubscribe() //nolint:errcheck // a closed connection has no interest left
		}
	}
	for _, subj := range subjects {
		s, err := nc.Subscribe(subj, handle)
		if err != nil {
			stop()
			return nil, fmt.Errorf("subscribe %s: %w", subj, err)
		}
		subs = append(subs, s)
	}
	if err := b.Flush(ctx); err != nil {
		stop()
		return nil, fmt.Errorf("subscribe %s: %w", strings.Join(subjects, " "), err)
	}
	return stop, nil
}

// PublishCore publishes msg on core NATS: only live subscribers receive
// it, no stream stores it (for subjects outside the contract's streams).
func (b *Bus) PublishCore(msg *nats.Msg) error { return b.gen.Load().nc.PublishMsg(msg) }

// Flush waits until the server has processed everything published so far
// (at most 10 s when ctx has no deadline).
func (b *Bus) Flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	return b.gen.Load().nc.FlushWithContext(ctx)
}

// AsyncPublisher publishes to streams without waiting for each ack: for
// bulk copies (kefu replay --republish), where the caller collects the
// acks itself.
type AsyncPublisher interface {
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
	PublishAsyncComplete() <-chan struct{}
}

// AsyncPublisher returns a publisher with at most maxPending acks
// outstanding, each awaited for at most ackTimeout.
func (b *Bus) AsyncPublisher(maxPending int, ackTimeout time.Duration) (AsyncPublisher, error) {
	js, err := jetstream.New(b.gen.Load().nc,
		jetstream.WithPublishAsyncMaxPending(maxPending),
		jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return js, nil
}

// FencedKV writes kv under lease's fence (lease.go).
func (b *Bus) FencedKV(kv jetstream.KeyValue, lease *Lease) *FencedKV {
	return NewFencedKV(b.js(), kv, lease)
}
