package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/pkg/events"
)

// ConsumerSpec describes one durable consumer and how its messages are handled.
type ConsumerSpec struct {
	// Role names the dead-letter subject: kefu.dlq.<role>.
	Role string
	// Stream and Durable name the consumer; FilterSubject selects messages.
	Stream, Durable, FilterSubject string
	// DeliverNew starts a new consumer at the end of the stream instead of
	// its beginning.
	DeliverNew bool
	// MaxAckPending bounds the messages in flight (default 4 ×
	// Concurrency, at least 16), so that messages never wait in a local
	// buffer until their AckWait expires: JetStream hands a backlog to the
	// first subscription that binds, which handles its share one by one,
	// so MaxAckPending × the slowest handler must stay below AckWait.
	MaxAckPending int
	// AckWait must exceed the slowest handler (default 30s).
	AckWait time.Duration
	// MaxDeliver is how many times a message is tried before it goes to the
	// dead-letter subject (default 5).
	MaxDeliver int
	// Backoff is the delay before the n-th redelivery after a transient
	// error; the last value repeats (default 1s, 5s, 30s, 2m).
	Backoff []time.Duration
	// Concurrency is how many messages are handled at once (default 4).
	Concurrency int
}

func (s *ConsumerSpec) setDefaults() {
	if s.Concurrency <= 0 {
		s.Concurrency = 4
	}
	if s.MaxAckPending <= 0 {
		s.MaxAckPending = 4 * s.Concurrency
		if s.MaxAckPending < 16 {
			s.MaxAckPending = 16
		}
	}
	if s.AckWait <= 0 {
		s.AckWait = 30 * time.Second
	}
	if s.MaxDeliver <= 0 {
		s.MaxDeliver = 5
	}
	if len(s.Backoff) == 0 {
		s.Backoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}
	}
	if s.Concurrency <= 0 {
		s.Concurrency = 4
	}
}

// Validate names what is missing.
func (s ConsumerSpec) Validate() error {
	switch {
	case s.Role == "":
		return errors.New("consumer: Role is required (it names the dead-letter subject)")
	case s.Stream == "":
		return errors.New("consumer: Stream is required")
	case s.Durable == "":
		return errors.New("consumer: Durable is required")
	case s.FilterSubject == "":
		return errors.New("consumer: FilterSubject is required")
	}
	return nil
}

// Delivery is one message given to a handler.
type Delivery struct {
	Subject string
	Header  map[string]string
	Data    []byte
	// NumDelivered counts deliveries of this message, 1 the first time.
	NumDelivered uint64
	StreamSeq    uint64
	// Published is when JetStream stored the message.
	Published time.Time
}

// ID is the message's ce-id (its de-duplication id).
func (d *Delivery) ID() string { return d.Header[events.HeaderID] }

// Handler handles one message. nil acks it; an error wrapped with
// Permanent sends it to the dead-letter subject at once; any other error
// redelivers it after a delay, until MaxDeliver is reached.
type Handler func(ctx context.Context, d *Delivery) error

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix (a poison message).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Dead-letter headers added to the original message's headers.
const (
	HeaderDLQReason    = "Kefu-Dlq-Reason"
	HeaderDLQSubject   = "Kefu-Dlq-Subject"
	HeaderDLQStream    = "Kefu-Dlq-Stream"
	HeaderDLQStreamSeq = "Kefu-Dlq-Stream-Seq"
	HeaderDLQDelivered = "Kefu-Dlq-Delivered"
	HeaderDLQConsumer  = "Kefu-Dlq-Consumer"
)

// metadata keys the unmarshaler adds to watermill messages.
const (
	mdSubject   = "_kefu_subject"
	mdDelivered = "_kefu_delivered"
	mdStreamSeq = "_kefu_stream_seq"
	mdPublished = "_kefu_published"
)

// deliveryUnmarshaler keeps every header and adds what the handler needs
// from the JetStream metadata (watermill's NATSMarshaler drops the subject
// and Nats-Msg-Id).
type deliveryUnmarshaler struct{}

func (deliveryUnmarshaler) Unmarshal(m *nats.Msg) (*message.Message, error) {
	md := make(message.Metadata, len(m.Header)+4)
	for k, v := range m.Header {
		if len(v) > 0 {
			md[k] = v[0]
		}
	}
	md[mdSubject] = m.Subject
	if meta, err := m.Metadata(); err == nil {
		md[mdDelivered] = strconv.FormatUint(meta.NumDelivered, 10)
		md[mdStreamSeq] = strconv.FormatUint(meta.Sequence.Stream, 10)
		md[mdPublished] = strconv.FormatInt(meta.Timestamp.UnixNano(), 10)
	}
	id := md[events.HeaderID]
	if id == "" {
		id = md[mdStreamSeq]
	}
	msg := message.NewMessage(id, m.Data)
	msg.Metadata = md
	return msg, nil
}

// backoffDelay is watermill's redelivery delay: the n-th delivery that
// failed waits Backoff[n-1].
type backoffDelay []time.Duration

func (b backoffDelay) WaitTime(delivered uint64) time.Duration {
	i := int(delivered) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(b) {
		i = len(b) - 1
	}
	return b[i]
}

// Subscription is a running consumer.
type Subscription struct {
	sub    *wmnats.Subscriber
	conn   *nats.Conn
	closed chan struct{} // the connection is closed
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Close stops taking messages, lets the handlers finish the messages
// already received, and closes the subscriber's connection.
// Unacknowledged messages are redelivered to the next subscriber of the
// durable consumer; the consumer itself stays.
//
// The connection is drained first: nats.go then waits for the callbacks in
// flight, so watermill never sends on its output channel while closing it.
func (s *Subscription) Close() error {
	var err error
	if derr := s.conn.Drain(); derr == nil {
		<-s.closed
	} else if !errors.Is(derr, nats.ErrConnectionClosed) {
		err = derr
		s.conn.Close()
	}
	s.cancel()
	if cerr := s.sub.Close(); cerr != nil && !errors.Is(cerr, nats.ErrConnectionClosed) && err == nil {
		err = cerr
	}
	s.wg.Wait()
	return err
}

// ConsumerConfig is the JetStream configuration of spec's durable push
// consumer. Its deliver group is the durable name, so every process bound
// to it shares the work.
func ConsumerConfig(spec ConsumerSpec) jetstream.ConsumerConfig {
	spec.setDefaults()
	policy := jetstream.DeliverAllPolicy
	if spec.DeliverNew {
		policy = jetstream.DeliverNewPolicy
	}
	return jetstream.ConsumerConfig{
		Durable:       spec.Durable,
		Description:   "kefu " + spec.Role,
		DeliverPolicy: policy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       spec.AckWait,
		// The handler moves a message to the dead-letter subject on its
		// last try; the server's limit is a little higher so a message is
		// never dropped silently when a process dies mid-handling.
		MaxDeliver:     spec.MaxDeliver + 2,
		FilterSubject:  spec.FilterSubject,
		MaxAckPending:  spec.MaxAckPending,
		DeliverSubject: "_kefu.deliver." + spec.Stream + "." + spec.Durable,
		DeliverGroup:   spec.Durable,
		ReplayPolicy:   jetstream.ReplayInstantPolicy,
	}
}

// Subscribe creates (or updates) spec's durable consumer and handles its
// messages until ctx ends or the subscription is closed.
func (b *Bus) Subscribe(ctx context.Context, spec ConsumerSpec, handle Handler) (*Subscription, error) {
	spec.setDefaults()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := retryStartup(ctx, func(ctx context.Context) error {
		_, err := b.JS.CreateOrUpdatePushConsumer(ctx, spec.Stream, ConsumerConfig(spec))
		return err
	}); err != nil {
		return nil, fmt.Errorf("create consumer %s/%s: %w", spec.Stream, spec.Durable, err)
	}
	b.lag.add(spec.Stream, spec.Durable)

	log := b.log.With(zap.String("consumer", spec.Durable))
	closed := make(chan struct{})
	var closeOnce sync.Once
	conn, err := nats.Connect(b.url, append(b.opts[:len(b.opts):len(b.opts)],
		nats.Name(b.cfg.Name+"/"+spec.Durable),
		nats.DrainTimeout(spec.AckWait+5*time.Second),
		nats.ClosedHandler(func(*nats.Conn) { closeOnce.Do(func() { close(closed) }) }))...)
	if err != nil {
		return nil, fmt.Errorf("connect subscriber %s: %w", spec.Durable, err)
	}
	durable := spec.Durable
	wsub, err := wmnats.NewSubscriberWithNatsConn(conn, wmnats.SubscriberSubscriptionConfig{
		Unmarshaler:      deliveryUnmarshaler{},
		SubscribersCount: spec.Concurrency,
		AckWaitTimeout:   spec.AckWait,
		CloseTimeout:     spec.AckWait,
		SubscribeTimeout: 10 * time.Second,
		NakDelay:         backoffDelay(spec.Backoff),
		QueueGroupPrefix: durable,
		JetStream: wmnats.JetStreamConfig{
			SubscribeOptions: []nats.SubOpt{
				nats.Bind(spec.Stream, durable),
				nats.ManualAck(),
			},
			DurablePrefix:     durable,
			DurableCalculator: func(string, string) string { return durable },
		},
	}, NewWatermillLogger(log, false))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscriber %s: %w", spec.Durable, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	msgs, err := wsub.Subscribe(ctx, spec.FilterSubject)
	if err != nil {
		cancel()
		wsub.Close()
		return nil, fmt.Errorf("subscribe %s: %w", spec.Durable, err)
	}
	s := &Subscription{sub: wsub, conn: conn, closed: closed, cancel: cancel}
	for i := 0; i < spec.Concurrency; i++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for msg := range msgs {
				b.handle(msg, spec, handle, log)
			}
		}()
	}
	return s, nil
}

func (b *Bus) handle(msg *message.Message, spec ConsumerSpec, handle Handler, log *zap.Logger) {
	d := &Delivery{
		Subject: msg.Metadata[mdSubject],
		Header:  make(map[string]string, len(msg.Metadata)),
		Data:    msg.Payload,
	}
	for k, v := range msg.Metadata {
		if len(k) > 6 && k[:6] == "_kefu_" || k == wmnats.WatermillUUIDHdr {
			continue
		}
		d.Header[k] = v
	}
	d.NumDelivered, _ = strconv.ParseUint(msg.Metadata[mdDelivered], 10, 64)
	d.StreamSeq, _ = strconv.ParseUint(msg.Metadata[mdStreamSeq], 10, 64)
	if ns, err := strconv.ParseInt(msg.Metadata[mdPublished], 10, 64); err == nil {
		d.Published = time.Unix(0, ns)
	}
	if d.NumDelivered > 1 {
		b.metrics.redeliver.WithLabelValues(spec.Durable).Inc()
	}

	start := time.Now()
	err := safeHandle(msg.Context(), handle, d)
	b.metrics.duration.WithLabelValues(spec.Durable).Observe(time.Since(start).Seconds())
	if err == nil {
		msg.Ack()
		b.metrics.handled.WithLabelValues(spec.Durable, "ack").Inc()
		if ce := log.Check(zap.DebugLevel, "event handled"); ce != nil {
			// event_id is the ce-id ingest logged when it stored the
			// event: grep it to follow one event through every role.
			ce.Write(zap.String("event_id", d.ID()), zap.String("subject", d.Subject), zap.Uint64("stream_seq", d.StreamSeq))
		}
		return
	}
	if msg.Context().Err() != nil && !IsPermanent(err) {
		// Shutting down: the message comes back to another subscriber,
		// whatever its delivery count; it is not a poison message.
		msg.Nack()
		return
	}
	if !IsPermanent(err) && d.NumDelivered < uint64(spec.MaxDeliver) {
		log.Warn("handler failed; will retry", zap.Error(err), zap.String("event_id", d.ID()), zap.String("subject", d.Subject),
			zap.Uint64("stream_seq", d.StreamSeq), zap.Uint64("delivered", d.NumDelivered))
		msg.Nack()
		b.metrics.handled.WithLabelValues(spec.Durable, "retry").Inc()
		return
	}
	if dlqErr := b.deadLetter(spec, d, err); dlqErr != nil {
		// Not acked: it comes back and the dead-letter publish is retried.
		log.Error("dead-letter publish failed", zap.Error(dlqErr), zap.String("event_id", d.ID()), zap.Uint64("stream_seq", d.StreamSeq))
		msg.Nack()
		return
	}
	log.Error("message moved to dead-letter subject", zap.Error(err), zap.String("event_id", d.ID()), zap.String("subject", d.Subject),
		zap.Uint64("stream_seq", d.StreamSeq), zap.Uint64("delivered", d.NumDelivered), zap.String("dlq", events.DLQSubject(spec.Role)))
	msg.Ack()
	b.metrics.handled.WithLabelValues(spec.Durable, "dead_letter").Inc()
	b.metrics.deadLet.WithLabelValues(spec.Durable).Inc()
}

// safeHandle turns a handler panic into a permanent error, so one poison
// message cannot crash a consumer in a loop.
func safeHandle(ctx context.Context, handle Handler, d *Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Permanent(fmt.Errorf("handler panic: %v", r))
		}
	}()
	return handle(ctx, d)
}

func (b *Bus) deadLetter(spec ConsumerSpec, d *Delivery, cause error) error {
	msg := &nats.Msg{Subject: events.DLQSubject(spec.Role), Data: d.Data, Header: nats.Header{}}
	for k, v := range d.Header {
		if k == events.HeaderMsgID {
			continue
		}
		msg.Header.Set(k, v)
	}
	reason := cause.Error()
	if len(reason) > 1024 {
		reason = reason[:1024]
	}
	msg.Header.Set(HeaderDLQReason, reason)
	msg.Header.Set(HeaderDLQSubject, d.Subject)
	msg.Header.Set(HeaderDLQStream, spec.Stream)
	msg.Header.Set(HeaderDLQStreamSeq, strconv.FormatUint(d.StreamSeq, 10))
	msg.Header.Set(HeaderDLQDelivered, strconv.FormatUint(d.NumDelivered, 10))
	msg.Header.Set(HeaderDLQConsumer, spec.Durable)
	msg.Header.Set(events.HeaderMsgID, "dlq-"+spec.Stream+"-"+spec.Durable+"-"+strconv.FormatUint(d.StreamSeq, 10))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := b.PublishMsg(ctx, msg)
	return err
}
