package feedback

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback/api"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// Routes mounts GET /api/feedback/posts and GET /api/feedback/sessions.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.Handle(api.PathPosts, s.api)
	mux.Handle(api.PathSessions, s.api)
}

// Ready reports whether the store answers and the consumers take
// messages: a consumer paused by a store outage stays paused until its own
// probe finds the store back, a moment after Ping does.
func (s *Service) Ready(ctx context.Context) error {
	if err := s.store.Ping(ctx); err != nil {
		return fmt.Errorf("feedback store: %w", err)
	}
	s.mu.Lock()
	r := s.run
	s.mu.Unlock()
	if r != nil {
		for _, sub := range r.subs {
			if err := sub.Paused(); err != nil {
				return fmt.Errorf("feedback: %w", err)
			}
		}
	}
	return nil
}

// storeReady is the consumers' dependency check: while it fails they take
// no messages.
func (s *Service) storeReady(ctx context.Context) error {
	if err := s.store.Ping(ctx); err != nil {
		return fmt.Errorf("feedback store: %w", err)
	}
	return nil
}

// Start creates the streams it reads (KEFU_TUCAO, KEFU_WECHAT) and the
// dead-letter stream if needed, then creates or updates the two durable
// consumers and consumes them until Stop. It does not block; ctx bounds
// only the start-up.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run != nil {
		return ErrStarted
	}
	if err := s.bus.EnsureStreams(ctx, events.StreamTucao, events.StreamWeChat, events.StreamDLQ); err != nil {
		return fmt.Errorf("feedback: %w", err)
	}
	// The consumers live until Stop, not until the start-up context ends.
	life, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel}
	// Each handler waits in its batch, so a batch cannot hold more than
	// Concurrency items: waiting for more would only add the linger.
	timing := batchTiming{
		size:    min(s.cfg.BatchSize, s.cfg.Concurrency),
		linger:  s.cfg.Linger,
		idle:    s.cfg.Idle,
		timeout: s.cfg.WriteTimeout,
	}
	r.posts = newBatcher(KindPost, s.store.UpsertPosts, rejectedBy(store.ErrInvalidPost), timing, s.metrics, s.log)
	r.sessions = newBatcher(KindSession, s.store.RecordSessions, rejectedBy(store.ErrInvalidSessionFact), timing, s.metrics, s.log)

	for _, c := range []struct {
		stream, durable, filter string
		handle                  bus.Handler
	}{
		{events.StreamTucao, DurablePosts, FilterPosts, func(ctx context.Context, d *bus.Delivery) error {
			return s.handlePost(ctx, d, r.posts)
		}},
		{events.StreamWeChat, DurableSessions, FilterSessions, func(ctx context.Context, d *bus.Delivery) error {
			return s.handleSession(ctx, d, r.sessions)
		}},
	} {
		sub, err := s.bus.Subscribe(life, s.spec(c.stream, c.durable, c.filter), c.handle)
		if err != nil {
			r.stop(ctx)
			return fmt.Errorf("feedback: %w", err)
		}
		r.subs = append(r.subs, sub)
	}
	if s.pseudonym != nil {
		r.fill = bus.NewPeriodic(s.cfg.FillInterval, s.fillPseudonyms)
		r.fill.Start(life)
	}
	s.run = r
	s.log.Info("feedback consumers started", zap.Strings("consumers", []string{DurablePosts, DurableSessions}),
		zap.Int("batch_size", timing.size), zap.Duration("linger", s.cfg.Linger), zap.Duration("idle", s.cfg.Idle),
		zap.Bool("pseudonyms", s.pseudonym != nil))
	return nil
}

// fillPseudonyms gives the facts stored without a pseudonym theirs; a
// failure is retried at the next interval, and until then those customers'
// pseudonymous posts stay unlinked, nothing worse.
func (s *Service) fillPseudonyms(ctx context.Context) {
	n, err := s.store.FillPseudonyms(ctx, s.pseudonym, 0)
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Warn("fill session pseudonyms; will retry", zap.Int("customers_filled", n), zap.Error(err))
	case n > 0:
		s.log.Info("filled session pseudonyms", zap.Int("customers", n))
	}
}

func (s *Service) spec(stream, durable, filter string) bus.ConsumerSpec {
	return bus.ConsumerSpec{
		Role:          Role,
		Stream:        stream,
		Durable:       durable,
		FilterSubject: filter,
		MaxAckPending: s.cfg.MaxAckPending,
		AckWait:       s.cfg.AckWait,
		MaxDeliver:    s.cfg.MaxDeliver,
		Backoff:       s.cfg.Backoff,
		MaxBackoff:    s.cfg.MaxBackoff,
		Concurrency:   s.cfg.Concurrency,
		Ready:         s.storeReady,
		ProbeInterval: s.cfg.ProbeInterval,
	}
}

// Stop stops taking messages, waits for the handlers in flight, writes the
// batches they are in and stops. Messages not acknowledged by then are
// redelivered to the next consumer of the durable consumers, which stay.
// When ctx ends first the writes in progress are cancelled.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	r := s.run
	s.run = nil
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	return r.stop(ctx)
}

func (r *running) stop(ctx context.Context) error {
	subsClosed := make(chan error, 1)
	go func() {
		var errs []error
		for _, sub := range r.subs {
			errs = append(errs, sub.Close())
		}
		subsClosed <- errors.Join(errs...)
	}()
	var errs []error
	select {
	case err := <-subsClosed:
		errs = append(errs, err)
	case <-ctx.Done():
		// Handlers wait for their batch: cancelling the writes ends them.
		r.posts.abort()
		r.sessions.abort()
		errs = append(errs, fmt.Errorf("feedback stop: %w", ctx.Err()), <-subsClosed)
	}
	errs = append(errs, r.posts.stop(ctx), r.sessions.stop(ctx))
	if r.fill != nil {
		errs = append(errs, r.fill.Stop(ctx))
	}
	r.cancel()
	return errors.Join(errs...)
}

// handlePost stores a post version: kefu.tucao.post.created and .updated
// carry the same event.
func (s *Service) handlePost(ctx context.Context, d *bus.Delivery, b *batcher[events.FeedbackPost]) error {
	switch d.Subject {
	case events.SubjectPostCreated, events.SubjectPostUpdated:
	default:
		s.log.Debug("skipping unknown subject", zap.String("subject", d.Subject), zap.Uint64("stream_seq", d.StreamSeq))
		return nil
	}
	post, err := events.Decode[events.FeedbackPost](d.Data)
	if err != nil {
		return bus.Permanent(fmt.Errorf("%s: %w", d.Subject, err))
	}
	return b.submit(ctx, post)
}

// handleSession stores the facts of created and closed sessions.
func (s *Service) handleSession(ctx context.Context, d *bus.Delivery, b *batcher[store.SessionFact]) error {
	var fact store.SessionFact
	switch d.Subject {
	case events.SubjectSessionCreated:
		e, err := events.Decode[events.SessionCreated](d.Data)
		if err != nil {
			return bus.Permanent(fmt.Errorf("%s: %w", d.Subject, err))
		}
		fact = store.SessionCreatedFact(e)
	case events.SubjectSessionClosed:
		e, err := events.Decode[events.SessionClosed](d.Data)
		if err != nil {
			return bus.Permanent(fmt.Errorf("%s: %w", d.Subject, err))
		}
		fact = store.SessionClosedFact(e)
	default:
		// kf_switch_session, see the package documentation.
		return nil
	}
	if s.pseudonym != nil {
		fact.Pseudonym = s.pseudonym(fact.OpenID)
	}
	return b.submit(ctx, fact)
}
