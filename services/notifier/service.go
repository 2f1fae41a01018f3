package notifier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/internal/sendonce"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// Sender is the part of the WeChat client the notifier uses;
// *wechat.Client implements it.
type Sender interface {
	// SendText sends a customer-service text message (message/custom/send),
	// in an agent's name when asKfAccount is set.
	SendText(ctx context.Context, openid, content, asKfAccount string) error
	// GetKfList lists the agents, for their nicknames.
	GetKfList(ctx context.Context) ([]wechat.KfInfo, error)
}

// Deps are the service's collaborators.
type Deps struct {
	Bus        *bus.Bus
	Sender     Sender
	Logger     *zap.Logger           // optional
	Registerer prometheus.Registerer // optional
	// Now is the clock of every decision (event age, throttling, markers,
	// link expiry); default time.Now.
	Now func() time.Time
	// Suppress, when set, can hold back a message of kind to openid that
	// another part of kefu knows is wrong to send (the customer left the
	// queue, or kefu closed the session itself and said goodbye already).
	// An error (the state could not be read) retries the event later:
	// announcing without knowing could say goodbye a second time.
	Suppress func(ctx context.Context, kind, openid string) (bool, error)
	// Links makes the feedback links; default: built from the Config (see
	// LinksConfig), as kefu builds the one it gives queue care too.
	Links *feedbacklink.Links
	// Customers is the customer read model, where the notifier records
	// and reads where each customer's session stands; default: opened on
	// the Bus at Start.
	Customers *customers.Store
}

// Service is the notifier.
type Service struct {
	cfg       Config
	bus       *bus.Bus
	sender    Sender
	log       *zap.Logger
	now       func() time.Time
	metrics   *metrics
	templates map[string]*messageTemplate
	// waitNext is the text for the first in line while the wait template
	// is the default one; nil otherwise.
	waitNext  *messageTemplate
	names     *nicknames
	limiter   *rate.Limiter // nil: no limit
	feedback  *feedbacklink.Links
	links     *feedbacklink.Signer // feedback's: nil when links go straight to Tucao
	csp       string
	suppress  func(ctx context.Context, kind, openid string) (bool, error)
	customers *customers.Store

	ledger *sendonce.Ledger // set by Start

	mu         sync.Mutex
	kv         jetstream.KeyValue
	subs       []*bus.Subscription
	hardCtx    context.Context
	hardCancel context.CancelFunc
	stopping   bool           // Stop began: new deliveries are handed back
	handling   sync.WaitGroup // deliveries being handled
}

// New checks the configuration and builds the service; Start begins
// consuming.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Bus == nil {
		return nil, errors.New("notifier: a Bus is required")
	}
	if deps.Sender == nil {
		return nil, errors.New("notifier: a Sender (the WeChat client) is required")
	}
	s := &Service{
		cfg: cfg, bus: deps.Bus, sender: deps.Sender, log: deps.Logger, now: deps.Now, suppress: deps.Suppress, customers: deps.Customers,
		metrics:   newMetrics(deps.Registerer),
		templates: map[string]*messageTemplate{},
		csp:       pageCSP(cfg.TucaoURL),
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	for kind, text := range cfg.Templates.byKind() {
		t, err := parseTemplate(kind, text)
		if err != nil {
			return nil, fmt.Errorf("notifier: %w", err)
		}
		s.templates[kind] = t
	}
	if w := cfg.Templates.WaitEstimated; w == "" || w == DefaultWaitEstimated {
		next, err := parseTemplate(events.NotifyWaitEstimated, DefaultWaitEstimatedNext)
		if err != nil {
			return nil, fmt.Errorf("notifier: %w", err)
		}
		s.waitNext = next
	}
	s.names = newNicknames(s.sender, cfg.NicknameTTL, s.now, s.log)
	if cfg.RateLimit > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateBurst)
	}
	s.feedback = deps.Links
	if s.feedback == nil {
		links, err := feedbacklink.NewLinks(LinksConfig(cfg, s.now))
		if err != nil {
			return nil, fmt.Errorf("notifier: %w", err)
		}
		s.feedback = links
	}
	s.links = s.feedback.Signer()
	return s, nil
}

// ErrStarted is returned by Start on a running service.
var ErrStarted = errors.New("notifier: already started")

// Start creates the streams it reads and writes (KEFU_WECHAT, KEFU_KF,
// KEFU_NOTIFY and KEFU_DLQ for dead letters) and the kefu_notified bucket
// if needed, and subscribes to the two durable consumers. It does not block.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs != nil {
		return ErrStarted
	}
	if err := s.bus.EnsureStreams(ctx, events.StreamNotify, events.StreamWeChat, events.StreamKF, events.StreamDLQ); err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	kv, err := s.bus.KeyValue(ctx, bus.BucketNotified)
	if err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	s.kv = kv
	if s.customers == nil {
		if s.customers, err = customers.Open(ctx, s.bus); err != nil {
			return fmt.Errorf("notifier: %w", err)
		}
	}
	if s.ledger == nil {
		// Built once: it remembers across a restart of the consumers
		// which outcomes are still to be recorded.
		s.ledger, err = sendonce.New(sendonce.Config{Bus: s.bus, KV: kv, Sender: s.sender, Source: "kefu/notifier",
			Owner: s.cfg.Instance, Now: s.now, Log: s.log, RecordTimeout: s.cfg.RecordTimeout,
			StaleAfter: s.cfg.staleAfter(), Sent: s.observeSent})
		if err != nil {
			return fmt.Errorf("notifier: %w", err)
		}
	}
	s.stopping = false
	// The consumers live until Stop closes them, not until the start-up
	// context ends. hardCtx bounds the handlers: it is cancelled only when
	// Stop runs out of time.
	life := context.WithoutCancel(ctx)
	s.hardCtx, s.hardCancel = context.WithCancel(life)
	for _, c := range []struct {
		spec   bus.ConsumerSpec
		handle bus.Handler
	}{
		{s.spec(events.StreamWeChat, DurableSessions, events.SubjectSessionAll), s.guard(s.handleSession)},
		{s.spec(events.StreamKF, DurableWait, events.SubjectWaitEstimated), s.guard(s.handleWait)},
	} {
		sub, err := s.bus.Subscribe(life, c.spec, c.handle)
		if err != nil {
			for _, started := range s.subs {
				started.Close()
			}
			s.subs = nil
			s.hardCancel()
			return fmt.Errorf("notifier: %w", err)
		}
		s.subs = append(s.subs, sub)
	}
	s.log.Info("notifier started", zap.String("instance", s.cfg.Instance),
		zap.Bool("feedback_login", s.links != nil), zap.Float64("rate_limit", s.cfg.RateLimit))
	return nil
}

func (s *Service) spec(stream, durable, filter string) bus.ConsumerSpec {
	return bus.ConsumerSpec{
		Role: Role, Stream: stream, Durable: durable, FilterSubject: filter,
		// A new consumer starts at the end of the stream: replaying weeks
		// of session events would message customers about the past.
		DeliverNew:    true,
		MaxAckPending: s.cfg.MaxAckPending,
		AckWait:       s.cfg.AckWait,
		MaxDeliver:    s.cfg.MaxDeliver,
		Backoff:       s.cfg.Backoff,
		Concurrency:   s.cfg.Concurrency,
	}
}

// Stop stops taking events and waits for the ones being handled: a send
// in progress completes, is recorded and acknowledged. Events delivered from
// then on are handed back at once (a delayed redelivery) and go to another
// process, or to this one after a restart, which sends each exactly once.
// When ctx ends first, sends in progress are cancelled; their outcome is
// unknown and recorded as failed (see the package doc).
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	subs, cancel := s.subs, s.hardCancel
	s.subs = nil
	s.stopping = true
	s.mu.Unlock()
	if subs == nil {
		return nil
	}
	// Handlers finish before the subscriptions close, so that their acks
	// still reach JetStream: a closing subscriber drops them.
	idle := make(chan struct{})
	go func() {
		s.handling.Wait()
		close(idle)
	}()
	var stopErr error
	select {
	case <-idle:
	case <-ctx.Done():
		stopErr = fmt.Errorf("notifier stop: %w", ctx.Err())
		cancel()
		<-idle
	}
	var errs []error
	for _, sub := range subs {
		errs = append(errs, sub.Close())
	}
	cancel()
	return errors.Join(stopErr, errors.Join(errs...))
}

// errStopping hands a delivery back while the service stops.
var errStopping = errors.New("notifier stopping: handed back for redelivery")

// guard counts the deliveries being handled, so Stop can wait for them,
// and hands new ones back once Stop began.
func (s *Service) guard(handle bus.Handler) bus.Handler {
	return func(ctx context.Context, d *bus.Delivery) error {
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			if d.NumDelivered >= uint64(s.cfg.MaxDeliver) {
				// An error now would dead-letter the event; holding it
				// until the subscription closes leaves it unacknowledged,
				// and JetStream redelivers it after AckWait.
				<-ctx.Done()
			}
			return errStopping
		}
		s.handling.Add(1)
		s.mu.Unlock()
		defer s.handling.Done()
		return handle(ctx, d)
	}
}

// handlerContext bounds one event's handling. It is not derived from the
// delivery's context, which the subscriber cancels when it closes: a send
// that started is allowed to finish and be recorded.
func (s *Service) handlerContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.hardCtx, s.cfg.SendTimeout)
}
