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
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/httpapi"
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
	if c.PollInterval <= 0 {
		c.PollInterval = 15 * time.Second
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 3 * c.PollInterval
		if c.LeaseTTL < 15*time.Second {
			c.LeaseTTL = 15 * time.Second
		}
	}
	if c.NotifyMinChange <= 0 {
		c.NotifyMinChange = 2 * time.Minute
	}
	if c.NotifyMinRatio <= 0 {
		c.NotifyMinRatio = 0.3
	}
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

// PollOnce takes one snapshot and publishes what changed, if this replica
// holds the lease. API errors are returned (and counted); the loop goes on.
// An error wrapping bus.ErrLeaseLost means another replica took over
// during the poll: nothing of this poll was saved.
func (s *Service) PollOnce(ctx context.Context) error {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	held, err := s.lease.TryAcquire(ctx)
	if err != nil {
		return err
	}
	if !held {
		s.closeSessions()
		s.m.leader.Set(0)
		return nil
	}
	if fence := s.lease.Fence(); fence != s.tenure {
		// A new tenure (first, or after losing the lease): what this
		// replica has in memory may be older than what a holder in
		// between saved. Load it again.
		s.closeSessions()
	}
	s.m.leader.Set(1)
	// Renewed in the background for as long as the poll takes; the
	// context ends if the lease is lost.
	job, stop := s.lease.Hold(ctx)
	defer stop()
	err = s.poll(job, ctx)
	if err = bus.LostCause(job, err); errors.Is(err, bus.ErrLeaseLost) {
		s.closeSessions()
		s.m.leader.Set(0)
		s.log.Warn("estimator lease lost to another replica; this replica stops polling", zap.Error(err))
	}
	return err
}

// poll is one poll by the holder under ctx; the session consumer is bound
// to outer, which outlives the poll.
func (s *Service) poll(ctx, outer context.Context) error {
	if err := s.takeOver(ctx, outer); err != nil {
		return err
	}
	snap, left, err := s.snapshot(ctx)
	if err != nil {
		s.m.polls.WithLabelValues("error").Inc()
		return err
	}
	s.m.polls.WithLabelValues("ok").Inc()
	snap.HoldAbandon = s.sessionsLag(ctx)

	s.mu.Lock()
	for _, c := range left {
		s.members.Remove(c.OpenID)
		s.model.Abandoned(c.OpenID, snap.At.Sub(c.Since), snap.At) // a no-op after the first time
	}
	start := time.Now()
	snap, s.buf = s.members.Complete(snap, s.buf)
	res := s.model.Observe(snap)
	s.m.observeSeconds.Observe(time.Since(start).Seconds())
	s.m.serviceSeconds.Set(res.ServiceFor.Seconds())
	s.m.paceChanges.Set(float64(s.model.PaceChanges()))
	changed := s.changedEstimates(res)
	s.m.members.Set(float64(s.members.Len()))
	members, merr := s.members.MarshalJSON()
	s.mu.Unlock()
	if merr != nil {
		return fmt.Errorf("marshal queue members: %w", merr)
	}

	// The WeChat calls may have taken long: make sure the lease is still
	// this replica's before telling anyone.
	if err := s.lease.Check(ctx); err != nil {
		return err
	}
	if err := s.publish(ctx, snap, res, changed); err != nil {
		return err
	}
	if max := s.bus.MaxPayload(); max > 0 && int64(len(members)) > max*9/10 {
		// Too many to save in one value: a restart rebuilds the queue
		// beyond the listed customers from new joins. MaxMembers bounds it.
		s.m.polls.WithLabelValues("members_not_saved").Inc()
		s.log.Warn("queue members too large to save; lower MaxMembers", zap.Int("bytes", len(members)))
	} else if _, err := s.fenced.Put(ctx, s.membersKey(), members); err != nil {
		return fmt.Errorf("save queue members: %w", err)
	}
	return s.saveState(ctx)
}

// takeOver loads the saved model, writes it back under this tenure's fence
// (so that no earlier holder's write lands after it) and opens the session
// consumer when this replica has just become the holder.
func (s *Service) takeOver(ctx, outer context.Context) error {
	s.mu.Lock()
	open := s.sessions != nil
	s.mu.Unlock()
	if open {
		return nil
	}
	if entry, err := s.state.Get(ctx, s.stateKey()); err == nil {
		s.mu.Lock()
		err = s.model.UnmarshalState(entry.Value())
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("saved estimator state unreadable; starting from the prior", zap.Error(err))
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("load estimator state: %w", err)
	}
	if entry, err := s.state.Get(ctx, s.membersKey()); err == nil {
		s.mu.Lock()
		err = s.members.UnmarshalJSON(entry.Value())
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("saved queue members unreadable; the queue beyond the listed customers is rebuilt from new joins", zap.Error(err))
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("load queue members: %w", err)
	}
	if err := s.saveState(ctx); err != nil {
		return err
	}
	s.tenure = s.lease.Fence()
	sub, err := s.bus.Subscribe(outer, bus.ConsumerSpec{
		Role: "estimator", Stream: events.StreamWeChat, Durable: durableSessions,
		// Session events and joins, in the order they happened.
		FilterSubject: events.SubjectKfAll, Concurrency: 1, // the model learns from events in order
		DeliverNew: true,
	}, s.handleSession)
	if err != nil {
		return err
	}
	left, err := s.bus.Subscribe(outer, bus.ConsumerSpec{
		Role: "estimator", Stream: events.StreamKF, Durable: "estimator-left",
		FilterSubject: events.SubjectSessionAbandoned, Concurrency: 1, DeliverNew: true,
	}, s.handleLeft)
	if err != nil {
		sub.Close()
		return err
	}
	s.mu.Lock()
	s.sessions, s.left = sub, left
	s.mu.Unlock()
	s.log.Info("estimator active: this replica polls the queue")
	return nil
}

// durableSessions is the consumer of the session events and joins.
const durableSessions = "estimator-sessions"

func (s *Service) handleSession(ctx context.Context, d *bus.Delivery) error {
	ev, err := events.DecodeSubject(d.Subject, d.Data)
	if errors.Is(err, events.ErrUnknownSubject) {
		return nil // a subject of a newer contract
	}
	if err != nil {
		return bus.Permanent(err)
	}
	if j, ok := ev.(events.QueueJoined); ok {
		return s.joined(ctx, j)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e := ev.(type) {
	case events.SessionCreated:
		s.members.Remove(e.OpenID)
		s.model.SessionCreated(e.OpenID, e.KfAccount, e.OccurredAt)
		delete(s.published, e.OpenID)
	case events.SessionClosed:
		s.model.SessionClosed(e.OpenID, e.KfAccount, e.OccurredAt)
	case events.SessionSwitched:
		s.model.SessionSwitched(e.OpenID, e.FromKfAccount, e.ToKfAccount, e.OccurredAt)
	}
	return nil
}

// snapshot polls the three lists. An agent whose session list fails is
// kept with its count only: the model then uses what it learned from events.
// Customers who left (Deps.Left) are returned apart, not in the snapshot.
func (s *Service) snapshot(ctx context.Context) (waitmodel.Snapshot, []waitmodel.WaitingCase, error) {
	now := s.now()
	wait, err := s.api.GetWaitCase(ctx)
	if err != nil {
		return waitmodel.Snapshot{}, nil, fmt.Errorf("getwaitcase: %w", err)
	}
	online, err := s.api.GetOnlineKfList(ctx)
	if err != nil {
		return waitmodel.Snapshot{}, nil, fmt.Errorf("getonlinekflist: %w", err)
	}
	snap := waitmodel.Snapshot{At: now, Count: wait.Count}
	if snap.Count < len(wait.Cases) {
		snap.Count = len(wait.Cases)
	}
	var left []waitmodel.WaitingCase
	for _, c := range wait.Cases {
		wc := waitmodel.WaitingCase{OpenID: c.OpenID, Since: time.Unix(c.CreateTime, 0), KfAccount: c.KfAccount}
		if s.leftFn != nil && s.leftFn(ctx, c.OpenID) {
			left = append(left, wc)
			snap.Count--
			continue
		}
		snap.Waiting = append(snap.Waiting, wc)
	}
	for _, a := range online {
		agent := waitmodel.Agent{Account: a.KfAccount, Status: a.Status, AutoAccept: a.AutoAccept, Accepted: a.AcceptedCase}
		if a.AcceptedCase > 0 {
			list, err := s.api.GetSessionList(ctx, a.KfAccount)
			if err != nil {
				s.m.polls.WithLabelValues("sessionlist_error").Inc()
				s.log.Debug("getsessionlist failed", zap.String("kf_account", a.KfAccount), zap.Error(err))
			}
			for _, it := range list {
				agent.Sessions = append(agent.Sessions, waitmodel.Session{OpenID: it.OpenID, Since: time.Unix(it.CreateTime, 0)})
			}
		}
		snap.Agents = append(snap.Agents, agent)
	}
	return snap, left, nil
}

// changedEstimates picks the estimates to publish: customers new in the
// queue, and those whose estimate moved materially. Caller holds s.mu.
func (s *Service) changedEstimates(res waitmodel.Result) []waitmodel.Estimate {
	var out []waitmodel.Estimate
	present := make(map[string]bool, len(res.Estimates))
	for _, e := range res.Estimates {
		present[e.OpenID] = true
		if e.Unknown {
			continue
		}
		prev, ok := s.published[e.OpenID]
		if ok && !material(prev.wait, e.Wait, s.cfg.NotifyMinChange, s.cfg.NotifyMinRatio) {
			continue
		}
		s.published[e.OpenID] = notified{wait: e.Wait, since: res.At}
		out = append(out, e)
	}
	for openid := range s.published {
		if !present[openid] {
			delete(s.published, openid)
		}
	}
	return out
}

// material: moved by at least minChange and by at least ratio of the old value.
func material(old, cur, minChange time.Duration, ratio float64) bool {
	d := cur - old
	if d < 0 {
		d = -d
	}
	return d >= minChange && float64(d) >= ratio*float64(old)
}

func (s *Service) publish(ctx context.Context, snap waitmodel.Snapshot, res waitmodel.Result, changed []waitmodel.Estimate) error {
	meta := events.Meta{AppID: s.cfg.AppID, OccurredAt: snap.At.UTC(), ReceivedAt: s.now().UTC()}
	source := "kefu/estimator/" + s.cfg.AppID
	view := queueView(snap, res)

	qs := events.QueueSnapshot{Meta: meta, WaitingCount: res.Count, Waiting: []events.WaitingCustomer{}, Agents: []events.AgentStatus{}}
	for _, w := range view.Waiting {
		if w.Inferred {
			break // the snapshot lists getwaitcase's cases; the inferred follow them
		}
		qs.Waiting = append(qs.Waiting, events.WaitingCustomer{OpenID: w.OpenID, Since: w.Since, KfAccount: w.KfAccount, Position: w.Position})
	}
	qs.Agents = view.Agents
	if _, err := s.bus.Publish(ctx, qs, bus.Envelope{ID: fmt.Sprintf("kf-snapshot-%s-%d", s.cfg.AppID, snap.At.UnixNano()), Source: source}); err != nil {
		return err
	}
	for _, e := range changed {
		if err := s.publishEstimate(ctx, meta, e, fmt.Sprintf("kf-wait-%s-%d", e.OpenID, snap.At.Unix())); err != nil {
			return err
		}
	}
	for _, a := range res.Abandoned {
		ev := events.SessionAbandoned{Meta: events.Meta{AppID: s.cfg.AppID, OccurredAt: a.At.UTC(), ReceivedAt: s.now().UTC()},
			OpenID: a.OpenID, WaitedSeconds: seconds(a.Waited), Reason: events.AbandonVanished}
		id := fmt.Sprintf("kf-abandon-%s-%d", a.OpenID, a.At.Add(-a.Waited).Unix())
		if _, err := s.bus.Publish(ctx, ev, bus.Envelope{ID: id, Source: source}); err != nil {
			return err
		}
		s.m.abandoned.Inc()
	}
	s.m.waiting.Set(float64(res.Count))
	body, err := json.Marshal(view)
	if err != nil {
		return err
	}
	if _, err := s.fenced.Put(ctx, s.queueKey(), body); err != nil {
		return fmt.Errorf("save queue view: %w", err)
	}
	return nil
}

func (s *Service) publishEstimate(ctx context.Context, meta events.Meta, e waitmodel.Estimate, id string) error {
	ev := events.WaitEstimated{Meta: meta, OpenID: e.OpenID, Position: e.Position, KfAccount: e.KfAccount,
		WaitSeconds: seconds(e.Wait), WaitP90Seconds: seconds(e.WaitP90), Model: e.Model, PositionInferred: e.Inferred}
	if _, err := s.bus.Publish(ctx, ev, bus.Envelope{ID: id, Source: "kefu/estimator/" + s.cfg.AppID}); err != nil {
		return err
	}
	s.m.estimates.Inc()
	return nil
}

func seconds(d time.Duration) int64 { return int64(math.Round(d.Seconds())) }

func (s *Service) saveState(ctx context.Context) error {
	s.mu.Lock()
	b, err := s.model.MarshalState()
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("marshal estimator state: %w", err)
	}
	if _, err := s.fenced.Put(ctx, s.stateKey(), b); err != nil {
		return fmt.Errorf("save estimator state: %w", err)
	}
	return nil
}

// QueueView is the body of GET /api/kf/queue.
type QueueView struct {
	At           time.Time            `json:"at"`
	WaitingCount int                  `json:"waiting_count"`
	Waiting      []WaitingView        `json:"waiting"`
	Unlisted     int                  `json:"unlisted"`
	Omitted      int                  `json:"omitted,omitempty"`
	Tail         *WaitingView         `json:"tail,omitempty"`
	Agents       []events.AgentStatus `json:"agents"`
	ServiceMean  int64                `json:"mean_session_seconds"`
}

// WaitingView is one waiting customer with its estimate.
type WaitingView struct {
	OpenID         string    `json:"openid,omitempty"`
	Since          time.Time `json:"since,omitzero"`
	KfAccount      string    `json:"kf_account,omitempty"`
	Position       int       `json:"position"`
	WaitSeconds    int64     `json:"wait_seconds"`
	WaitP90Seconds int64     `json:"wait_p90_seconds"`
	// Unknown: nobody online can take this customer; no estimate.
	Unknown bool   `json:"unknown,omitempty"`
	Model   string `json:"model,omitempty"`
	// Inferred: not listed by getwaitcase; the place comes from the order
	// of the joins kefu saw.
	Inferred bool `json:"position_inferred,omitempty"`
}

// maxViewWaiting bounds the customers GET /api/kf/queue lists (the view
// is one KV value); Omitted counts the rest.
const maxViewWaiting = 1000

func queueView(snap waitmodel.Snapshot, res waitmodel.Result) QueueView {
	v := QueueView{At: snap.At.UTC(), WaitingCount: res.Count, Unlisted: res.Unlisted, Waiting: []WaitingView{}, Agents: []events.AgentStatus{},
		ServiceMean: seconds(res.ServiceFor)}
	since := make(map[string]time.Time, len(snap.Waiting))
	for _, w := range snap.Waiting {
		since[w.OpenID] = w.Since.UTC()
	}
	for i, e := range res.Estimates {
		if i == maxViewWaiting {
			v.Omitted = len(res.Estimates) - i
			break
		}
		v.Waiting = append(v.Waiting, WaitingView{OpenID: e.OpenID, Since: since[e.OpenID], KfAccount: e.KfAccount, Position: e.Position,
			WaitSeconds: seconds(e.Wait), WaitP90Seconds: seconds(e.WaitP90), Unknown: e.Unknown, Model: e.Model, Inferred: e.Inferred})
	}
	if res.Unlisted > 0 {
		t := res.Tail
		v.Tail = &WaitingView{Position: t.Position, WaitSeconds: seconds(t.Wait), WaitP90Seconds: seconds(t.WaitP90), Unknown: t.Unknown, Model: t.Model}
	}
	for _, a := range snap.Agents {
		st := events.AgentStatus{KfAccount: a.Account, Status: a.Status, AutoAccept: a.AutoAccept, AcceptedCase: a.Accepted, Sessions: []events.AgentSession{}}
		for _, ss := range a.Sessions {
			st.Sessions = append(st.Sessions, events.AgentSession{OpenID: ss.OpenID, Since: ss.Since.UTC()})
		}
		v.Agents = append(v.Agents, st)
	}
	return v
}

// Routes registers GET /api/kf/queue. Every replica serves it from the
// view the active poller saved last.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("/api/kf/queue", s.serveQueue)
}

func (s *Service) serveQueue(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpapi.WriteProblem(w, http.StatusMethodNotAllowed, "GET or HEAD only")
		return
	}
	// The view appears at the first poll and is replaced at every poll:
	// one poll interval is when it is worth asking again.
	notYet := httpapi.RetryAfter(s.cfg.PollInterval)
	if s.state == nil {
		httpapi.WriteProblem(w, http.StatusServiceUnavailable, "estimator not started", httpapi.Type(httpapi.NotReady), notYet)
		return
	}
	entry, err := s.state.Get(r.Context(), s.queueKey())
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		httpapi.WriteProblem(w, http.StatusServiceUnavailable, "no queue snapshot yet", httpapi.Type(httpapi.NotReady), notYet)
		return
	case err != nil:
		s.log.Error("read queue view", zap.Error(err))
		httpapi.WriteProblem(w, http.StatusServiceUnavailable, "queue view unavailable", notYet)
		return
	}
	// The saved view is re-encoded rather than passed on, so that every
	// time is written as httpapi writes times (UTC, whole seconds) and a
	// view saved by an older version, with a zero time in it, is answered
	// without it.
	var view QueueView
	if err := json.Unmarshal(entry.Value(), &view); err != nil {
		s.log.Error("decode queue view", zap.Error(err))
		httpapi.WriteProblem(w, http.StatusInternalServerError, "queue view unreadable")
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, view)
}

type metrics struct {
	polls          *prometheus.CounterVec
	estimates      prometheus.Counter
	abandoned      prometheus.Counter
	waiting        prometheus.Gauge
	leader         prometheus.Gauge
	observeSeconds prometheus.Histogram
	serviceSeconds prometheus.Gauge
	paceChanges    prometheus.Gauge
	joins          *prometheus.CounterVec
	members        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		polls:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_estimator_polls_total", Help: "Queue polls by outcome (ok, error, sessionlist_error, members_not_saved)."}, []string{"outcome"}),
		estimates:      prometheus.NewCounter(prometheus.CounterOpts{Name: "kefu_estimator_estimates_published_total", Help: "WaitEstimated events published."}),
		abandoned:      prometheus.NewCounter(prometheus.CounterOpts{Name: "kefu_estimator_abandoned_total", Help: "Customers inferred to have left the queue unserved."}),
		waiting:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "kefu_estimator_waiting_customers", Help: "Customers waiting at the last poll (getwaitcase count)."}),
		leader:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "kefu_estimator_active", Help: "1 when this replica holds the polling lease."}),
		observeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kefu_estimator_observe_seconds", Help: "Time to estimate one snapshot.", Buckets: prometheus.ExponentialBuckets(0.00005, 2, 14)}),
		serviceSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kefu_estimator_session_seconds", Help: "Learned mean session length of a full agent (1/r)."}),
		paceChanges:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "kefu_estimator_pace_changes", Help: "Changes of the agents' pace detected since this replica started."}),
		joins:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_estimator_joins_total", Help: "Queue joins seen from ingest by outcome (joined: new in the queue, estimated at once; known: already waiting or served; ignored: malformed openid)."}, []string{"outcome"}),
		members:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "kefu_estimator_members", Help: "Customers known from joins and not listed by getwaitcase yet."}),
	}
	if reg != nil {
		reg.MustRegister(m.polls, m.estimates, m.abandoned, m.waiting, m.leader, m.observeSeconds, m.serviceSeconds, m.paceChanges, m.joins, m.members)
	}
	return m
}
