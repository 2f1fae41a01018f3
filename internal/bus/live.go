package bus

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A closed *nats.Conn never opens again, so when the server closes kefu's
// connection for good (see redial in health.go) the bus dials a new one.
// The bus reaches JetStream through liveJS (Bus.js): each call goes
// to the connection of the moment, and the key-value handles it returns
// (liveKV) look their bucket up again on the new connection. Handles of
// streams and consumers, and KV watchers, stay bound to the connection they
// were made on: take them per use, or re-open them after a redial
// (Bus.OnRedial). Subscribe's consumers have connections of their own and
// replace them the same way (Subscription.redial).

// generation is one connection and its JetStream context.
type generation struct {
	nc *nats.Conn
	js jetstream.JetStream
	n  uint64
}

// liveJS is jetstream.JetStream on the bus's current connection.
type liveJS struct{ b *Bus }

func (l *liveJS) cur() jetstream.JetStream { return l.b.gen.Load().js }

func (l *liveJS) wrapKV(kv jetstream.KeyValue, err error) (jetstream.KeyValue, error) {
	if err != nil {
		return nil, err
	}
	return &liveKV{b: l.b, bucket: kv.Bucket(), kv: kv, gen: l.b.gen.Load().n}, nil
}

func (l *liveJS) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	return l.wrapKV(l.cur().KeyValue(ctx, bucket))
}

func (l *liveJS) CreateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return l.wrapKV(l.cur().CreateKeyValue(ctx, cfg))
}

func (l *liveJS) UpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return l.wrapKV(l.cur().UpdateKeyValue(ctx, cfg))
}

func (l *liveJS) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return l.wrapKV(l.cur().CreateOrUpdateKeyValue(ctx, cfg))
}

// liveKV is a key-value bucket that follows the bus to a new connection.
type liveKV struct {
	b      *Bus
	bucket string

	mu  sync.Mutex
	kv  jetstream.KeyValue
	gen uint64
}

// cur returns the handle on the current connection, looking the bucket up
// again after a redial. If that fails (the new connection is not up yet),
// the old handle answers with "connection closed" and the next call tries
// again.
func (l *liveKV) cur(ctx context.Context) jetstream.KeyValue {
	g := l.b.gen.Load()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gen != g.n {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		kv, err := g.js.KeyValue(lctx, l.bucket)
		cancel()
		if err == nil {
			l.kv, l.gen = kv, g.n
		}
	}
	return l.kv
}

func (l *liveKV) Bucket() string { return l.bucket }

func (l *liveJS) AccountInfo(ctx context.Context) (*jetstream.AccountInfo, error) {
	return l.cur().AccountInfo(ctx)
}

func (l *liveJS) Conn() *nats.Conn {
	return l.cur().Conn()
}

func (l *liveJS) Options() jetstream.JetStreamOptions {
	return l.cur().Options()
}

func (l *liveJS) CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return l.cur().CreateOrUpdateConsumer(ctx, stream, cfg)
}

func (l *liveJS) CreateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return l.cur().CreateConsumer(ctx, stream, cfg)
}

func (l *liveJS) UpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return l.cur().UpdateConsumer(ctx, stream, cfg)
}

func (l *liveJS) OrderedConsumer(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, error) {
	return l.cur().OrderedConsumer(ctx, stream, cfg)
}

func (l *liveJS) Consumer(ctx context.Context, stream string, consumer string) (jetstream.Consumer, error) {
	return l.cur().Consumer(ctx, stream, consumer)
}

func (l *liveJS) DeleteConsumer(ctx context.Context, stream string, consumer string) error {
	return l.cur().DeleteConsumer(ctx, stream, consumer)
}

func (l *liveJS) PauseConsumer(ctx context.Context, stream string, consumer string, pauseUntil time.Time) (*jetstream.ConsumerPauseResponse, error) {
	return l.cur().PauseConsumer(ctx, stream, consumer, pauseUntil)
}

func (l *liveJS) ResumeConsumer(ctx context.Context, stream string, consumer string) (*jetstream.ConsumerPauseResponse, error) {
	return l.cur().ResumeConsumer(ctx, stream, consumer)
}

func (l *liveJS) ResetConsumer(ctx context.Context, stream string, consumer string) (*jetstream.ConsumerResetResponse, error) {
	return l.cur().ResetConsumer(ctx, stream, consumer)
}

func (l *liveJS) ResetConsumerToSequence(ctx context.Context, stream string, consumer string, seq uint64) (*jetstream.ConsumerResetResponse, error) {
	return l.cur().ResetConsumerToSequence(ctx, stream, consumer, seq)
}

func (l *liveJS) CreateOrUpdatePushConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.PushConsumer, error) {
	return l.cur().CreateOrUpdatePushConsumer(ctx, stream, cfg)
}

func (l *liveJS) CreatePushConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.PushConsumer, error) {
	return l.cur().CreatePushConsumer(ctx, stream, cfg)
}

func (l *liveJS) UpdatePushConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.PushConsumer, error) {
	return l.cur().UpdatePushConsumer(ctx, stream, cfg)
}

func (l *liveJS) PushConsumer(ctx context.Context, stream string, consumer string) (jetstream.PushConsumer, error) {
	return l.cur().PushConsumer(ctx, stream, consumer)
}

func (l *liveJS) CreateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return l.cur().CreateStream(ctx, cfg)
}

func (l *liveJS) UpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return l.cur().UpdateStream(ctx, cfg)
}

func (l *liveJS) CreateOrUpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return l.cur().CreateOrUpdateStream(ctx, cfg)
}

func (l *liveJS) Stream(ctx context.Context, stream string) (jetstream.Stream, error) {
	return l.cur().Stream(ctx, stream)
}

func (l *liveJS) StreamNameBySubject(ctx context.Context, subject string) (string, error) {
	return l.cur().StreamNameBySubject(ctx, subject)
}

func (l *liveJS) DeleteStream(ctx context.Context, stream string) error {
	return l.cur().DeleteStream(ctx, stream)
}

func (l *liveJS) ListStreams(a0 context.Context, opts ...jetstream.StreamListOpt) jetstream.StreamInfoLister {
	return l.cur().ListStreams(a0, opts...)
}

func (l *liveJS) StreamNames(a0 context.Context, opts ...jetstream.StreamListOpt) jetstream.StreamNameLister {
	return l.cur().StreamNames(a0, opts...)
}

func (l *liveJS) Publish(ctx context.Context, subject string, payload []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return l.cur().Publish(ctx, subject, payload, opts...)
}

func (l *liveJS) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return l.cur().PublishMsg(ctx, msg, opts...)
}

func (l *liveJS) PublishAsync(subject string, payload []byte, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	return l.cur().PublishAsync(subject, payload, opts...)
}

func (l *liveJS) PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	return l.cur().PublishMsgAsync(msg, opts...)
}

func (l *liveJS) PublishAsyncPending() int {
	return l.cur().PublishAsyncPending()
}

func (l *liveJS) PublishAsyncComplete() <-chan struct{} {
	return l.cur().PublishAsyncComplete()
}

func (l *liveJS) CleanupPublisher() {
	l.cur().CleanupPublisher()
}

func (l *liveJS) DeleteKeyValue(ctx context.Context, bucket string) error {
	return l.cur().DeleteKeyValue(ctx, bucket)
}

func (l *liveJS) KeyValueStoreNames(ctx context.Context) jetstream.KeyValueNamesLister {
	return l.cur().KeyValueStoreNames(ctx)
}

func (l *liveJS) KeyValueStores(ctx context.Context) jetstream.KeyValueLister {
	return l.cur().KeyValueStores(ctx)
}

func (l *liveJS) ObjectStore(ctx context.Context, bucket string) (jetstream.ObjectStore, error) {
	return l.cur().ObjectStore(ctx, bucket)
}

func (l *liveJS) CreateObjectStore(ctx context.Context, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	return l.cur().CreateObjectStore(ctx, cfg)
}

func (l *liveJS) UpdateObjectStore(ctx context.Context, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	return l.cur().UpdateObjectStore(ctx, cfg)
}

func (l *liveJS) CreateOrUpdateObjectStore(ctx context.Context, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	return l.cur().CreateOrUpdateObjectStore(ctx, cfg)
}

func (l *liveJS) DeleteObjectStore(ctx context.Context, bucket string) error {
	return l.cur().DeleteObjectStore(ctx, bucket)
}

func (l *liveJS) ObjectStoreNames(ctx context.Context) jetstream.ObjectStoreNamesLister {
	return l.cur().ObjectStoreNames(ctx)
}

func (l *liveJS) ObjectStores(ctx context.Context) jetstream.ObjectStoresLister {
	return l.cur().ObjectStores(ctx)
}

func (l *liveKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	return l.cur(ctx).Get(ctx, key)
}

func (l *liveKV) GetRevision(ctx context.Context, key string, revision uint64) (jetstream.KeyValueEntry, error) {
	return l.cur(ctx).GetRevision(ctx, key, revision)
}

func (l *liveKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	return l.cur(ctx).Put(ctx, key, value)
}

func (l *liveKV) PutString(ctx context.Context, key string, value string) (uint64, error) {
	return l.cur(ctx).PutString(ctx, key, value)
}

func (l *liveKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	return l.cur(ctx).Create(ctx, key, value, opts...)
}

func (l *liveKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	return l.cur(ctx).Update(ctx, key, value, revision)
}

func (l *liveKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return l.cur(ctx).Delete(ctx, key, opts...)
}

func (l *liveKV) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return l.cur(ctx).Purge(ctx, key, opts...)
}

func (l *liveKV) Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return l.cur(ctx).Watch(ctx, keys, opts...)
}

func (l *liveKV) WatchAll(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return l.cur(ctx).WatchAll(ctx, opts...)
}

func (l *liveKV) WatchFiltered(ctx context.Context, keys []string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return l.cur(ctx).WatchFiltered(ctx, keys, opts...)
}

func (l *liveKV) Keys(ctx context.Context, opts ...jetstream.WatchOpt) ([]string, error) {
	return l.cur(ctx).Keys(ctx, opts...)
}

func (l *liveKV) ListKeys(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyLister, error) {
	return l.cur(ctx).ListKeys(ctx, opts...)
}

func (l *liveKV) ListKeysFiltered(ctx context.Context, filters ...string) (jetstream.KeyLister, error) {
	return l.cur(ctx).ListKeysFiltered(ctx, filters...)
}

func (l *liveKV) History(ctx context.Context, key string, opts ...jetstream.WatchOpt) ([]jetstream.KeyValueEntry, error) {
	return l.cur(ctx).History(ctx, key, opts...)
}

func (l *liveKV) PurgeDeletes(ctx context.Context, opts ...jetstream.KVPurgeOpt) error {
	return l.cur(ctx).PurgeDeletes(ctx, opts...)
}

func (l *liveKV) Status(ctx context.Context) (jetstream.KeyValueStatus, error) {
	return l.cur(ctx).Status(ctx)
}
