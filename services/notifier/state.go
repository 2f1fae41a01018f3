package notifier

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

// What the notifier keeps in the kefu_notified bucket:
//
//	cause.<h>     one per event that caused (or could have caused) a
//	              message; h = sha256(ce-id)[:16] in hex, because ce-ids
//	              contain characters KV keys do not allow ("@")
//	customer.<h>  one per customer; h = sha256(openid)[:16]: the session
//	              state and the wait messages already sent, shared by every
//	              notifier process

func causeKey(ceID string) string { return "cause." + shortHash(ceID) }

func customerKey(openid string) string { return "customer." + shortHash(openid) }

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// Session states of a customer.
const (
	sessionNone   = ""
	sessionOpen   = "open"
	sessionClosed = "closed"
)

// customerState is what the notifier knows of one customer.
type customerState struct {
	// Session is the state after the latest session event (by its time).
	Session string `json:"session,omitempty"`
	// SessionAt is the occurred_at of that event.
	SessionAt time.Time `json:"session_at,omitzero"`
	// WaitSentAt is when the last wait message was sent (or reserved for
	// sending); WaitSeconds the estimate it carried.
	WaitSentAt  time.Time `json:"wait_sent_at,omitzero"`
	WaitSeconds int64     `json:"wait_seconds,omitempty"`
}

// openSessionExpiry: an open session older than this no longer silences
// wait messages. A kf_close_session callback can be lost (WeChat gives up
// after three tries); without a limit that customer would never hear about
// the queue again.
const openSessionExpiry = 12 * time.Hour

// applySession moves a customer's state by a session event at time at.
// Events are applied in the order of their times, whatever the order they
// are handled in; of two events in the same second (WeChat's resolution) an
// open session wins, because wrongly staying silent is better than telling
// a served customer about the queue.
func applySession(st customerState, kind string, at time.Time) (customerState, bool) {
	next := sessionOpen
	if kind == events.NotifySessionClosed {
		next = sessionClosed
	}
	switch {
	case at.Before(st.SessionAt):
		return st, false
	case at.Equal(st.SessionAt) && (st.Session == next || st.Session == sessionOpen):
		return st, false
	}
	st.Session, st.SessionAt = next, at
	return st, true
}

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
// handled at now.
func decideWait(st customerState, est events.WaitEstimated, now time.Time, r WaitRules) (send bool, reason string) {
	at := est.OccurredAt
	if now.Sub(at) > r.MaxAge {
		return false, waitStale
	}
	switch st.Session {
	case sessionOpen:
		if at.Before(st.SessionAt.Add(openSessionExpiry)) {
			return false, waitInSession
		}
	case sessionClosed:
		if !at.After(st.SessionAt) {
			return false, waitBeforeClose
		}
	}
	// A message sent before the last session event belongs to an earlier
	// visit: this is a new one, and entering the queue is announced.
	if st.WaitSentAt.IsZero() || (st.Session != sessionNone && !st.WaitSentAt.After(st.SessionAt)) {
		return true, waitFirst
	}
	if now.Sub(st.WaitSentAt) < r.MinInterval {
		return false, waitTooSoon
	}
	change := est.WaitSeconds - st.WaitSeconds
	if change < 0 {
		change = -change
	}
	if time.Duration(change)*time.Second < r.MinChange || float64(change) < r.MinChangeRatio*float64(st.WaitSeconds) {
		return false, waitUnchanged
	}
	return true, waitChanged
}

func encodeJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return b, nil
}

func decodeJSON(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %T: %w", v, err)
	}
	return nil
}
