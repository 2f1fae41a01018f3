package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/pkg/events"
)

// waitRecord is the notifier's own record of a customer, the throttle of
// wait messages: when it last told them their wait (or reserved the
// message for sending) and what. Its JSON fields are those of the record
// kept under the same key before the session state moved to
// internal/customers, so a record written then still throttles.
type waitRecord struct {
	SentAt      time.Time `json:"wait_sent_at,omitzero"`
	WaitSeconds int64     `json:"wait_seconds,omitempty"`
}

// openSessionExpiry: an open session older than this no longer silences
// wait messages. A kf_close_session callback can be lost (WeChat gives up
// after three tries); without a limit that customer would never hear about
// the queue again.
const openSessionExpiry = 12 * time.Hour

// Reasons of a wait decision (also log values).
const (
	waitFirst       = "first"        // entering the queue: send
	waitChanged     = "changed"      // estimate changed materially: send
	waitStale       = "stale"        // estimate too old to tell
	waitInSession   = "in_session"   // a session was created: never again
	waitBeforeClose = "before_close" // estimate from before the last session ended
	waitTooSoon     = "too_soon"     // within MinInterval of the last message
	waitUnchanged   = "unchanged"    // change below MinChange or MinChangeRatio
)

// decideWait applies WaitRules to an estimate made at est.OccurredAt and
// handled at now, for a customer whose latest session event is session and
// who was last told their wait as sent says.
func decideWait(session customers.SessionMark, sent waitRecord, est events.WaitEstimated, now time.Time, r WaitRules) (send bool, reason string) {
	at := est.OccurredAt
	if now.Sub(at) > r.MaxAge {
		return false, waitStale
	}
	switch session.State {
	case customers.SessionOpen:
		if at.Before(session.At.Add(openSessionExpiry)) {
			return false, waitInSession
		}
	case customers.SessionClosed:
		if !at.After(session.At) {
			return false, waitBeforeClose
		}
	}
	// A message sent before the last session event belongs to an earlier
	// visit: this is a new one, and entering the queue is announced.
	if sent.SentAt.IsZero() || (session.State != "" && !sent.SentAt.After(session.At)) {
		return true, waitFirst
	}
	if now.Sub(sent.SentAt) < r.MinInterval {
		return false, waitTooSoon
	}
	change := est.WaitSeconds - sent.WaitSeconds
	if change < 0 {
		change = -change
	}
	if time.Duration(change)*time.Second < r.MinChange || float64(change) < r.MinChangeRatio*float64(sent.WaitSeconds) {
		return false, waitUnchanged
	}
	return true, waitChanged
}

// decideWaitNow reads what decideWait needs: the customer's session mark
// from the read model and the wait record from kefu_notified, with the
// record's revision (0: none), and decides at now.
func (s *Service) decideWaitNow(ctx context.Context, est events.WaitEstimated, now time.Time) (sent waitRecord, rev uint64, send bool, reason string, err error) {
	session, err := s.customers.LastSession(ctx, est.OpenID)
	if err != nil {
		return waitRecord{}, 0, false, "", fmt.Errorf("read customer session: %w", err)
	}
	if sent, rev, err = s.loadWait(ctx, est.OpenID); err != nil {
		return waitRecord{}, 0, false, "", err
	}
	send, reason = decideWait(session, sent, est, now, s.cfg.Wait)
	return sent, rev, send, reason, nil
}

// errConflict: the wait record changed since it was read.
var errConflict = errors.New("changed concurrently")

// loadWait returns the customer's wait record and its revision (0: none).
func (s *Service) loadWait(ctx context.Context, openid string) (waitRecord, uint64, error) {
	var w waitRecord
	e, err := s.kv.Get(ctx, customerKey(openid))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return w, 0, nil
	}
	if err != nil {
		return w, 0, fmt.Errorf("read wait record: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &w); err != nil {
		// A record we cannot read is replaced rather than blocking the customer.
		s.log.Warn("unreadable wait record replaced", zap.Error(err))
		return waitRecord{}, e.Revision(), nil
	}
	return w, e.Revision(), nil
}

// storeWait writes the record if it is still at rev; errConflict
// otherwise.
func (s *Service) storeWait(ctx context.Context, openid string, w waitRecord, rev uint64) (uint64, error) {
	data, err := json.Marshal(w)
	if err != nil {
		return 0, fmt.Errorf("encode wait record: %w", err)
	}
	key := customerKey(openid)
	var newRev uint64
	if rev == 0 {
		newRev, err = s.kv.Create(ctx, key, data)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, errConflict
		}
	} else {
		newRev, err = s.kv.Update(ctx, key, data, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, errConflict
		}
	}
	if err != nil {
		return 0, fmt.Errorf("write wait record: %w", err)
	}
	return newRev, nil
}
