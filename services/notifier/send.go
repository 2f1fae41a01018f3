package notifier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
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

// notify is the exactly-once core (see the package doc): claim the cause,
// send, publish the outcome, record it.
func (s *Service) notify(ctx context.Context, d *bus.Delivery, j job) error {
	key := causeKey(j.cause)
	// Wait for the rate limiter before claiming: a claim is "sending", and
	// a process that dies holding one loses that message (at-most-once),
	// so claims must be held only for the send itself, not for the queue.
	if s.limiter != nil {
		if err := s.limiter.Wait(ctx); err != nil {
			return s.retry(j.kind, fmt.Errorf("rate limit: %w", err))
		}
	}
	rev, existing, err := s.claim(ctx, key, j)
	if err != nil {
		return s.retry(j.kind, err)
	}
	if existing != nil {
		return s.settle(ctx, j, key, existing)
	}
	s.inflight.add(j.cause)
	defer s.inflight.remove(j.cause)

	msg, err := j.prepare(ctx)
	if err != nil {
		s.unclaim(key, rev)
		return s.retry(j.kind, err)
	}
	if msg.skip != "" {
		if err := s.finishSkipped(key, rev, j, msg.skip); err != nil {
			s.log.Warn("record skipped notification", zap.Error(err), zap.String("cause_key", key))
			s.unclaim(key, rev)
		}
		s.count(j.kind, waitOutcome(msg.skip))
		return nil
	}
	release := func() {
		if msg.release != nil {
			rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RecordTimeout)
			defer cancel()
			msg.release(rctx)
		}
		s.unclaim(key, rev)
	}
	sendErr := s.sender.SendText(ctx, j.openid, msg.text, msg.asAgent)
	now := s.now()
	n := events.Notification{
		Meta:   events.Meta{AppID: j.appID, OccurredAt: now, ReceivedAt: now},
		OpenID: j.openid, Kind: j.kind, CauseEventID: j.cause, Text: msg.recorded, Outcome: events.OutcomeSent,
	}
	switch wechat.Classify(sendErr) {
	case wechat.VerdictDone:
		s.metrics.latency.WithLabelValues(j.kind).Observe(now.Sub(j.receivedAt).Seconds())
	case wechat.VerdictRetry:
		// Certainly not sent: however often it fails, trying again cannot
		// message the customer twice. The bus redelivers with capped
		// back-off for as long as it takes; session notices past
		// MaxEventAge are then skipped as too old.
		release()
		return s.retry(j.kind, sendErr)
	case wechat.VerdictUnknown:
		n.Outcome, n.ErrMsg = events.OutcomeFailed, unknownErrMsg(sendErr)
	default: // refused
		n.Outcome = events.OutcomeFailed
		n.ErrCode, n.ErrMsg = errCode(sendErr)
	}
	if n.Outcome == events.OutcomeFailed {
		s.log.Warn("notification failed", zap.String("kind", j.kind), zap.String("cause_key", key),
			zap.Int("errcode", n.ErrCode), zap.String("errmsg", n.ErrMsg))
	}
	if err := s.record(key, rev, n); err != nil {
		return s.retry(j.kind, err)
	}
	s.count(j.kind, n.Outcome)
	return nil
}

// claim creates the cause's "sending" marker; existing is the record found
// instead when another delivery got there first.
func (s *Service) claim(ctx context.Context, key string, j job) (rev uint64, existing jetstream.KeyValueEntry, err error) {
	marker, err := encodeRecord(causeRecord{State: stateSending, Cause: j.cause, Kind: j.kind, Owner: s.cfg.Instance, At: s.now()})
	if err != nil {
		return 0, nil, err
	}
	for range 3 {
		rev, err = s.kv.Create(ctx, key, marker)
		if err == nil {
			return rev, nil, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, nil, fmt.Errorf("claim %s: %w", key, err)
		}
		existing, err = s.kv.Get(ctx, key)
		if err == nil {
			return 0, existing, nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, nil, fmt.Errorf("read claim %s: %w", key, err)
		}
		// Released between our create and get: try again.
	}
	return 0, nil, fmt.Errorf("claim %s: key keeps changing", key)
}

// unclaim removes our marker so a redelivery starts afresh; only used when
// nothing was sent. If it fails, the marker turns stale and the cause is
// recorded as failed with an unknown outcome: at most once still holds.
func (s *Service) unclaim(key string, rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RecordTimeout)
	defer cancel()
	if err := s.kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		s.log.Warn("release notification claim", zap.Error(err))
	}
}

// settle handles a cause that already has a record.
func (s *Service) settle(ctx context.Context, j job, key string, entry jetstream.KeyValueEntry) error {
	rec, err := decodeRecord(entry.Value())
	if err != nil {
		// Unreadable: someone handled it. Never risk a second message.
		s.log.Error("unreadable notification record; not sending", zap.Error(err), zap.String("cause_key", key))
		s.count(j.kind, outcomeDuplicate)
		return nil
	}
	if rec.final() {
		s.count(j.kind, outcomeDuplicate)
		return nil
	}
	// A "sending" marker.
	if n, ok := s.unrecorded.get(j.cause); ok {
		// This process sent it but could not record it: finish that.
		if err := s.record(key, entry.Revision(), n); err != nil {
			return s.retry(j.kind, err)
		}
		s.count(j.kind, n.Outcome)
		return nil
	}
	if s.inflight.has(j.cause) {
		return s.retry(j.kind, errInFlight)
	}
	if age := s.now().Sub(rec.At); age < s.cfg.staleAfter() {
		return s.retry(j.kind, fmt.Errorf("%w (by %s, %v ago)", errClaimed, rec.Owner, age.Round(time.Millisecond)))
	}
	n, err := s.recoverCrashed(ctx, j, key, entry.Revision(), rec)
	if err != nil {
		return s.retry(j.kind, err)
	}
	s.count(j.kind, n.Outcome)
	return nil
}

// unknownOutcome is the errmsg of a message whose sender died between the
// claim and the record.
const unknownOutcome = "unknown outcome (crash during send)"

// recoverCrashed settles a marker left by a process that died after
// claiming: the message may or may not have reached WeChat, which has no
// idempotency key, so it is not sent again (at most once) and recorded as
// failed — unless the dead process had already published the outcome,
// which JetStream's de-duplication reveals.
func (s *Service) recoverCrashed(ctx context.Context, j job, key string, rev uint64, rec causeRecord) (events.Notification, error) {
	now := s.now()
	n := events.Notification{
		Meta:   events.Meta{AppID: j.appID, OccurredAt: now, ReceivedAt: now},
		OpenID: j.openid, Kind: j.kind, CauseEventID: j.cause, Outcome: events.OutcomeFailed, ErrMsg: unknownOutcome,
	}
	pub, err := s.publishOutcome(ctx, n)
	if err != nil {
		return n, err
	}
	if pub.Duplicate {
		if orig, err := s.loadOutcome(ctx, pub.Sequence); err == nil {
			n = orig
		} else {
			s.log.Warn("read published outcome", zap.Error(err), zap.Uint64("seq", pub.Sequence))
		}
	}
	s.log.Warn("settled a notification left by a stopped process", zap.String("cause_key", key),
		zap.String("owner", rec.Owner), zap.String("outcome", n.Outcome), zap.String("errmsg", n.ErrMsg))
	final, err := encodeRecord(causeRecord{State: n.Outcome, Cause: j.cause, Kind: j.kind, Owner: s.cfg.Instance, At: now,
		ErrCode: n.ErrCode, ErrMsg: n.ErrMsg, Seq: pub.Sequence})
	if err != nil {
		return n, err
	}
	if _, err := s.kv.Update(ctx, key, final, rev); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return n, fmt.Errorf("record recovered %s: %w", key, err)
	}
	return n, nil
}

// record publishes the outcome event and then turns the marker into the
// final record. Publishing first means a final record always has its
// event; a crash in between leaves a marker whose recovery finds the event
// through de-duplication. When either step fails, the outcome is kept in
// memory for the redelivery.
func (s *Service) record(key string, rev uint64, n events.Notification) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RecordTimeout)
	defer cancel()
	pub, err := s.publishOutcome(ctx, n)
	if err != nil {
		s.unrecorded.put(n)
		return err
	}
	final, err := encodeRecord(causeRecord{State: n.Outcome, Cause: n.CauseEventID, Kind: n.Kind, Owner: s.cfg.Instance,
		At: s.now(), ErrCode: n.ErrCode, ErrMsg: n.ErrMsg, Seq: pub.Sequence})
	if err != nil {
		return err
	}
	if _, err := s.kv.Update(ctx, key, final, rev); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			// Another process took our marker for a dead one's; its
			// outcome event was de-duplicated against ours.
			s.log.Warn("notification record taken over by another process", zap.String("cause_key", key))
			s.unrecorded.remove(n.CauseEventID)
			return nil
		}
		s.unrecorded.put(n)
		return fmt.Errorf("record %s: %w", key, err)
	}
	s.unrecorded.remove(n.CauseEventID)
	return nil
}

func (s *Service) finishSkipped(key string, rev uint64, j job, reason string) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RecordTimeout)
	defer cancel()
	rec, err := encodeRecord(causeRecord{State: stateSkipped, Cause: j.cause, Kind: j.kind, Owner: s.cfg.Instance, At: s.now(), ErrMsg: reason})
	if err != nil {
		return err
	}
	_, err = s.kv.Update(ctx, key, rec, rev)
	return err
}

// OutcomeID is the ce-id (and Nats-Msg-Id) of the outcome event of the
// cause event with ce-id causeID: deterministic, so the outcome is itself
// published once.
func OutcomeID(causeID string) string { return "notify-" + causeID }

func (s *Service) publishOutcome(ctx context.Context, n events.Notification) (bus.Published, error) {
	pub, err := s.bus.Publish(ctx, n, bus.Envelope{ID: OutcomeID(n.CauseEventID), Source: "kefu/notifier", Time: n.OccurredAt})
	if err != nil {
		return pub, fmt.Errorf("publish outcome (%s): %w", causeKey(n.CauseEventID), err)
	}
	return pub, nil
}

func (s *Service) loadOutcome(ctx context.Context, seq uint64) (events.Notification, error) {
	stream, err := s.bus.JS.Stream(ctx, events.StreamNotify)
	if err != nil {
		return events.Notification{}, err
	}
	msg, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return events.Notification{}, err
	}
	return events.Decode[events.Notification](msg.Data)
}

// makes the bus redeliver after a delay.
func (s *Service) retry(kind string, err error) error {
	s.count(kind, outcomeRetry)
	return err
}

func (s *Service) count(kind, outcome string) {
	s.metrics.messages.WithLabelValues(kind, outcome).Inc()
}

var (
	errInFlight = errors.New("being sent by this process")
	errClaimed  = errors.New("being sent by another process")
)

// keySet is the set of causes this process is sending now.
type keySet struct {
	mu sync.Mutex
	m  map[string]struct{}
}

func (k *keySet) add(key string) { k.mu.Lock(); k.m[key] = struct{}{}; k.mu.Unlock() }

func (k *keySet) remove(key string) { k.mu.Lock(); delete(k.m, key); k.mu.Unlock() }

func (k *keySet) has(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.m[key]
	return ok
}

// outcomes are sends whose outcome could not be published or recorded
// yet, by cause; the redelivery of the cause finishes the job.
type outcomes struct {
	mu sync.Mutex
	m  map[string]events.Notification
}

func (o *outcomes) put(n events.Notification) {
	o.mu.Lock()
	o.m[n.CauseEventID] = n
	o.mu.Unlock()
}

func (o *outcomes) get(cause string) (events.Notification, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, ok := o.m[cause]
	return n, ok
}

func (o *outcomes) remove(cause string) { o.mu.Lock(); delete(o.m, cause); o.mu.Unlock() }

// unknownErrMsg is the errmsg of a message that may or may not have
// reached the customer: "unknown outcome: <reason>: <error>", the reason
// one of wechat.UnknownReasons (the labels of
// kefu_wechat_api_unknown_outcome_total).
func unknownErrMsg(err error) string {
	return "unknown outcome: " + wechat.UnknownReason(err) + ": " + err.Error()
}

func errCode(err error) (int, string) {
	var apiErr *wechat.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrCode, strings.TrimSpace(apiErr.ErrMsg)
	}
	return 0, err.Error()
}
