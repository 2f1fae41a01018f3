package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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
	// MaxDeliver no longer sends anything to the dead-letter subject: a
	// message that fails transiently is retried for as long as it fails,
	// because its dependency coming back is all it needs. From this
	// delivery on (default 5) each further failure is logged as an error
	// instead of a warning, so that a stuck message is seen.
	MaxDeliver int
	// Backoff is the delay before the n-th redelivery after a transient
	// error; after its last value the delay doubles, and every delay is at
	// most MaxBackoff (default 1s, 2s, 4s, … up to MaxBackoff).
	Backoff []time.Duration
	// MaxBackoff caps the delay between two tries of a message
	// (KEFU_RETRY_MAX_BACKOFF, default 2m).
	MaxBackoff time.Duration
	// Concurrency is how many messages are handled at once (default 4).
	Concurrency int
	// Ready, when set, says whether the handler's dependency (a database)
	// answers. When a handler fails transiently and Ready fails too, the
	// subscription stops taking messages — the server then keeps them, or
	// hands them to a replica that can store them — and asks Ready every
	// ProbeInterval until it answers, then resumes.
	Ready func(ctx context.Context) error
	// ProbeInterval is how often Ready is asked while paused (default 1s,
	// at most MaxBackoff).
	ProbeInterval time.Duration
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
	if s.MaxBackoff <= 0 {
		s.MaxBackoff = 2 * time.Minute
	}
	if len(s.Backoff) == 0 {
		s.Backoff = []time.Duration{time.Second}
	}
	if s.ProbeInterval <= 0 {
		s.ProbeInterval = time.Second
	}
	s.ProbeInterval = min(s.ProbeInterval, s.MaxBackoff)
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
	for _, d := range s.Backoff {
		if d <= 0 {
			return fmt.Errorf("consumer %s: Backoff %s is not positive", s.Durable, d)
		}
	}
	return nil
}

// RetryDelay is the wait before the next try of a message whose
// delivered-th delivery failed transiently: Backoff[delivered-1], then
// doubling after the last value, capped at MaxBackoff. It never grows
// past the cap however often the message fails, so a message is tried
// again at most MaxBackoff after its dependency is back.
func (s ConsumerSpec) RetryDelay(delivered uint64) time.Duration {
	s.setDefaults()
	i := max(int(min(delivered, 1<<20)), 1) - 1
	if i < len(s.Backoff) {
		return min(s.Backoff[i], s.MaxBackoff)
	}
	d := s.Backoff[len(s.Backoff)-1]
	for j := len(s.Backoff) - 1; j < i && d < s.MaxBackoff; j++ {
		d *= 2
	}
	return min(d, s.MaxBackoff)
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
// is transient: the message is redelivered after RetryDelay, as often as
// it takes.
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
	// HeaderDLQMsgID is the original Nats-Msg-Id, which the dead letter
	// cannot carry under its own name (it has a de-duplication id of its
	// own); `kefu dlq redrive` derives the redriven message's id from it.
	HeaderDLQMsgID = "Kefu-Dlq-Msg-Id"
	// HeaderRedriveConsumer is set by `kefu dlq redrive` to the durable
	// consumer that dead-lettered the message: every other consumer of
	// its subject already handled the original and acknowledges the
	// redriven copy without handling it.
	HeaderRedriveConsumer = "Kefu-Redrive-Consumer"
)

// Subscription is a running consumer.
type Subscription struct {
	b      *Bus
	spec   ConsumerSpec
	handle Handler
	log    *zap.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// conn is the subscriber's own connection; a new one replaces it when
	// the server closes it for good (redial).
	conn *nats.Conn
	// closed is closed when conn is.
	closed chan struct{}
	// untrack stops counting conn in the bus's readiness and liveness.
	untrack  func()
	subs     []*nats.Subscription // none while paused
	closing  bool
	pauseErr error // why the subscription is paused; nil when it is not
	paused   atomic.Bool

	closeOnce sync.Once
	closeErr  error
}

// Close stops taking messages, lets the handlers finish the messages
// already received, and closes the subscriber's connection.
// Unacknowledged messages are redelivered to the next subscriber of the
// durable consumer; the consumer itself stays.
//
// The connection is drained: nats.go unsubscribes, waits for the handlers
// of the messages it already holds, which still ack on the open
// connection, and then closes it.
func (s *Subscription) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		conn, closed, untrack := s.conn, s.closed, s.untrack
		s.mu.Unlock()
		// A subscriber closing its own connection is not the bus failing.
		untrack()
		if err := conn.Drain(); err == nil {
			<-closed
		} else if !errors.Is(err, nats.ErrConnectionClosed) {
			s.closeErr = err
			conn.Close()
		}
		s.cancel()
		s.wg.Wait()
		s.b.metrics.paused.WithLabelValues(s.spec.Durable).Set(0)
	})
	return s.closeErr
}

// Paused returns why the subscription takes no messages right now (its
// dependency's Ready error), or nil while it consumes.
func (s *Subscription) Paused() error {
	if !s.paused.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pauseErr == nil {
		return nil
	}
	return fmt.Errorf("consumer %s paused: %w", s.spec.Durable, s.pauseErr)
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
		// No limit: a message the server stopped delivering would be lost
		// without a trace. A transient failure is retried until it
		// heals; a permanent one goes to the dead-letter subject, where
		// `kefu dlq` finds it.
		MaxDeliver:     -1,
		FilterSubject:  spec.FilterSubject,
		MaxAckPending:  spec.MaxAckPending,
		DeliverSubject: deliverSubject(spec),
		DeliverGroup:   spec.Durable,
		ReplayPolicy:   jetstream.ReplayInstantPolicy,
	}
}

func deliverSubject(spec ConsumerSpec) string {
	return "_kefu.deliver." + spec.Stream + "." + spec.Durable
}

// Subscribe creates (or updates) spec's durable consumer and handles its
// messages until ctx ends or the subscription is closed.
//
// It subscribes to the push consumer's deliver subject in the consumer's
// deliver group Concurrency times over: each subscription handles one
// message at a time, and the server spreads messages over them. Pausing
// drops that interest, so the server stops pushing until it resumes.
func (b *Bus) Subscribe(ctx context.Context, spec ConsumerSpec, handle Handler) (*Subscription, error) {
	if spec.MaxBackoff <= 0 {
		spec.MaxBackoff = b.cfg.RetryMaxBackoff // KEFU_RETRY_MAX_BACKOFF for every consumer
	}
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

	ctx, cancel := context.WithCancel(ctx)
	s := &Subscription{
		b: b, spec: spec, handle: handle, log: b.log.With(zap.String("consumer", spec.Durable)),
		ctx: ctx, cancel: cancel,
	}
	conn, closed, err := s.dial()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("connect subscriber %s: %w", spec.Durable, err)
	}
	b.metrics.paused.WithLabelValues(spec.Durable).Set(0)
	b.metrics.initConsumer(spec.Durable)
	s.mu.Lock()
	s.useLocked(conn, closed)
	err = s.subscribeLocked()
	untrack := s.untrack
	s.mu.Unlock()
	if err != nil {
		cancel()
		untrack()
		conn.Close()
		return nil, fmt.Errorf("subscribe %s: %w", spec.Durable, err)
	}
	// The caller's context ending closes the subscription, as Close does.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		go s.Close() //nolint:errcheck // Close waits for this goroutine; its error is the caller's to see
	}()
	return s, nil
}

// dial opens a connection of the subscriber's own, with the bus's options.
// closed is closed when the connection is; if that was not Close's doing,
// connClosed dials a new one.
func (s *Subscription) dial() (conn *nats.Conn, closed chan struct{}, err error) {
	b := s.b
	closed = make(chan struct{})
	var once sync.Once
	conn, err = nats.Connect(b.url, append(b.opts[:len(b.opts):len(b.opts)],
		nats.Name(b.cfg.Name+"/"+s.spec.Durable),
		nats.DrainTimeout(s.spec.AckWait+5*time.Second),
		nats.ClosedHandler(func(nc *nats.Conn) {
			once.Do(func() { close(closed) })
			s.connClosed(nc)
		}))...)
	return conn, closed, err
}

// useLocked makes conn the subscriber's connection; s.mu is held. The
// connection counts in readiness and liveness: while it is down, /readyz
// fails at once and /healthz after KEFU_NATS_DOWN_LIMIT.
func (s *Subscription) useLocked(conn *nats.Conn, closed chan struct{}) {
	if s.untrack != nil {
		s.untrack()
	}
	s.conn, s.closed, s.untrack = conn, closed, s.b.Track(conn)
}

// connClosed runs when a connection of the subscriber is closed for good.
// Unless the subscription is closing, a new one replaces it: nats.go does
// not reconnect a connection the server closed (say, for a bad request),
// and the durable consumer would otherwise get no subscriber here until
// the process restarts.
func (s *Subscription) connClosed(nc *nats.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if nc != s.conn || s.closing {
		return
	}
	s.log.Error("consumer connection closed by the server for good; dialing a new one", zap.Error(nc.LastError()))
	s.wg.Add(1) // under s.mu, before Close can set closing and wait
	go s.redial()
}

// redial dials until a new connection is up and, unless the consumer is
// paused (resume subscribes then), subscribes on it.
func (s *Subscription) redial() {
	defer s.wg.Done()
	wait := 250 * time.Millisecond
	for {
		conn, closed, err := s.dial()
		if err == nil {
			err = waitConnected(s.ctx, conn)
		}
		if err == nil {
			s.mu.Lock()
			if s.closing {
				s.mu.Unlock()
				conn.Close()
				return
			}
			s.useLocked(conn, closed)
			s.subs = nil // they were on the closed connection
			if !s.paused.Load() {
				err = s.subscribeLocked()
			}
			s.mu.Unlock()
			if err == nil {
				s.b.metrics.resubscribed.WithLabelValues(s.spec.Durable).Inc()
				s.log.Info("consumer connection replaced")
				return
			}
		}
		if conn != nil {
			conn.Close()
		}
		s.log.Warn("consumer redial failed; retrying", zap.Error(err), zap.Duration("in", wait))
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// subscribeLocked registers interest in the deliver subject; s.mu is held.
func (s *Subscription) subscribeLocked() error {
	subj := deliverSubject(s.spec)
	for range s.spec.Concurrency {
		sub, err := s.conn.QueueSubscribe(subj, s.spec.Durable, s.deliver)
		if err != nil {
			for _, sub := range s.subs {
				sub.Unsubscribe() //nolint:errcheck // undoing a failed subscribe
			}
			s.subs = nil
			return err
		}
		// A paused or slow consumer must not lose the messages nats.go
		// holds for it: the server never pushes more than MaxAckPending,
		// redeliveries included, well below these limits.
		sub.SetPendingLimits(-1, -1) //nolint:errcheck // only fails on a closed subscription
		s.subs = append(s.subs, sub)
	}
	// Make sure the server knows of the interest before Subscribe returns.
	return s.conn.FlushTimeout(10 * time.Second)
}

func delivery(m *nats.Msg) *Delivery {
	d := &Delivery{Subject: m.Subject, Data: m.Data, Header: make(map[string]string, len(m.Header))}
	for k, v := range m.Header {
		if len(v) > 0 {
			d.Header[k] = v[0]
		}
	}
	if meta, err := m.Metadata(); err == nil {
		d.NumDelivered = meta.NumDelivered
		d.StreamSeq = meta.Sequence.Stream
		d.Published = meta.Timestamp
	}
	return d
}

// deliver handles one message pushed by the server.
func (s *Subscription) deliver(m *nats.Msg) {
	durable := s.spec.Durable
	if s.paused.Load() {
		// Received just before the pause: handed back untouched, to
		// come back once the dependency answers (or to another replica).
		m.NakWithDelay(s.spec.ProbeInterval) //nolint:errcheck // unacked, it comes back after AckWait anyway
		s.b.metrics.handled.WithLabelValues(durable, "paused").Inc()
		return
	}
	if c := m.Header.Get(HeaderRedriveConsumer); c != "" && c != durable {
		m.Ack() //nolint:errcheck // a lost ack redelivers it, and it is skipped again
		s.b.metrics.handled.WithLabelValues(durable, "skipped").Inc()
		return
	}
	d := delivery(m)
	if d.NumDelivered > 1 {
		s.b.metrics.redeliver.WithLabelValues(durable).Inc()
	}
	start := time.Now()
	err := safeHandle(s.ctx, s.handle, d)
	s.b.metrics.duration.WithLabelValues(durable).Observe(time.Since(start).Seconds())
	log := s.log
	switch {
	case err == nil:
		m.Ack() //nolint:errcheck // a lost ack redelivers; handlers are idempotent
		s.b.metrics.handled.WithLabelValues(durable, "ack").Inc()
		if ce := log.Check(zap.DebugLevel, "event handled"); ce != nil {
			// event_id is the ce-id ingest logged when it stored the
			// event: grep it to follow one event through every role.
			ce.Write(zap.String("event_id", d.ID()), zap.String("subject", d.Subject), zap.Uint64("stream_seq", d.StreamSeq))
		}
	case IsPermanent(err):
		if dlqErr := s.b.deadLetter(s.spec, d, err); dlqErr != nil {
			// Not acked: it comes back and the dead-letter publish is retried.
			log.Error("dead-letter publish failed", zap.Error(dlqErr), zap.String("event_id", d.ID()), zap.Uint64("stream_seq", d.StreamSeq))
			m.NakWithDelay(s.spec.RetryDelay(d.NumDelivered)) //nolint:errcheck // unacked, it comes back after AckWait anyway
			return
		}
		log.Error("message moved to dead-letter subject", zap.Error(err), zap.String("event_id", d.ID()), zap.String("subject", d.Subject),
			zap.Uint64("stream_seq", d.StreamSeq), zap.Uint64("delivered", d.NumDelivered), zap.String("dlq", events.DLQSubject(s.spec.Role)))
		m.Ack() //nolint:errcheck // a lost ack redelivers; the dead letter's id de-duplicates it
		s.b.metrics.handled.WithLabelValues(durable, "dead_letter").Inc()
		s.b.metrics.deadLet.WithLabelValues(durable).Inc()
	case s.ctx.Err() != nil:
		// Shutting down: the message comes back to another subscriber,
		// whatever its delivery count; it is not a poison message.
		m.Nak() //nolint:errcheck // unacked, it comes back after AckWait anyway
	default:
		delay := s.spec.RetryDelay(d.NumDelivered)
		if s.spec.Ready != nil {
			rctx, cancel := context.WithTimeout(s.ctx, s.probeTimeout())
			rerr := s.spec.Ready(rctx)
			cancel()
			if rerr != nil {
				s.pause(rerr)
				delay = s.spec.ProbeInterval
			}
		}
		level := zap.WarnLevel
		if d.NumDelivered >= uint64(s.spec.MaxDeliver) {
			level = zap.ErrorLevel
		}
		if ce := log.Check(level, "handler failed; will retry"); ce != nil {
			ce.Write(zap.Error(err), zap.String("event_id", d.ID()), zap.String("subject", d.Subject),
				zap.Uint64("stream_seq", d.StreamSeq), zap.Uint64("delivered", d.NumDelivered), zap.Duration("retry_in", delay))
		}
		m.NakWithDelay(delay) //nolint:errcheck // unacked, it comes back after AckWait anyway
		s.b.metrics.handled.WithLabelValues(durable, "retry").Inc()
	}
}

// probeTimeout bounds one Ready call.
func (s *Subscription) probeTimeout() time.Duration {
	return max(s.spec.ProbeInterval, 5*time.Second)
}

// pause drops the interest in the deliver subject, so the server stops
// pushing messages to this process, and probes Ready until it answers.
func (s *Subscription) pause(cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pauseErr = cause
	if s.paused.Load() || s.closing {
		return
	}
	s.paused.Store(true)
	for _, sub := range s.subs {
		// Drain, not Unsubscribe: the messages nats.go already holds are
		// handed back by deliver rather than left to their AckWait.
		sub.Drain() //nolint:errcheck // a closed subscription has no interest left to drop
	}
	s.subs = nil
	// Once the server has processed the unsubscribes it pushes nothing
	// more here: a round trip before Paused reports the pause (it waits
	// for s.mu), so what is published after it stays with the server.
	if err := s.conn.FlushTimeout(s.probeTimeout()); err != nil {
		s.log.Debug("flush after pausing", zap.Error(err))
	}
	s.b.metrics.paused.WithLabelValues(s.spec.Durable).Set(1)
	s.log.Warn("dependency unavailable; consumer paused until it answers", zap.Error(cause),
		zap.Duration("probe_interval", s.spec.ProbeInterval))
	s.wg.Add(1)
	go s.probe(time.Now())
}

// probe asks Ready every ProbeInterval and resumes once it answers.
func (s *Subscription) probe(since time.Time) {
	defer s.wg.Done()
	t := time.NewTicker(s.spec.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.probeTimeout())
		err := s.spec.Ready(ctx)
		cancel()
		if err == nil {
			err = s.resume(since)
			if err == nil {
				return
			}
		}
		s.mu.Lock()
		s.pauseErr = err
		s.mu.Unlock()
	}
}

// resume subscribes again; it fails only when NATS does, and is then
// tried again at the next probe.
func (s *Subscription) resume(since time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil
	}
	if err := s.subscribeLocked(); err != nil {
		return fmt.Errorf("resubscribe: %w", err)
	}
	s.paused.Store(false)
	s.pauseErr = nil
	s.b.metrics.paused.WithLabelValues(s.spec.Durable).Set(0)
	s.log.Info("dependency answers again; consumer resumed", zap.Duration("paused_for", time.Since(since)))
	return nil
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
			msg.Header.Set(HeaderDLQMsgID, v)
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
