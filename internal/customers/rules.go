package customers

import (
	"context"
	"errors"

	"github.com/kefu-io/kefu/pkg/events"
)

// The questions other services ask about a customer. They are methods
// here, not logic in the wiring, so that every service gets the same
// answer from the one model.

// Served reports whether an agent serves the customer now. An unknown
// customer is not served.
func (m *Store) Served(ctx context.Context, openid string) (bool, error) {
	st, err := m.Get(ctx, openid)
	if errors.Is(err, ErrUnknownCustomer) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return st.Status == StatusServed, nil
}

// Left reports whether the customer asked to leave the queue: the
// estimator reports no abandonment for them (queue care did). A state that
// cannot be read is taken as not left.
func (m *Store) Left(ctx context.Context, openid string) bool {
	st, err := m.Get(ctx, openid)
	return err == nil && st.Status == StatusLeft
}

// SuppressNotice reports whether the notifier must not send a message of
// kind to openid (see State.SuppressWaitNotice and SuppressSessionNotice).
// An unknown customer is announced; a state that cannot be read is an
// error, so that the notifier retries rather than say goodbye after
// kefu's own goodbye.
func (m *Store) SuppressNotice(ctx context.Context, kind, openid string) (bool, error) {
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

// LeaveGate keeps ingest from transferring a waiting customer's leave
// phrase into the queue they are leaving, while a served customer's words
// still reach their agent.
type LeaveGate struct {
	Leave     *LeaveDetector
	Customers *Store
}

// HoldTransfer reports whether content is a leave phrase from a customer
// who is not served. A state that cannot be read lets the message through.
func (g LeaveGate) HoldTransfer(ctx context.Context, openid, content string) bool {
	if !g.Leave.IsLeave(content) {
		return false
	}
	served, err := g.Customers.Served(ctx, openid)
	return err == nil && !served
}
