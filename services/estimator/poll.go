package estimator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/waitmodel"
	"github.com/kefu-io/kefu/pkg/events"
)

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

// loadSaved reads key from the state bucket into unmarshal, under s.mu.
// A missing key leaves things as they are; an unreadable value is logged
// with unreadable and left out; a failed read is an error about what.
func (s *Service) loadSaved(ctx context.Context, key string, unmarshal func([]byte) error, what, unreadable string) error {
	entry, err := s.state.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("load %s: %w", what, err)
	}
	s.mu.Lock()
	err = unmarshal(entry.Value())
	s.mu.Unlock()
	if err != nil {
		s.log.Warn(unreadable, zap.Error(err))
	}
	return nil
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
	if err := s.loadSaved(ctx, s.stateKey(), s.model.UnmarshalState, "estimator state",
		"saved estimator state unreadable; starting from the prior"); err != nil {
		return err
	}
	if err := s.loadSaved(ctx, s.membersKey(), s.members.UnmarshalJSON, "queue members",
		"saved queue members unreadable; the queue beyond the listed customers is rebuilt from new joins"); err != nil {
		return err
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
