package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Subscription is a running consumer.
type Subscription struct {
	b      *Bus
	spec   ConsumerSpec
	handle Handler
	log    *zap.Logger
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts the subscription's goroutines (the context watcher, a
	// probe, a restart); handlers counts the messages being handled.
	wg       sync.WaitGroup
	handlers sync.WaitGroup
	// halted is set while the subscription takes no messages (pausing
	// or paused): what arrives then is handed back unhandled.
	halted atomic.Bool

	mu sync.Mutex
	// ccs are the running Consumes (Concurrency of them), on the bus's
	// connection; none while paused or closed.
	ccs      []jetstream.ConsumeContext
	closing  bool
	pauseErr error // why the subscription is paused; nil when it is not

	// unhook stops following the bus's redials.
	unhook func()

	closeOnce sync.Once
	closeErr  error
}

// Close stops taking messages, lets the handlers finish the messages
// already received — they ack as usual — and returns once they have.
// Unacknowledged messages are redelivered to the next subscriber of the
// durable consumer; the consumer itself stays.
//
// A handler still running AckWait+5s after Close began is asked to stop
// (its context ends): its message is handed back and comes again.
func (s *Subscription) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		ccs := s.ccs
		s.ccs = nil
		s.mu.Unlock()
		s.unhook()
		s.b.unstall(s.spec.Durable)
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			drain(ccs)
			s.handlers.Wait()
		}()
		select {
		case <-drained:
		case <-time.After(s.spec.AckWait + 5*time.Second):
			s.closeErr = fmt.Errorf("consumer %s: handlers still running %s after close; their messages come again", s.spec.Durable, s.spec.AckWait+5*time.Second)
		}
		s.cancel()
		<-drained
		s.wg.Wait()
		s.b.metrics.paused.WithLabelValues(s.spec.Durable).Set(0)
	})
	return s.closeErr
}

// Paused returns why the subscription takes no messages right now (its
// dependency's Ready error), or nil while it consumes.
func (s *Subscription) Paused() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pauseErr == nil {
		return nil
	}
	return fmt.Errorf("consumer %s paused: %w", s.spec.Durable, s.pauseErr)
}

// Subscribe creates (or updates) spec's durable pull consumer and handles
// its messages until ctx ends or the subscription is closed.
//
// It consumes on the bus's own connection with Concurrency pulls of the
// jetstream API's Consume, each handling its messages one at a time.
// Pausing stops them, so the server keeps what is published meanwhile; a
// redial of the bus's connection starts them again on the new one.
func (b *Bus) Subscribe(ctx context.Context, spec ConsumerSpec, handle Handler) (*Subscription, error) {
	if spec.MaxBackoff <= 0 {
		spec.MaxBackoff = b.cfg.RetryMaxBackoff // KEFU_RETRY_MAX_BACKOFF for every consumer
	}
	spec.setDefaults()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	var cons jetstream.Consumer
	if err := retryStartup(ctx, func(ctx context.Context) (err error) {
		cons, err = b.ensureConsumer(ctx, spec)
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
	b.metrics.paused.WithLabelValues(spec.Durable).Set(0)
	b.metrics.initConsumer(spec.Durable)
	s.mu.Lock()
	err := s.consumeLocked(cons)
	s.mu.Unlock()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe %s: %w", spec.Durable, err)
	}
	// A redial of the bus's connection ends the Consume bound to the old
	// one; start it again on the new one.
	s.unhook = b.OnRedial(func() { s.restart(nil, errors.New("nats connection replaced")) })
	// The caller's context ending closes the subscription, as Close does.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		go s.Close() //nolint:errcheck // Close waits for this goroutine; its error is the caller's to see
	}()
	return s, nil
}

// consumeLocked starts consuming cons (the consumer looked up anew when
// nil); s.mu is held.
func (s *Subscription) consumeLocked(cons jetstream.Consumer) error {
	if cons == nil {
		ctx, cancel := context.WithTimeout(s.ctx, s.probeTimeout())
		defer cancel()
		var err error
		if cons, err = s.b.ensureConsumer(ctx, s.spec); err != nil {
			return err
		}
	}
	// Each pull asks for up to pullBatch × MaxAckPending messages. The
	// server never has more than MaxAckPending unacknowledged, whatever
	// the pulls ask for, and hands them out to the waiting pulls in turn,
	// one message each; so a large batch holds no more messages, it only
	// means fewer pull requests (one per half batch), which costs less
	// than pull requests sized to MaxAckPending (measured in doc.go).
	ccs := make([]jetstream.ConsumeContext, 0, s.spec.Concurrency)
	for range s.spec.Concurrency {
		cc, err := cons.Consume(s.receive,
			jetstream.PullMaxMessages(pullBatch*s.spec.MaxAckPending),
			// Heartbeats missed for twice this are what tells a pull that
			// its consumer went away without a word (its stream deleted).
			jetstream.PullHeartbeat(consumeHeartbeat),
			jetstream.ConsumeErrHandler(func(c jetstream.ConsumeContext, err error) { s.consumeError(c, err) }))
		if err != nil {
			stop(ccs)
			return err
		}
		ccs = append(ccs, cc)
	}
	s.ccs = ccs
	return nil
}

// drain ends ccs once the messages they hold are handled, and waits.
func drain(ccs []jetstream.ConsumeContext) {
	for _, cc := range ccs {
		cc.Drain()
	}
	for _, cc := range ccs {
		<-cc.Closed()
	}
}

// stop ends ccs at once; what they hold comes again after AckWait.
func stop(ccs []jetstream.ConsumeContext) {
	for _, cc := range ccs {
		cc.Stop()
	}
}

// consumeHeartbeat is the idle heartbeat a pull asks the server for.
const consumeHeartbeat = 5 * time.Second

// pullBatch is how many times MaxAckPending one pull request asks for.
const pullBatch = 8

// consumeError is told of what goes wrong while consuming. Most of it
// heals by itself (a leader change, a reconnect: Consume pulls again); a
// consumer deleted under it ends the Consume, so it is created and started
// again. Missed heartbeats may mean the consumer went away unannounced
// (its stream was deleted), so they are followed by a look at it.
func (s *Subscription) consumeError(cc jetstream.ConsumeContext, err error) {
	switch {
	case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrBadRequest):
		s.log.Error("consumer gone from the server; creating it again", zap.Error(err))
		s.restart(cc, err)
	case errors.Is(err, jetstream.ErrConnectionClosed):
		// The bus redials and OnRedial restarts.
	case errors.Is(err, jetstream.ErrNoHeartbeat):
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closing {
			s.wg.Add(1) // under s.mu, before Close can set closing and wait
			go s.lookAtConsumer(cc, err)
		}
	default:
		s.log.Debug("consume", zap.Error(err))
	}
}

// lookAtConsumer restarts the subscription if its consumer or stream is
// gone; any other answer (a timeout while NATS is away) leaves it be.
func (s *Subscription) lookAtConsumer(cc jetstream.ConsumeContext, cause error) {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(s.ctx, s.probeTimeout())
	defer cancel()
	_, err := s.b.ConsumerInfo(ctx, s.spec.Stream, s.spec.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		s.log.Error("consumer gone from the server; creating it again", zap.Error(err), zap.NamedError("noticed", cause))
		s.restart(cc, err)
	}
}

// restart starts consuming again once the Consume old ended (any, when
// old is nil), retrying until it works, the subscription is paused (resume
// starts it then) or it closes. Until it works the bus is not ready.
func (s *Subscription) restart(old jetstream.ConsumeContext, cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.halted.Load() || (old != nil && !slices.Contains(s.ccs, old)) {
		return
	}
	stop(s.ccs)
	s.ccs = nil
	s.b.stall(s.spec.Durable, cause)
	s.wg.Add(1) // under s.mu, before Close can set closing and wait
	go s.restartLoop()
}

func (s *Subscription) restartLoop() {
	defer s.wg.Done()
	wait := 250 * time.Millisecond
	for {
		s.mu.Lock()
		if s.closing || s.halted.Load() || s.ccs != nil {
			s.mu.Unlock()
			s.b.unstall(s.spec.Durable)
			return
		}
		err := s.consumeLocked(nil)
		s.mu.Unlock()
		if err == nil {
			s.b.unstall(s.spec.Durable)
			s.b.metrics.resubscribed.WithLabelValues(s.spec.Durable).Inc()
			s.log.Info("consuming again")
			return
		}
		s.b.stall(s.spec.Durable, err)
		s.log.Warn("consumer restart failed; retrying", zap.Error(err), zap.Duration("in", wait))
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// receive handles one message of a Consume; each Consume hands its
// messages over one at a time.
func (s *Subscription) receive(m jetstream.Msg) {
	s.handlers.Add(1)
	defer s.handlers.Done()
	s.deliver(m)
}

// handBack returns a message received while pausing, untouched, to come
// back once the dependency answers (or to another replica).
func (s *Subscription) handBack(m jetstream.Msg) {
	m.NakWithDelay(s.spec.ProbeInterval) //nolint:errcheck // unacked, it comes back after AckWait anyway
	s.b.metrics.handled.WithLabelValues(s.spec.Durable, "paused").Inc()
}
