package queuecare

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// onMessage records a customer message as activity and, for a leave
// phrase, takes the customer out of the queue.
func (s *Service) onMessage(ctx context.Context, d *bus.Delivery, m events.MessageReceived) error {
	if !customers.ValidOpenID(m.OpenID) {
		s.m.events.WithLabelValues("message", "ignored").Inc()
		return nil
	}
	at := eventTime(m.Meta, m.WeChatSource)
	leave := s.isLeave(m)
	_, changed, err := s.states.Update(ctx, m.OpenID, func(st *customers.State) bool {
		return st.ApplyMessage(at, d.StreamSeq, leave)
	})
	if err != nil {
		return err
	}
	s.countApplied("message", changed)
	if !leave {
		return nil
	}
	return s.leaveQueue(ctx, d, m, at)
}

func (s *Service) isLeave(m events.MessageReceived) bool {
	switch m.MsgType {
	case "text":
		return s.leave.IsLeave(m.Content)
	case "voice":
		return s.leave.IsLeave(m.Recognition)
	}
	return false
}

// leaveQueue handles a leave phrase sent at at. Every step is idempotent,
// so a redelivery repeats none of its effects:
//
//  1. ask WeChat (getsession) whether the customer waits; kefu learns of a
//     customer entering the queue only from the next poll, so the read
//     model alone could miss one who just joined. A customer who is served
//     or in no queue is left alone: no close, no event, no message.
//  2. record them as left (compare-and-set): the notifier stops wait
//     messages, and the session an agent opens for them later is closed
//     (the deferred close; WeChat's kfsession/close needs the serving
//     agent, so a case nobody accepted cannot be closed now);
//  3. publish SessionAbandoned (reason left) with the id
//     kf-left-<openid>-<queued unix>, which JetStream de-duplicates;
//  4. confirm once (a record in kefu_notified).
func (s *Service) leaveQueue(ctx context.Context, d *bus.Delivery, m events.MessageReceived, at time.Time) error {
	openid := m.OpenID
	cur, err := s.states.Load(ctx, openid)
	if err != nil {
		return err
	}
	queued, waiting, err := s.waitingNow(ctx, openid, cur)
	if err != nil {
		return err
	}
	if !waiting && cur.Status != customers.StatusLeft {
		return nil
	}

	var res customers.LeaveResult
	st, _, err := s.states.Update(ctx, openid, func(st *customers.State) bool {
		res = st.ApplyLeft(at, d.StreamSeq, queued)
		return res == customers.LeaveApplied
	})
	if err != nil {
		return err
	}
	switch res {
	case customers.LeaveSuperseded:
		// Something newer (a session created after the message) stands.
		s.m.leave.WithLabelValues("superseded").Inc()
		return nil
	case customers.LeaveAlready:
		if !st.FactAt.Equal(at) || st.FactSeq != d.StreamSeq {
			// A second leave phrase: the first one did everything.
			s.m.leave.WithLabelValues("already_left").Inc()
			return nil
		}
		// This message's own earlier delivery: finish its remaining steps.
	case customers.LeaveApplied:
		s.m.leave.WithLabelValues("left").Inc()
		s.log.Info("customer left the queue", zap.Duration("waited", at.Sub(st.QueuedAt)))
	}

	queuedUnix := strconv.FormatInt(st.QueuedAt.Unix(), 10)
	ev := events.SessionAbandoned{
		Meta:          events.Meta{AppID: s.cfg.AppID, OccurredAt: at, ReceivedAt: s.now().UTC()},
		OpenID:        openid,
		WaitedSeconds: int64(max(0, at.Sub(st.QueuedAt).Round(time.Second)/time.Second)),
		Reason:        events.AbandonLeft,
	}
	if _, err := s.bus.Publish(ctx, ev, bus.Envelope{ID: "kf-left-" + openid + "-" + queuedUnix, Source: s.source}); err != nil {
		return err
	}

	if age := s.now().Sub(at); age > s.cfg.LeaveMaxAge {
		s.m.messages.WithLabelValues(events.NotifyLeftQueue, "expired").Inc()
		return nil
	}
	cause := d.ID()
	if cause == "" {
		cause = "kf-left-" + openid + "-" + queuedUnix
	}
	outcome, err := s.sendOnce(ctx, outgoing{
		key: notifiedKeyLeftPrefix + openid + "." + queuedUnix, kind: events.NotifyLeftQueue, cause: cause,
		appID: s.cfg.AppID, openid: openid, text: s.cfg.LeaveConfirmation,
	})
	if err != nil {
		return err
	}
	s.m.messages.WithLabelValues(events.NotifyLeftQueue, outcome).Inc()
	return nil
}

// waitingNow decides whether the customer waits in the queue, and since
// when. getsession settles a served customer and confirms a waiting one
// when it answers their queue time; otherwise the read model's evidence
// of waiting counts: ingest saw them join (kefu.wechat.kf.queue.joined)
// or getwaitcase listed them. getsession's createtime 0 alone never takes
// a waiting customer out of the queue.
func (s *Service) waitingNow(ctx context.Context, openid string, cur customers.State) (queued time.Time, waiting bool, err error) {
	if cur.Status == customers.StatusLeft {
		// Still listed by WeChat (their case cannot be closed); the
		// record has what the first leave phrase found.
		return cur.QueuedAt, false, nil
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	info, err := s.api.GetSession(cctx, openid)
	cancel()
	p := s.now()
	switch {
	case err == nil && info.KfAccount != "":
		s.m.leave.WithLabelValues("served").Inc()
		s.correct(ctx, openid, func(st *customers.State) (bool, customers.Effect) {
			return st.ApplyServedSeen(info.KfAccount, unixTime(info.CreateTime), p, s.cfg.DeferredCloseWithin)
		})
		return time.Time{}, false, nil
	case err == nil && info.CreateTime != 0:
		return unixTime(info.CreateTime), true, nil
	case err == nil && cur.Status == customers.StatusWaiting:
		// getsession documents established sessions; for a customer in
		// the queue WeChat may answer createtime 0. The read model's
		// evidence — ingest saw them join, or getwaitcase listed them —
		// stands.
		s.m.leave.WithLabelValues("waiting_by_queue").Inc()
		return cur.QueuedAt, true, nil
	case err == nil, errCode(err) == errCodeInvalidOpenID:
		s.m.leave.WithLabelValues("not_waiting").Inc()
		if err == nil {
			s.correct(ctx, openid, func(st *customers.State) (bool, customers.Effect) {
				return st.ApplyIdleSeen(customers.ObservedAt(p)), customers.Effect{}
			})
		}
		return time.Time{}, false, nil
	case cur.Status == customers.StatusWaiting:
		s.log.Warn("getsession failed; trusting the read model that the customer waits", zap.Error(err))
		return cur.QueuedAt, true, nil
	case wechat.IsPermanent(err):
		s.m.leave.WithLabelValues("not_waiting").Inc()
		s.log.Warn("getsession refused; leave phrase ignored", zap.Error(err))
		return time.Time{}, false, nil
	}
	return time.Time{}, false, fmt.Errorf("getsession for a leave phrase: %w", err)
}

// correct applies a fact learned from WeChat on the way; a failure only
// costs the correction, which reconciliation makes later.
func (s *Service) correct(ctx context.Context, openid string, apply func(*customers.State) (bool, customers.Effect)) {
	var eff customers.Effect
	_, _, err := s.states.Update(ctx, openid, func(st *customers.State) bool {
		var ch bool
		ch, eff = apply(st)
		return ch
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.Debug("read model correction failed", zap.Error(err))
		return
	}
	if eff.CloseKf != "" {
		if err := s.deferredClose(ctx, openid, eff.CloseKf); err != nil {
			s.log.Warn("deferred close", zap.Error(err))
		}
	}
}

func unixTime(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}
