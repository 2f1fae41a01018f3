package notifier

import (
	"context"
	"fmt"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/sendonce"
)

// job is one message to send for one cause event.
type job struct {
	kind, cause, openid, appID string
	receivedAt                 time.Time
	// prepare runs once the cause is claimed: it renders the message, or
	// decides not to send it after all.
	prepare func(ctx context.Context) (message, error)
}

type message struct {
	text     string // what the customer gets
	recorded string // the same with secrets (the feedback token) blanked
	asAgent  string
	skip     string                    // set: do not send, for this reason
	release  func(ctx context.Context) // undoes reservations when not sent and retried
}

func (m message) content() sendonce.Content {
	return sendonce.Content{Text: m.text, Recorded: m.recorded, AsAgent: m.asAgent, Skip: m.skip, Release: m.release}
}

// notify sends j's message at most once through the ledger (see the
// package doc and package sendonce) and counts the outcome.
func (s *Service) notify(ctx context.Context, _ *bus.Delivery, j job) error {
	// Wait for the rate limiter before claiming: a claim is "sending", and
	// a process that dies holding one loses that message (at-most-once),
	// so claims must be held only for the send itself, not for the queue.
	if s.limiter != nil {
		if err := s.limiter.Wait(ctx); err != nil {
			return s.retry(j.kind, fmt.Errorf("rate limit: %w", err))
		}
	}
	res, err := s.ledger.Send(ctx, sendonce.Message{
		Key: causeKey(j.cause), Kind: j.kind, Cause: j.cause, AppID: j.appID, OpenID: j.openid,
		ReceivedAt: j.receivedAt,
		Prepare: func(ctx context.Context) (sendonce.Content, error) {
			m, err := j.prepare(ctx)
			return m.content(), err
		},
	})
	switch {
	case err != nil:
		// Not decided (certainly not sent, claimed by a live process, the
		// outcome not recorded yet): the bus redelivers with capped
		// back-off for as long as it takes; session notices past
		// MaxEventAge are then skipped as too old.
		return s.retry(j.kind, err)
	case res.Outcome == sendonce.StateSkipped:
		s.count(j.kind, waitOutcome(res.Reason))
	default:
		s.count(j.kind, res.Outcome)
	}
	return nil
}

// observeSent is the ledger's hook for the latency of a sent message.
func (s *Service) observeSent(m *sendonce.Message, at time.Time) {
	s.metrics.latency.WithLabelValues(m.Kind).Observe(at.Sub(m.ReceivedAt).Seconds())
}

// OutcomeID is the ce-id (and Nats-Msg-Id) of the outcome event of the
// cause event with ce-id causeID: deterministic, so the outcome is itself
// published once.
func OutcomeID(causeID string) string { return sendonce.OutcomeID(causeID) }

// retry counts a try that will be repeated and returns the error that
// makes the bus redeliver after a delay.
func (s *Service) retry(kind string, err error) error {
	s.count(kind, outcomeRetry)
	return err
}

func (s *Service) count(kind, outcome string) {
	s.metrics.messages.WithLabelValues(kind, outcome).Inc()
}
