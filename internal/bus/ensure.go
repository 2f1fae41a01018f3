package bus

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// ensureConsumer creates spec's durable pull consumer, or brings an
// existing one to spec (MaxDeliver, MaxAckPending, AckWait, …).
//
// Where a consumer starts cannot change once it exists, so an existing
// consumer keeps its start. A push consumer of an earlier kefu build (the
// server cannot turn one into a pull consumer) is replaced by a pull
// consumer that starts just after its acknowledgement floor: nothing
// unacknowledged is skipped, and what was acknowledged out of order above
// the floor comes once more, which the handlers take as a redelivery.
func (b *Bus) ensureConsumer(ctx context.Context, spec ConsumerSpec) (jetstream.Consumer, error) {
	want := ConsumerConfig(spec)
	st, err := b.js().Stream(ctx, spec.Stream)
	if err != nil {
		return nil, err
	}
	have, err := st.Consumer(ctx, spec.Durable)
	switch {
	case err == nil:
		cfg := have.CachedInfo().Config
		want.DeliverPolicy, want.OptStartSeq, want.OptStartTime = cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime
	case errors.Is(err, jetstream.ErrNotPullConsumer):
		if err := b.replacePushConsumer(ctx, st, &want); err != nil {
			return nil, err
		}
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, err
	}
	return st.CreateOrUpdateConsumer(ctx, want)
}

// replacePushConsumer deletes the push consumer want.Durable and sets
// want to start where it stood.
func (b *Bus) replacePushConsumer(ctx context.Context, st jetstream.Stream, want *jetstream.ConsumerConfig) error {
	pc, err := st.PushConsumer(ctx, want.Durable)
	if err != nil {
		return err
	}
	info := pc.CachedInfo()
	want.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
	want.OptStartSeq = info.AckFloor.Stream + 1
	if err := st.DeleteConsumer(ctx, want.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return err
	}
	b.log.Warn("push consumer of an older kefu replaced by a pull consumer", zap.String("consumer", want.Durable),
		zap.Uint64("from_stream_seq", want.OptStartSeq), zap.Uint64("delivered_stream_seq", info.Delivered.Stream),
		zap.Int("ack_pending", info.NumAckPending))
	return nil
}
