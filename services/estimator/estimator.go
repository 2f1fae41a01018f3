// Package estimator watches the 多客服 queue and tells every waiting
// customer's place and expected wait. One replica at a time (a lease in
// kefu_locks) polls getwaitcase, getonlinekflist and getsessionlist every
// KEFU_QUEUE_POLL_INTERVAL, feeds the snapshot and the 多客服 session
// events to the wait-time model (internal/waitmodel, which does no I/O;
// this package is the service around it), and publishes a
// QueueSnapshot, a WaitEstimated for each customer who entered the queue or
// whose estimate changed materially, and a SessionAbandoned for each
// customer who left without being served. Every replica serves the latest
// queue at GET /api/kf/queue.
//
// # Every customer, from the join
//
// getwaitcase lists only the 100 earliest cases. Ingest publishes
// kefu.wechat.kf.queue.joined for every message it transfers to 多客服;
// the estimator reads those joins with the session events, in order, on
// one consumer (estimator-sessions, kefu.wechat.kf.>) and keeps the
// customers not listed yet in join order (waitmodel.Members; saved in
// kefu_state under members.<appid> with the model). Each poll places them
// behind the listed ones (WaitEstimated.position_inferred, a band
// calibrated on such places), so the 101st customer and every one behind
// gets an estimate and the notifier's message. A join of a customer who is
// not waiting or served yet is estimated at once, from the last snapshot
// and the joins since, without an API call; later polls refine it under
// the material-change rule. A member leaves on their session, when queue
// care reports they asked to leave (SessionAbandoned, reason left, on the
// estimator-left consumer), or when a poll proves them gone (someone who
// joined after them is listed, or everyone is listed): then, as for a
// listed case, the abandonment is concluded after the grace, and only
// when the session consumer has applied every stored event, so a session
// still on its way is never taken for an abandonment. A session the
// snapshot shows also explains a vanished case.
//
// The model's state (learned service and abandonment rates, calibration)
// is saved to the kefu_state bucket after every poll, so a restart or a
// takeover by another replica continues with what was learned. The session
// events reach only the lease holder: its durable consumer is open while it
// holds the lease.
//
// The lease is renewed throughout a poll, however long the WeChat calls
// take, and every write to kefu_state is fenced by it (bus.FencedKV): a new
// holder loads the state and writes it back at once, after which nothing a
// paused former holder writes can land. A holder that finds its lease lost
// stops, closes the session consumer and says so in its log.
package estimator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/waitmodel"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// QueueAPI is the part of the WeChat client the estimator polls.
type QueueAPI interface {
	GetWaitCase(ctx context.Context) (wechat.WaitCases, error)
	GetOnlineKfList(ctx context.Context) ([]wechat.OnlineKf, error)
	GetSessionList(ctx context.Context, kfAccount string) ([]wechat.SessionItem, error)
}

// Config of the estimator.
type Config struct {
	AppID string
	// PollInterval is KEFU_QUEUE_POLL_INTERVAL (default 15s).
	PollInterval time.Duration
	// Holder names this process in the lease (unique per process).
	Holder string
	// LeaseTTL: another replica takes over this long after the holder
	// stops renewing (default 3 × PollInterval, at least 15s).
	LeaseTTL time.Duration
	// An estimate is published again when it moved by at least
	// NotifyMinChange and NotifyMinRatio of the previous one (default 2m, 30 %).
	NotifyMinChange time.Duration
	NotifyMinRatio  float64
	// Model configures the wait-time model.
	Model waitmodel.Config
	// MaxMembers bounds the customers kept from joins beyond the listed
	// ones (default waitmodel.DefaultMaxMembers).
	MaxMembers int
}

func (c *Config) setDefaults() {
	c.PollInterval = config.PositiveOr(c.PollInterval, 15*time.Second)
	c.LeaseTTL = config.PositiveOr(c.LeaseTTL, max(3*c.PollInterval, 15*time.Second))
	c.NotifyMinChange = config.PositiveOr(c.NotifyMinChange, 2*time.Minute)
	c.NotifyMinRatio = config.PositiveOr(c.NotifyMinRatio, 0.3)
	if c.Holder == "" {
		c.Holder = fmt.Sprintf("estimator-%d", time.Now().UnixNano())
	}
}

// Validate names what is missing.
func (c Config) Validate() error {
	if c.AppID == "" {
		return errors.New("estimator: AppID (KEFU_WECHAT_APPID) is required")
	}
	return nil
}

// Deps are the service's collaborators.
type Deps struct {
	Bus *bus.Bus
	API QueueAPI
	// Left reports customers who asked to leave the queue but whose case
	// WeChat still lists (it cannot be closed before an agent accepts it).
	// They are counted as abandoned once and left out of the queue.
	Left       func(ctx context.Context, openid string) bool
	Logger     *zap.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Service is the estimator.
type Service struct {
	cfg    Config
	bus    *bus.Bus
	api    QueueAPI
	leftFn func(ctx context.Context, openid string) bool
	log    *zap.Logger
	now    func() time.Time
	m      *metrics
	loop   *bus.Periodic
	state  jetstream.KeyValue
	lease  *bus.Lease
	// fenced writes kefu_state under the lease; tenure is the lease fence
	// the model was loaded (and claimed) under.
	fenced *bus.FencedKV
	tenure uint64

	pollMu    sync.Mutex // one poll at a time (the loop, tests, an operator)
	mu        sync.Mutex // guards model, members, buf and published
	model     *waitmodel.Estimator
	members   *waitmodel.Members // customers seen joining, not listed yet
	buf       []waitmodel.WaitingCase
	published map[string]notified // openid → last WaitEstimated
	sessions  *bus.Subscription   // open while holding the lease
	left      *bus.Subscription   // SessionAbandoned(left), open with sessions
}

type notified struct {
	wait  time.Duration
	since time.Time
}

// New checks the configuration and builds the service.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Bus == nil || deps.API == nil {
		return nil, errors.New("estimator: Bus and API are required")
	}
	model, err := waitmodel.New(cfg.Model)
	if err != nil {
		return nil, fmt.Errorf("estimator: %w", err)
	}
	s := &Service{cfg: cfg, bus: deps.Bus, api: deps.API, leftFn: deps.Left, log: deps.Logger, now: deps.Now, m: newMetrics(deps.Registerer),
		model: model, members: &waitmodel.Members{Max: cfg.MaxMembers}, published: map[string]notified{}}
	s.loop = bus.NewPeriodic(cfg.PollInterval, func(ctx context.Context) {
		if err := s.PollOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("queue poll failed; will retry next interval", zap.Error(err))
		}
	})
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

func (s *Service) stateKey() string   { return "estimator." + events.Token(s.cfg.AppID) }
func (s *Service) membersKey() string { return "members." + events.Token(s.cfg.AppID) }
func (s *Service) queueKey() string   { return "queue." + events.Token(s.cfg.AppID) }

// Start creates the streams and buckets and starts polling.
func (s *Service) Start(ctx context.Context) error {
	if err := s.bus.EnsureStreams(ctx, events.StreamKF, events.StreamWeChat, events.StreamDLQ); err != nil {
		return err
	}
	var err error
	if s.state, err = s.bus.KeyValue(ctx, bus.BucketState); err != nil {
		return err
	}
	locks, err := s.bus.KeyValue(ctx, bus.BucketLocks)
	if err != nil {
		return err
	}
	s.lease = bus.NewLease(locks, "estimator-"+events.Token(s.cfg.AppID), s.cfg.Holder, s.cfg.LeaseTTL)
	s.lease.SetClock(s.now)
	s.fenced = s.bus.FencedKV(s.state, s.lease)
	s.loop.Start(ctx)
	return nil
}

// Stop ends polling, saves the model and gives the lease up.
func (s *Service) Stop(ctx context.Context) error {
	if err := s.loop.Stop(ctx); err != nil {
		return err
	}
	if s.lease != nil {
		s.resign()
	}
	return nil
}

// resign closes the session consumer, saves the model and releases the lease.
func (s *Service) resign() {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.closeSessions()
	if s.lease.Held() {
		if err := s.saveState(ctx); err != nil {
			s.log.Warn("save estimator state", zap.Error(err))
		}
	}
	if err := s.lease.Release(ctx); err != nil {
		s.log.Warn("release estimator lease", zap.Error(err))
	}
}

func (s *Service) closeSessions() {
	s.mu.Lock()
	subs := []*bus.Subscription{s.sessions, s.left}
	s.sessions, s.left = nil, nil
	s.mu.Unlock()
	for _, sub := range subs {
		if sub != nil {
			sub.Close()
		}
	}
}

// Lease is the polling lease (nil before Start).
func (s *Service) Lease() *bus.Lease { return s.lease }
