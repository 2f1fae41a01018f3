package customers

import (
	"context"
	"time"
)

// The notifier's one question that the status above cannot answer: did
// this customer's latest session event, by its time, leave a session open
// or closed, and when? It decides whether a wait estimate belongs to the
// current visit (services/notifier). The status cannot stand in for it:
// it orders events by stream sequence within a second, takes polls into
// account and absorbs the sessions of a customer who left, while the
// notifier needs the plain order of session events by time, with an open
// session winning a tie — wrongly staying silent is better than telling a
// served customer about the queue.

// States of a SessionMark.
const (
	SessionOpen   = "open"
	SessionClosed = "closed"
)

// SessionMark is the latest session event of a customer by its time; the
// zero mark means none was seen.
type SessionMark struct {
	// State is SessionOpen (created, switched) or SessionClosed.
	State string `json:"state"`
	// At is the occurred_at of that event.
	At time.Time `json:"at"`
}

// Apply moves the mark by a session event at time at (open: created or
// switched; otherwise closed). Events are applied in the order of their
// times, whatever the order they are handled in; of two events in the
// same second (WeChat's resolution) an open session wins.
func (m *SessionMark) Apply(open bool, at time.Time) bool {
	next := SessionClosed
	if open {
		next = SessionOpen
	}
	switch {
	case at.Before(m.At):
		return false
	case at.Equal(m.At) && (m.State == next || m.State == SessionOpen):
		return false
	}
	m.State, m.At = next, at
	return true
}

// RecordSession folds a session event at at into the customer's mark. An
// openid that cannot be a key (WeChat's always can) is not recorded.
func (m *Store) RecordSession(ctx context.Context, openid string, open bool, at time.Time) error {
	if !ValidOpenID(openid) {
		return nil
	}
	_, _, err := m.Update(ctx, openid, func(st *State) bool { return st.LastSession.Apply(open, at) })
	return err
}

// LastSession returns the customer's mark; the zero mark for an unknown
// customer or an openid that cannot be a key.
func (m *Store) LastSession(ctx context.Context, openid string) (SessionMark, error) {
	if !ValidOpenID(openid) {
		return SessionMark{}, nil
	}
	st, err := m.Load(ctx, openid)
	return st.LastSession, err
}
