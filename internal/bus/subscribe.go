package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/pkg/events"
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
		_, err := b.js().CreateOrUpdatePushConsumer(ctx, spec.Stream, ConsumerConfig(spec))
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
