package notifier

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/pkg/events"
)

// sessionNotice is a session event reduced to what the messages need.
type sessionNotice struct {
	kind        string
	meta        events.Meta
	openid      string
	account     string
	fromAccount string
	// session is the session a close ends, named in the feedback link.
	session *feedbacklink.Session
}

func (s *Service) handleSession(_ context.Context, d *bus.Delivery) error {
	ev, err := events.DecodeSubject(d.Subject, d.Data)
	if err != nil {
		return bus.Permanent(fmt.Errorf("decode %s: %w", d.Subject, err))
	}
	var n sessionNotice
	switch e := ev.(type) {
	case events.SessionCreated:
		n = sessionNotice{kind: events.NotifySessionCreated, meta: e.Meta, openid: e.OpenID, account: e.KfAccount}
	case events.SessionSwitched:
		n = sessionNotice{kind: events.NotifySessionSwitched, meta: e.Meta, openid: e.OpenID, account: e.ToKfAccount, fromAccount: e.FromKfAccount}
	case events.SessionClosed:
		n = sessionNotice{kind: events.NotifySessionClosed, meta: e.Meta, openid: e.OpenID, account: e.KfAccount, session: feedbacklink.ClosedSession(e)}
	default:
		return nil // a session subject this version does not announce
	}
	if n.openid == "" {
		return bus.Permanent(fmt.Errorf("%s without openid", d.Subject))
	}
	cause, err := causeID(d)
	if err != nil {
		return err
	}
	ctx, cancel := s.handlerContext()
	defer cancel()
	received := receivedAt(n.meta, d)
	at := n.meta.OccurredAt
	if at.IsZero() {
		at = received
	}
	// The session mark is kept even when the message is not sent: it is
	// what silences wait messages (so it is not needed without them).
	if s.cfg.enabled(events.NotifyWaitEstimated) {
		open := n.kind != events.NotifySessionClosed
		if err := s.customers.RecordSession(ctx, n.openid, open, at); err != nil {
			return s.retry(n.kind, fmt.Errorf("record customer session: %w", err))
		}
	}
	if !s.cfg.enabled(n.kind) {
		s.count(n.kind, outcomeSkipped)
		return nil
	}
	if age := s.now().Sub(received); age > s.cfg.MaxEventAge {
		s.log.Info("session event too old to announce", zap.String("kind", n.kind), zap.String("cause_key", causeKey(cause)), zap.Duration("age", age))
		s.count(n.kind, outcomeSkipped)
		return nil
	}
	if quiet, err := s.suppressed(ctx, n.kind, n.openid); err != nil || quiet {
		return err
	}
	return s.notify(ctx, d, job{
		kind: n.kind, cause: cause, openid: n.openid, appID: n.meta.AppID, receivedAt: received,
		prepare: func(ctx context.Context) (message, error) { return s.sessionMessage(ctx, n), nil },
	})
}

func (s *Service) sessionMessage(ctx context.Context, n sessionNotice) message {
	t := s.templates[n.kind]
	values := map[string]string{"kf_account": n.account, "from_kf_account": n.fromAccount}
	// getkflist only when the text names an agent.
	if t.uses("nickname") {
		values["nickname"] = s.names.Lookup(ctx, n.account)
	}
	if t.uses("from_nickname") {
		values["from_nickname"] = s.names.Lookup(ctx, n.fromAccount)
	}
	m := message{}
	if s.cfg.SendAsAgent {
		m.asAgent = n.account
	}
	if n.kind == events.NotifySessionClosed && t.uses("feedback_url") {
		link, redacted := s.feedbackURL(n.openid, n.session)
		values["feedback_url"] = redacted
		m.recorded = t.render(values)
		values["feedback_url"] = link
	}
	m.text = t.render(values)
	if m.recorded == "" {
		m.recorded = m.text
	}
	return m
}

func (s *Service) handleWait(_ context.Context, d *bus.Delivery) error {
	const kind = events.NotifyWaitEstimated
	est, err := events.Decode[events.WaitEstimated](d.Data)
	if err != nil {
		return bus.Permanent(fmt.Errorf("decode %s: %w", d.Subject, err))
	}
	if est.OpenID == "" {
		return bus.Permanent(fmt.Errorf("%s without openid", d.Subject))
	}
	cause, err := causeID(d)
	if err != nil {
		return err
	}
	if !s.cfg.enabled(kind) {
		s.count(kind, outcomeSkipped)
		return nil
	}
	received := receivedAt(est.Meta, d)
	if est.OccurredAt.IsZero() {
		est.OccurredAt = received
	}
	ctx, cancel := s.handlerContext()
	defer cancel()
	if quiet, err := s.suppressed(ctx, kind, est.OpenID); err != nil || quiet {
		return err
	}
	// Most estimates are held back; a read decides that without writing.
	// A redelivery goes through the claim all the same: it may be the
	// one that finds a marker left by a process that died while sending.
	if d.NumDelivered <= 1 {
		_, _, send, reason, err := s.decideWaitNow(ctx, est, s.now())
		if err != nil {
			return s.retry(kind, err)
		}
		if !send {
			s.count(kind, waitOutcome(reason))
			return nil
		}
	}
	return s.notify(ctx, d, job{
		kind: kind, cause: cause, openid: est.OpenID, appID: est.AppID, receivedAt: received,
		prepare: func(ctx context.Context) (message, error) { return s.waitMessage(ctx, est) },
	})
}

// waitMessage decides again, now under compare-and-set on the customer's
// wait record, and reserves the message there before it is sent: two
// processes with two estimates for one customer cannot both send.
func (s *Service) waitMessage(ctx context.Context, est events.WaitEstimated) (message, error) {
	for range 8 {
		now := s.now()
		st, rev, send, reason, err := s.decideWaitNow(ctx, est, now)
		if err != nil {
			return message{}, err
		}
		if !send {
			return message{skip: reason}, nil
		}
		newRev, err := s.storeWait(ctx, est.OpenID, waitRecord{SentAt: now, WaitSeconds: est.WaitSeconds}, rev)
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return message{}, err
		}
		tmpl := s.templates[events.NotifyWaitEstimated]
		if est.Position == 1 && s.waitNext != nil {
			tmpl = s.waitNext
		}
		text := tmpl.render(waitValues(est))
		return message{text: text, recorded: text, release: func(ctx context.Context) {
			// Give the reservation back so the retry is not throttled by
			// a message that was never sent.
			if _, err := s.storeWait(ctx, est.OpenID, st, newRev); err != nil {
				s.log.Warn("release wait reservation", zap.Error(err))
			}
		}}, nil
	}
	return message{}, errors.New("wait record: too many concurrent updates")
}

func waitValues(est events.WaitEstimated) map[string]string {
	ahead := max(est.Position-1, 0)
	return map[string]string{
		"position":    fmt.Sprint(est.Position),
		"ahead":       fmt.Sprint(ahead),
		"minutes":     fmt.Sprint(ceilMinutes(est.WaitSeconds)),
		"p90_minutes": fmt.Sprint(ceilMinutes(max(est.WaitP90Seconds, est.WaitSeconds))),
	}
}

func ceilMinutes(seconds int64) int64 {
	return max(1, (seconds+59)/60)
}

func waitOutcome(reason string) string {
	switch reason {
	case waitTooSoon, waitUnchanged:
		return outcomeThrottled
	}
	return outcomeSkipped
}

// suppressed asks Deps.Suppress and counts a suppressed message as
// skipped. A failed read is returned as a retry: nothing is sent that
// queuecare may already have said.
func (s *Service) suppressed(ctx context.Context, kind, openid string) (bool, error) {
	if s.suppress == nil {
		return false, nil
	}
	quiet, err := s.suppress(ctx, kind, openid)
	if err != nil {
		return false, s.retry(kind, fmt.Errorf("read customer state: %w", err))
	}
	if quiet {
		s.count(kind, outcomeSkipped)
	}
	return quiet, nil
}

// retry counts a try that will be repeated and returns the error that

// causeID is the event's ce-id, the idempotency key of its message.
func causeID(d *bus.Delivery) (string, error) {
	if id := d.ID(); id != "" {
		return id, nil
	}
	if id := d.Header[events.HeaderMsgID]; id != "" {
		return id, nil
	}
	// Without an id a replay cannot be recognised; sending could repeat.
	return "", bus.Permanent(fmt.Errorf("%s at stream sequence %d has no ce-id", d.Subject, d.StreamSeq))
}

func receivedAt(m events.Meta, d *bus.Delivery) time.Time {
	switch {
	case !m.ReceivedAt.IsZero():
		return m.ReceivedAt
	case !m.OccurredAt.IsZero():
		return m.OccurredAt
	}
	return d.Published
}
