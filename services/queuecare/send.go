package queuecare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// States of a message record in kefu_notified.
const (
	sendPending = "sending"
	sendSent    = events.OutcomeSent
	sendFailed  = events.OutcomeFailed
)

// sendRecord makes a customer message happen at most once: it is created
// (compare-and-set) before the send and completed after it.
type sendRecord struct {
	State   string    `json:"state"`
	Kind    string    `json:"kind"`
	Cause   string    `json:"cause"`
	Owner   string    `json:"owner"`
	At      time.Time `json:"at"`
	ErrCode int       `json:"errcode,omitempty"`
	ErrMsg  string    `json:"errmsg,omitempty"`
}

// outgoing is one message kefu sends a customer on its own account.
type outgoing struct {
	// key in kefu_notified: one per fact (a left queue case, a stale session).
	key    string
	kind   string // events.NotifyLeftQueue, events.NotifyStaleClosed
	cause  string // ce-id of the cause; the outcome event's id is "notify-" + cause
	appID  string
	openid string
	text   string
	// recorded is text as the outcome event shows it (secrets blanked);
	// "" means the same as text.
	recorded string
}

// unsent holds the claims this process could not release after a send that
// certainly did not reach WeChat, by service and key, with the claim's
// revision: only that revision, still ours, may be taken over.
var unsent sync.Map // unsentKey → uint64

type unsentKey struct {
	s   *Service
	key string
}

// errSendInFlight: another process claimed the message moments ago and may
// be sending it now; the caller retries later.
var errSendInFlight = errors.New("queuecare: message being sent by another process")

// sendOnce sends m unless it was sent (or given up) before, and publishes
// the outcome on KEFU_NOTIFY as the notifier does for its own messages.
// WeChat has no idempotency key, so a send whose outcome cannot be known
// (the process died during it, the answer was lost) is not repeated: a
// duplicate "you left the queue" counts against the customer's message
// limit (45047) and reads worse than a missing one.
func (s *Service) sendOnce(ctx context.Context, m outgoing) (outcome string, err error) {
	claim, _ := json.Marshal(sendRecord{State: sendPending, Kind: m.kind, Cause: m.cause, Owner: s.cfg.Holder, At: s.now().UTC()})
	rev, err := s.notified.Create(ctx, m.key, claim)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return "", fmt.Errorf("claim %s message: %w", m.kind, err)
		}
		return s.settleClaimed(ctx, m)
	}
	return s.sendClaimed(ctx, m, rev)
}

// sendClaimed sends m under our claim at rev and records the outcome.
func (s *Service) sendClaimed(ctx context.Context, m outgoing, rev uint64) (outcome string, err error) {
	sctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	sendErr := s.api.SendText(sctx, m.openid, m.text, "")
	cancel()

	rec := sendRecord{State: sendSent, Kind: m.kind, Cause: m.cause, Owner: s.cfg.Holder, At: s.now().UTC()}
	// The notifier's classification (wechat.Classify): both services send
	// to the same customers and must agree on what may be repeated.
	switch wechat.Classify(sendErr) {
	case wechat.VerdictDone:
	case wechat.VerdictRetry:
		// Certainly not sent (no token, no connection, busy, quota, token
		// rejected, 429): give the claim back and let the caller retry. Its
		// own context may have ended; the release must not.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if derr := s.notified.Delete(rctx, m.key, jetstream.LastRevision(rev)); derr != nil {
			// The claim stays; this process remembers that it sent
			// nothing under it, so its retry takes the claim over instead
			// of waiting for it to look abandoned (and be given up).
			unsent.Store(unsentKey{s, m.key}, rev)
			s.log.Warn("release message claim", zap.String("kind", m.kind), zap.Error(derr))
		}
		cancel()
		return "", fmt.Errorf("send %s: %w", m.kind, sendErr)
	case wechat.VerdictUnknown:
		rec.State, rec.ErrMsg = sendFailed, "unknown outcome: "+wechat.UnknownReason(sendErr)+": "+sendErr.Error()
	default: // refused
		rec.State, rec.ErrCode, rec.ErrMsg = sendFailed, errCode(sendErr), sendErr.Error()
	}
	s.finishSend(ctx, m, rec, rev)
	return rec.State, nil
}

// settleClaimed handles a message someone claimed before: done, in flight,
// or abandoned by a process that died.
func (s *Service) settleClaimed(ctx context.Context, m outgoing) (string, error) {
	entry, err := s.notified.Get(ctx, m.key)
	if err != nil {
		return "", fmt.Errorf("read %s message record: %w", m.kind, err)
	}
	if rev, ok := unsent.LoadAndDelete(unsentKey{s, m.key}); ok && rev.(uint64) == entry.Revision() {
		return s.sendClaimed(ctx, m, entry.Revision())
	}
	var rec sendRecord
	if err := json.Unmarshal(entry.Value(), &rec); err != nil || rec.State != sendPending {
		return "duplicate", nil
	}
	// A claim younger than one send (plus slack for clock skew) may belong
	// to a live process.
	if s.now().Sub(rec.At) < s.cfg.SendTimeout+5*time.Second {
		return "", errSendInFlight
	}
	rec = sendRecord{State: sendFailed, Kind: m.kind, Cause: m.cause, Owner: s.cfg.Holder, At: s.now().UTC(),
		ErrMsg: "unknown outcome (crash during send)"}
	s.finishSend(ctx, m, rec, entry.Revision())
	return sendFailed, nil
}

// finishSend records the outcome and publishes it. Failures here are
// logged, not returned: the message is decided, and retrying the handler
// must not send it again.
func (s *Service) finishSend(ctx context.Context, m outgoing, rec sendRecord, rev uint64) {
	data, _ := json.Marshal(rec)
	if _, err := s.notified.Update(ctx, m.key, data, rev); err != nil {
		s.log.Warn("record message outcome", zap.String("kind", m.kind), zap.Error(err))
	}
	now := s.now().UTC()
	text := m.recorded
	if text == "" {
		text = m.text
	}
	n := events.Notification{Meta: events.Meta{AppID: m.appID, OccurredAt: now, ReceivedAt: now},
		OpenID: m.openid, Kind: m.kind, CauseEventID: m.cause, Outcome: rec.State, ErrCode: rec.ErrCode, ErrMsg: rec.ErrMsg, Text: text}
	if _, err := s.bus.Publish(ctx, n, bus.Envelope{ID: "notify-" + m.cause, Source: s.source}); err != nil {
		s.log.Warn("publish message outcome", zap.String("kind", m.kind), zap.Error(err))
	}
	if rec.State == sendFailed {
		s.log.Warn("message to customer failed", zap.String("kind", m.kind), zap.Int("errcode", rec.ErrCode), zap.String("errmsg", rec.ErrMsg))
	}
}

func errCode(err error) int {
	var apiErr *wechat.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrCode
	}
	return 0
}

// SuppressNotice reports whether the notifier must not send a message of
// kind to openid (see CustomerState.SuppressWaitNotice and
// SuppressSessionNotice). An unknown customer is announced; a state that
// cannot be read is an error, so that the notifier retries rather than
// say goodbye after kefu's own goodbye.
func (m *States) SuppressNotice(ctx context.Context, kind, openid string) (bool, error) {
	st, err := m.Get(ctx, openid)
	switch {
	case errors.Is(err, ErrUnknownCustomer), errors.Is(err, ErrInvalidOpenID):
		return false, nil
	case err != nil:
		return false, err
	case kind == events.NotifyWaitEstimated:
		return st.SuppressWaitNotice(), nil
	}
	return st.SuppressSessionNotice(), nil
}
