// Package feedback is kefu's feedback role: it consumes Tucao posts
// (kefu.tucao.post.>) and 多客服 session events (kefu.wechat.kf.session.>)
// from JetStream through two durable consumers, writes them in batches to
// the feedback store (SQLite or PostgreSQL, package store), and serves them
// over HTTP (package api): posts with the session each is linked to, and
// closed sessions with their posts.
//
// # Delivery
//
// A message is acknowledged only after the transaction holding its row has
// committed. Handlers hand their decoded item to a batcher of their kind
// and wait: the batcher writes a batch when it holds BatchSize items (or
// as many as the consumer handles at once, Concurrency), when no item has
// come for Idle, or Linger after its first item. One write runs at a time
// per kind; while it commits, the next batch gathers and is written as soon
// as the first one is done, so batches grow with the load. A store failure
// fails every message of the batch, which
// JetStream redelivers after the consumer's backoff, for as long as the
// store fails: a store that is away never sends a message to the
// dead-letter subject. While the store's Ping fails too, both consumers
// stop taking messages (Ready reports it) and resume when it answers. The
// store's writes are idempotent, so a redelivered message never makes a
// second row. When the
// store rejects a batch as invalid (store.ErrInvalidPost,
// store.ErrInvalidSessionFact, or a database error about the data itself,
// see store.IsDataError), the batch is split until the rejected items
// are alone: those go to kefu.dlq.feedback at once, the others are stored.
// A body that is not JSON of the expected event goes to the dead-letter
// subject without reaching the store.
//
// # Sessions
//
// kf_create_session and kf_close_session are stored as session facts.
// kf_switch_session is acknowledged and not stored: a session is linked to
// a post through its close, which names the agent who ended it, and a
// transfer changes neither the session's start nor its end. Subjects of
// either filter that kefu does not know yet are acknowledged and skipped,
// so a newer publisher never fills the dead-letter subject.
//
// # Pseudonyms
//
// The feedback link logs customers in to Tucao under a pseudonym, a keyed
// HMAC of their openid (package feedbacklink), so their posts carry it
// instead of the openid. With Deps.Pseudonym (the key is known) every fact
// is stored with the customer's pseudonym, and the facts stored without one
// — by an older kefu, or while the key was not configured — are filled at
// Start and every FillInterval after, in the background. Posts then link
// to sessions by openid (posts from before) or by pseudonym, and
// GET /api/feedback/posts?openid= finds both. Without it posts link by
// openid only.
package feedback

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback/api"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// Role names the service's dead-letter subject, kefu.dlq.feedback.
const Role = "feedback"

// Durable consumers of the service.
const (
	DurablePosts    = "feedback-posts"    // KEFU_TUCAO, kefu.tucao.post.>
	DurableSessions = "feedback-sessions" // KEFU_WECHAT, kefu.wechat.kf.session.>
)

// Subjects the consumers filter on.
const (
	FilterPosts    = "kefu.tucao.post.>"
	FilterSessions = events.SubjectSessionAll
)

// Kinds of items, the kind label of the metrics.
const (
	KindPost    = "post"
	KindSession = "session"
)

// Config tunes the batching and the two durable consumers.
type Config struct {
	// BatchSize is the most items one transaction writes (default 200).
	BatchSize int
	// Linger is how long a batch waits for more items after its first
	// one (default 20ms): the latency a message pays when traffic is low.
	Linger time.Duration
	// Idle writes a batch early when no item has come for this long
	// (default 2ms; negative: never): the handlers a commit releases
	// refill the next batch in a burst, and a quiet pipe should not wait
	// out the whole Linger.
	Idle time.Duration
	// WriteTimeout bounds the writing of one batch, the splitting of a
	// rejected batch included (default 10s).
	WriteTimeout time.Duration
	// Concurrency is how many messages each consumer handles at once
	// (default 64). A handler waits for its batch, so this is also the
	// most items a batch of one kind can gather; a batch is written as
	// soon as it holds that many.
	Concurrency int
	// MaxAckPending bounds each consumer's unacknowledged messages
	// (default 2×Concurrency): enough to refill the handlers while a batch
	// commits, few enough that no message waits in a local buffer until
	// its AckWait runs out.
	MaxAckPending int
	// AckWait is how long JetStream waits for an ack before redelivering
	// (default 30s); it must exceed Linger + 2×WriteTimeout: an item may
	// wait for the write before its own.
	AckWait time.Duration
	// MaxDeliver is the delivery from which a message that still cannot
	// be written is logged as an error (default 5). It is retried
	// regardless: only a message the store rejects goes to
	// kefu.dlq.feedback.
	MaxDeliver int
	// Backoff is the delay before each redelivery after a failed write;
	// it doubles after its last value up to MaxBackoff (default: the
	// bus's, 1s, 2s, 4s, …).
	Backoff []time.Duration
	// MaxBackoff caps the delay between two tries of a message
	// (KEFU_RETRY_MAX_BACKOFF, default 2m).
	MaxBackoff time.Duration
	// ProbeInterval is how often the store is pinged while the consumers
	// are paused because it does not answer (default 1s).
	ProbeInterval time.Duration
	// FillInterval is how often facts stored without a pseudonym are
	// looked for again after the fill at Start (default 10m): another
	// replica without the key, or an older kefu during a rolling upgrade,
	// may still store some. Only with Deps.Pseudonym.
	FillInterval time.Duration
}

func (c *Config) setDefaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 200
	}
	if c.Linger <= 0 {
		c.Linger = 20 * time.Millisecond
	}
	switch {
	case c.Idle == 0:
		c.Idle = 2 * time.Millisecond
	case c.Idle < 0:
		c.Idle = 0
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 2 * c.Concurrency
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if c.FillInterval <= 0 {
		c.FillInterval = 10 * time.Minute
	}
}

// Validate reports a configuration that would lose acks or stall.
func (c Config) Validate() error {
	switch {
	case c.AckWait <= c.Linger+2*c.WriteTimeout:
		return fmt.Errorf("feedback: AckWait %s must exceed Linger + 2×WriteTimeout (%s), or JetStream redelivers messages whose batch is still being written",
			c.AckWait, c.Linger+2*c.WriteTimeout)
	case c.MaxAckPending < c.Concurrency:
		return fmt.Errorf("feedback: MaxAckPending %d is below Concurrency %d: handlers would sit idle", c.MaxAckPending, c.Concurrency)
	}
	return nil
}

// Deps are the service's collaborators. The service does not close the
// store or the bus: whoever opened them does.
type Deps struct {
	Bus   *bus.Bus
	Store store.Store
	// Pseudonym is the customer's pseudonym on Tucao (feedbacklink.Keys
	// Pseudonym, under the same secret as the notifier's); nil when the
	// key is not configured: posts are then linked by openid only.
	Pseudonym  func(openid string) string
	Logger     *zap.Logger           // optional
	Registerer prometheus.Registerer // optional
}

// Service consumes feedback events into the store and serves the queries.
type Service struct {
	cfg       Config
	bus       *bus.Bus
	store     store.Store
	pseudonym func(string) string // nil: no key
	log       *zap.Logger
	metrics   *metrics
	api       http.Handler

	mu  sync.Mutex
	run *running
}

// running is what one Start set going and Stop ends.
type running struct {
	subs     []*bus.Subscription
	posts    *batcher[events.FeedbackPost]
	sessions *batcher[store.SessionFact]
	fill     *bus.Periodic // nil without a pseudonym key
	cancel   context.CancelFunc
}

// ErrStarted is returned by Start on a running service.
var ErrStarted = errors.New("feedback: already started")

// New checks the configuration and builds the service; Start begins
// consuming.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Bus == nil:
		return nil, errors.New("feedback: a Bus is required")
	case deps.Store == nil:
		return nil, errors.New("feedback: a Store is required")
	}
	log := deps.Logger
	if log == nil {
		log = zap.NewNop()
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	return &Service{
		cfg: cfg, bus: deps.Bus, store: deps.Store, pseudonym: deps.Pseudonym, log: log, metrics: m,
		api: api.New(deps.Store, log.Named("api"), api.WithPseudonym(deps.Pseudonym)),
	}, nil
}

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

type metrics struct {
	batches   *prometheus.CounterVec
	batchSize *prometheus.HistogramVec
	items     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_feedback_batches_total",
			Help: "Batches written to the feedback store, by kind (post, session) and outcome (ok; failed: redelivered; invalid: split to dead-letter the rejected items).",
		}, []string{"kind", "outcome"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kefu_feedback_batch_size",
			Help:    "Items per batch written to the feedback store.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}, []string{"kind"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kefu_feedback_items_total",
			Help: "Items committed to the feedback store, by kind (post, session).",
		}, []string{"kind"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.batches, err = register(reg, m.batches); err != nil {
		return nil, err
	}
	if m.batchSize, err = register(reg, m.batchSize); err != nil {
		return nil, err
	}
	if m.items, err = register(reg, m.items); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name: a service rebuilt in the same process (a restart) keeps
// counting in the same series.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("feedback metrics: %w", err)
}
