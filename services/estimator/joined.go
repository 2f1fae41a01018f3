package estimator

import (
	"context"
	"fmt"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/waitmodel"
	"github.com/kefu-io/kefu/pkg/events"
)

// joined adds a customer ingest handed to 多客服 to the members and, if
// they are new in the queue, publishes their first estimate at once (from
// the last snapshot and the joins since; the next polls refine it).
func (s *Service) joined(ctx context.Context, j events.QueueJoined) error {
	if !validOpenID(j.OpenID) {
		s.m.joins.WithLabelValues("ignored").Inc()
		return nil
	}
	now := s.now()
	s.mu.Lock()
	if !s.members.Join(j.OpenID, j.KfAccount, j.OccurredAt) {
		s.mu.Unlock()
		s.m.joins.WithLabelValues("known").Inc()
		return nil
	}
	e, ok := s.model.EstimateJoin(waitmodel.WaitingCase{OpenID: j.OpenID, Since: j.OccurredAt, KfAccount: j.KfAccount, Inferred: true}, now)
	if !ok {
		// Already waiting or served (the message went to their queue or
		// agent), or no snapshot yet: the next poll sorts it out (a listed
		// or served member leaves the members there).
		if s.model.Serves(j.OpenID) {
			s.members.Remove(j.OpenID)
		}
		s.mu.Unlock()
		s.m.joins.WithLabelValues("known").Inc()
		return nil
	}
	if !e.Unknown {
		s.published[j.OpenID] = notified{wait: e.Wait, since: now}
	}
	s.mu.Unlock()
	s.m.joins.WithLabelValues("joined").Inc()
	if e.Unknown {
		return nil
	}
	if !s.lease.Held() {
		// The consumer closes when the lease is lost; a join handled
		// meanwhile is estimated by the next holder's poll.
		return nil
	}
	meta := events.Meta{AppID: s.cfg.AppID, OccurredAt: now.UTC(), ReceivedAt: now.UTC()}
	return s.publishEstimate(ctx, meta, e, "kf-wait-"+j.OpenID+"-join-"+fmt.Sprint(j.OccurredAt.Unix()))
}

// handleLeft takes a customer who asked to leave (queue care's
// SessionAbandoned, reason left) out of the members and the model.
func (s *Service) handleLeft(_ context.Context, d *bus.Delivery) error {
	e, err := events.Decode[events.SessionAbandoned](d.Data)
	if err != nil {
		return bus.Permanent(err)
	}
	if e.Reason != events.AbandonLeft {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.members.Remove(e.OpenID) {
		s.model.Abandoned(e.OpenID, time.Duration(e.WaitedSeconds)*time.Second, e.OccurredAt)
	}
	delete(s.published, e.OpenID)
	return nil
}

func validOpenID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// sessionsLag reports whether the session consumer has events it has not
// applied yet: then no abandonment is concluded, since one of them may be
// the session that explains a vanished case.
func (s *Service) sessionsLag(ctx context.Context) bool {
	info, err := s.bus.ConsumerInfo(ctx, events.StreamWeChat, durableSessions)
	if err != nil {
		return true
	}
	return info.NumPending > 0 || info.NumAckPending > 0
}
