package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Lease makes one process at a time the holder of a named job (a poller,
// a sweeper) across replicas. The record in the kefu_locks bucket says who
// holds it until when; a holder renews it well before it expires, and
// another process takes it over once it has expired (the holder died).
// Every write is a compare-and-set on the key's revision, so two processes
// can never both believe they hold it.
type Lease struct {
	kv     jetstream.KeyValue
	key    string
	holder string
	ttl    time.Duration
	now    func() time.Time

	revision uint64
	held     bool
}

type leaseRecord struct {
	Holder    string    `json:"holder"`
	ExpiresAt time.Time `json:"expires_at"`
}

// NewLease returns a lease on key held under the name holder (unique per
// process) for ttl after each successful TryAcquire.
func NewLease(kv jetstream.KeyValue, key, holder string, ttl time.Duration) *Lease {
	return &Lease{kv: kv, key: key, holder: holder, ttl: ttl, now: time.Now}
}

// SetClock replaces the clock (tests).
func (l *Lease) SetClock(now func() time.Time) { l.now = now }

// Held reports whether the last TryAcquire succeeded.
func (l *Lease) Held() bool { return l.held }

// TryAcquire takes or renews the lease. It returns true while this process
// holds it. Call it at least every ttl/3.
func (l *Lease) TryAcquire(ctx context.Context) (bool, error) {
	rec, _ := json.Marshal(leaseRecord{Holder: l.holder, ExpiresAt: l.now().Add(l.ttl)})
	entry, err := l.kv.Get(ctx, l.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rev, err := l.kv.Create(ctx, l.key, rec)
		return l.result(rev, err)
	case err != nil:
		l.held = false
		return false, fmt.Errorf("lease %s: %w", l.key, err)
	}
	var cur leaseRecord
	if entry.Operation() == jetstream.KeyValuePut {
		if err := json.Unmarshal(entry.Value(), &cur); err != nil {
			cur = leaseRecord{} // unreadable: treat as expired
		}
	}
	if entry.Operation() == jetstream.KeyValuePut && cur.Holder != l.holder && l.now().Before(cur.ExpiresAt) {
		l.held = false
		return false, nil
	}
	rev, err := l.kv.Update(ctx, l.key, rec, entry.Revision())
	return l.result(rev, err)
}

func (l *Lease) result(rev uint64, err error) (bool, error) {
	if err != nil {
		l.held = false
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil // someone else won the race
		}
		return false, fmt.Errorf("lease %s: %w", l.key, err)
	}
	l.revision, l.held = rev, true
	return true, nil
}

// Release gives the lease up at once (on shutdown), so another replica
// need not wait for it to expire.
func (l *Lease) Release(ctx context.Context) error {
	if !l.held {
		return nil
	}
	l.held = false
	err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.revision))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	return nil
}
