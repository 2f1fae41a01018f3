package queuecare

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/internal/sendonce"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// API is the part of the WeChat client queue care uses; *wechat.Client
// implements it.
type API interface {
	// GetSession tells whether the customer waits (KfAccount "",
	// CreateTime when they joined the queue), is served, or neither.
	GetSession(ctx context.Context, openid string) (wechat.SessionInfo, error)
	// CloseSession ends kfAccount's session with the customer; text is
	// shown to the agent.
	CloseSession(ctx context.Context, kfAccount, openid, text string) error
	// SendText sends a customer-service text message.
	SendText(ctx context.Context, openid, content, asKfAccount string) error
}

// Deps are the service's collaborators.
type Deps struct {
	Bus        *bus.Bus
	API        API
	Logger     *zap.Logger           // optional
	Registerer prometheus.Registerer // optional
	// Now is the clock of every decision (idleness, reconciliation budget,
	// lease); default time.Now.
	Now func() time.Time
	// FeedbackLink returns the feedback link a stale-session message
	// carries (feedbacklink.Links.Link, the links the notifier makes too);
	// nil or "" → no link.
	FeedbackLink func(openid string) string
}

// WeChat errcodes that decide what kefu does.
const (
	errCodeNoSession     = 65413 // no session for the customer (closed already, or still waiting)
	errCodeServedByOther = 65414 // another agent serves the customer
	errCodeInvalidOpenID = wechat.ErrCodeInvalidOpenID
)

// Names on the bus and in the buckets.
const (
	role                  = "queuecare" // dead letters go to kefu.dlq.queuecare
	consumerWeChat        = "queuecare-wechat"
	consumerKF            = "queuecare-kf"
	leaseKeyPrefix        = "queuecare-"       // + appid, in kefu_locks
	notifiedKeyLeftPrefix = "queuecare.left."  // + openid.queued-unix, in kefu_notified
	notifiedKeyStale      = "queuecare.stale." // + openid.session-unix, in kefu_notified
	// recordTimeout bounds publishing and recording a message's outcome.
	recordTimeout = 5 * time.Second
)

// Service keeps the customer read model, takes customers who ask to leave
// out of the queue, closes stale sessions and reconciles the read model
// with WeChat.
type Service struct {
	cfg    Config
	bus    *bus.Bus
	api    API
	log    *zap.Logger
	now    func() time.Time
	link   func(string) string
	m      *metrics
	leave  *customers.LeaveDetector
	source string
	states *customers.Store
	ledger *sendonce.Ledger // kefu_notified: each message at most once
	lease  *bus.Lease

	holderMu  sync.Mutex // one sweep or reconcile pass at a time
	limiter   *rate.Limiter
	lastSweep time.Time
	activity  activityCheck // the message-record read budget (activity.go)

	mu      sync.Mutex
	subs    []*bus.Subscription
	stop    chan struct{}
	done    chan struct{}
	started bool
}

// New checks the configuration and builds the service; Start runs it.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Bus == nil || deps.API == nil {
		return nil, errors.New("queuecare: Bus and API are required")
	}
	detector, err := customers.NewLeaveDetector(cfg.LeavePhrases)
	if err != nil {
		return nil, fmt.Errorf("queuecare: %w", err)
	}
	s := &Service{cfg: cfg, bus: deps.Bus, api: deps.API, log: deps.Logger, now: deps.Now, link: deps.FeedbackLink,
		m: newMetrics(deps.Registerer), leave: detector, source: "kefu/queuecare/" + cfg.AppID,
		stop: make(chan struct{}), done: make(chan struct{})}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.link == nil {
		s.link = func(string) string { return "" }
	}
	if cfg.ReconcileCallsPerMinute > 0 {
		// The burst is one tick's share, so a pass never spends more than
		// the budget of the time since the previous one.
		perSecond := float64(cfg.ReconcileCallsPerMinute) / 60
		burst := max(1, int(perSecond*cfg.Tick.Seconds()))
		s.limiter = rate.NewLimiter(rate.Limit(perSecond), burst)
	}
	return s, nil
}

// LeaveDetector is the detector of the configured leave phrases.
func (s *Service) LeaveDetector() *customers.LeaveDetector { return s.leave }

// States is the customer read model (nil before Start).
func (s *Service) States() *customers.Store { return s.states }

// Start creates the streams, buckets and durable consumers it needs and
// starts the lease holder's loop. It does not block.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("queuecare: already started")
	}
	if err := s.bus.EnsureStreams(ctx, events.StreamWeChat, events.StreamKF, events.StreamNotify, events.StreamDLQ); err != nil {
		return err
	}
	states, err := customers.Ensure(ctx, s.bus, customers.Options{Retention: s.cfg.StateRetention, Now: s.now, Conflicts: s.m.conflicts})
	if err != nil {
		return err
	}
	s.states = states
	notified, err := s.bus.KeyValue(ctx, bus.BucketNotified)
	if err != nil {
		return err
	}
	// A claim outlives a live sender's send and record by the margin
	// for clock skew between processes.
	s.ledger, err = sendonce.New(sendonce.Config{Bus: s.bus, KV: notified, Sender: s.api, Source: s.source, Owner: s.cfg.Holder,
		Now: func() time.Time { return s.now().UTC() }, Log: s.log, SendTimeout: s.cfg.SendTimeout,
		RecordTimeout: recordTimeout, StaleAfter: s.cfg.SendTimeout + recordTimeout + 5*time.Second})
	if err != nil {
		return err
	}
	locks, err := s.bus.KeyValue(ctx, bus.BucketLocks)
	if err != nil {
		return err
	}
	s.lease = bus.NewLease(locks, leaseKeyPrefix+events.Token(s.cfg.AppID), s.cfg.Holder, s.cfg.LeaseTTL)
	s.lease.SetClock(s.now)

	for _, spec := range []bus.ConsumerSpec{
		s.spec(events.StreamWeChat, consumerWeChat, "kefu.wechat.>"),
		s.spec(events.StreamKF, consumerKF, "kefu.kf.>"),
	} {
		sub, err := s.bus.Subscribe(ctx, spec, s.handle)
		if err != nil {
			s.closeSubs()
			return err
		}
		s.subs = append(s.subs, sub)
	}
	s.started = true
	go s.loop()
	return nil
}

func (s *Service) spec(stream, durable, filter string) bus.ConsumerSpec {
	return bus.ConsumerSpec{
		Role: role, Stream: stream, Durable: durable, FilterSubject: filter,
		// A new consumer starts at the end of the stream: replaying weeks
		// of history would answer leave phrases long after the fact. The
		// durable consumer keeps its place across restarts.
		DeliverNew:  true,
		Concurrency: s.cfg.Concurrency, AckWait: s.cfg.AckWait, MaxDeliver: s.cfg.MaxDeliver, Backoff: s.cfg.Backoff,
	}
}

// Stop ends the loop, lets handlers in flight finish and gives the lease up.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.started {
		s.mu.Unlock()
		return nil
	}
	s.started = false
	close(s.stop)
	s.mu.Unlock()
	select {
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	s.closeSubs()
	s.mu.Unlock()
	s.holderMu.Lock()
	defer s.holderMu.Unlock()
	s.m.active.Set(0)
	return s.lease.Release(ctx)
}

func (s *Service) closeSubs() {
	for _, sub := range s.subs {
		if err := sub.Close(); err != nil {
			s.log.Warn("close consumer", zap.Error(err))
		}
	}
	s.subs = nil
}

// loop is the lease holder's work: every Tick, renew the lease, sweep when
// due and reconcile within the budget.
func (s *Service) loop() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.tick(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("queue care pass failed; will retry next tick", zap.Error(err))
		}
	}
}

func (s *Service) tick(ctx context.Context) error {
	s.holderMu.Lock()
	defer s.holderMu.Unlock()
	held, err := s.holdLease(ctx)
	if err != nil || !held {
		return err
	}
	if s.now().Sub(s.lastSweep) >= s.cfg.SweepInterval {
		if _, err := s.sweep(ctx); err != nil {
			return err
		}
	}
	_, err = s.reconcilePass(ctx)
	return err
}

// holdLease takes or renews the lease; only its holder sweeps and
// reconciles, so WeChat sees one sweeper and one reconciliation budget
// whatever the number of replicas. The caller holds holderMu.
func (s *Service) holdLease(ctx context.Context) (bool, error) {
	held, err := s.lease.TryAcquire(ctx)
	if err != nil {
		s.m.active.Set(0)
		return false, err
	}
	if held {
		s.m.active.Set(1)
	} else {
		s.m.active.Set(0)
	}
	return held, nil
}

// handle reads one event into the read model and acts on it.
func (s *Service) handle(ctx context.Context, d *bus.Delivery) error {
	ev, err := events.DecodeSubject(d.Subject, d.Data)
	if errors.Is(err, events.ErrUnknownSubject) {
		return nil // a subject of a newer contract: not ours to judge
	}
	if err != nil {
		return bus.Permanent(err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AckWait-time.Second)
	defer cancel()
	switch e := ev.(type) {
	case events.MessageReceived:
		return s.onMessage(ctx, d, e)
	case events.SessionCreated:
		return s.onSession(ctx, "created", e.OpenID, func(st *customers.State) (bool, customers.Effect) {
			return st.ApplyCreated(e.KfAccount, eventTime(e.Meta, e.WeChatSource), d.StreamSeq, s.cfg.DeferredCloseWithin)
		})
	case events.SessionSwitched:
		return s.onSession(ctx, "switched", e.OpenID, func(st *customers.State) (bool, customers.Effect) {
			return st.ApplySwitched(e.FromKfAccount, e.ToKfAccount, eventTime(e.Meta, e.WeChatSource), d.StreamSeq, s.cfg.DeferredCloseWithin)
		})
	case events.SessionClosed:
		return s.onSession(ctx, "closed", e.OpenID, func(st *customers.State) (bool, customers.Effect) {
			return st.ApplyClosed(e.KfAccount, eventTime(e.Meta, e.WeChatSource), d.StreamSeq), customers.Effect{}
		})
	case events.QueueJoined:
		// Ingest transferred the customer's message to 多客服: evidence
		// that they wait, with the time they joined, at no API call.
		return s.observe(ctx, "joined", e.OpenID, func(st *customers.State) bool {
			return st.ApplyJoined(eventTime(e.Meta, events.WeChatSource{}), d.StreamSeq)
		})
	case events.WaitEstimated:
		return s.observe(ctx, "wait_estimated", e.OpenID, func(st *customers.State) bool {
			return st.ApplyWaitingSeen(customers.WaitingSeen{At: e.OccurredAt, Position: e.Position, Estimate: true,
				WaitSeconds: e.WaitSeconds, WaitP90: e.WaitP90Seconds})
		})
	case events.QueueSnapshot:
		return s.onSnapshot(ctx, e)
	case events.SessionAbandoned:
		if e.Reason != events.AbandonVanished {
			s.m.events.WithLabelValues("abandoned", "ignored").Inc()
			return nil // "left" is kefu's own, already in the model
		}
		return s.observe(ctx, "abandoned", e.OpenID, func(st *customers.State) bool {
			return st.Status == customers.StatusWaiting && st.ApplyIdleSeen(e.OccurredAt)
		})
	}
	return nil
}

// eventTime is a WeChat event's time: its CreateTime, whole seconds.
func eventTime(m events.Meta, src events.WeChatSource) time.Time {
	if src.CreateTime > 0 {
		return time.Unix(src.CreateTime, 0).UTC()
	}
	return m.OccurredAt.UTC()
}

// onSession applies a session event and carries out a deferred close.
func (s *Service) onSession(ctx context.Context, kind, openid string, apply func(*customers.State) (bool, customers.Effect)) error {
	if !customers.ValidOpenID(openid) {
		s.m.events.WithLabelValues(kind, "ignored").Inc()
		return nil
	}
	var eff customers.Effect
	_, changed, err := s.states.Update(ctx, openid, func(st *customers.State) bool {
		var ch bool
		ch, eff = apply(st)
		return ch
	})
	if err != nil {
		return err
	}
	s.countApplied(kind, changed)
	if eff.CloseKf != "" {
		return s.deferredClose(ctx, openid, eff.CloseKf)
	}
	return nil
}

// observe applies a poll's view of one customer.
func (s *Service) observe(ctx context.Context, kind, openid string, apply func(*customers.State) bool) error {
	if !customers.ValidOpenID(openid) {
		s.m.events.WithLabelValues(kind, "ignored").Inc()
		return nil
	}
	_, changed, err := s.states.Update(ctx, openid, apply)
	if err != nil {
		return err
	}
	s.countApplied(kind, changed)
	return nil
}

func (s *Service) countApplied(kind string, changed bool) {
	if changed {
		s.m.events.WithLabelValues(kind, "applied").Inc()
	} else {
		s.m.events.WithLabelValues(kind, "unchanged").Inc()
	}
}

// onSnapshot applies the estimator's queue snapshot: the listed waiting
// customers with their places, and every agent's sessions (which repair a
// lost kf_create_session without an API call).
func (s *Service) onSnapshot(ctx context.Context, snap events.QueueSnapshot) error {
	at := snap.OccurredAt
	for _, w := range snap.Waiting {
		err := s.observe(ctx, "snapshot", w.OpenID, func(st *customers.State) bool {
			return st.ApplyWaitingSeen(customers.WaitingSeen{At: at, QueuedAt: w.Since.UTC().Truncate(time.Second), Position: w.Position})
		})
		if err != nil {
			return err
		}
	}
	for _, a := range snap.Agents {
		for _, sess := range a.Sessions {
			var eff customers.Effect
			if !customers.ValidOpenID(sess.OpenID) {
				continue
			}
			_, changed, err := s.states.Update(ctx, sess.OpenID, func(st *customers.State) bool {
				var ch bool
				ch, eff = st.ApplyServedSeen(a.KfAccount, sess.Since.UTC().Truncate(time.Second), at, s.cfg.DeferredCloseWithin)
				return ch
			})
			if err != nil {
				return err
			}
			s.countApplied("snapshot", changed)
			if eff.CloseKf != "" {
				if err := s.deferredClose(ctx, sess.OpenID, eff.CloseKf); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// deferredClose closes the session an agent opened for a customer who had
// left the queue, so the agent's slot frees at once.
func (s *Service) deferredClose(ctx context.Context, openid, kf string) error {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	err := s.api.CloseSession(cctx, kf, openid, s.cfg.AgentLeftNote)
	cancel()
	switch code := errCode(err); {
	case err == nil:
		s.m.deferredCloses.WithLabelValues("closed").Inc()
		s.log.Info("closed a session opened for a customer who left the queue", zap.String("kf_account", kf))
	case code == errCodeNoSession:
		// Closed already (by an earlier try, or by the agent).
		s.m.deferredCloses.WithLabelValues("already_closed").Inc()
	case code == errCodeServedByOther:
		// Switched meanwhile; the kf_switch_session event closes it with
		// the new agent.
		s.m.deferredCloses.WithLabelValues("already_closed").Inc()
	case wechat.IsPermanent(err):
		s.m.deferredCloses.WithLabelValues("failed").Inc()
		s.log.Warn("deferred close refused", zap.String("kf_account", kf), zap.Error(err))
	default:
		return fmt.Errorf("deferred close: %w", err)
	}
	return nil
}
