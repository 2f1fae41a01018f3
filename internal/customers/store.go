package customers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kefu-io/kefu/internal/bus"
)

// Bucket is the KV bucket of the customer read model: one key per openid
// holding a State as JSON, shared by every replica. Keys with a dot are
// kefu's own records (queue care's stale report), never an openid.
const Bucket = bus.BucketCustomers

// DefaultRetention is how long a record nobody wrote to is kept.
const DefaultRetention = 7 * 24 * time.Hour

// Errors of the read model.
var (
	// ErrInvalidOpenID: not an openid (letters, digits, '-' and '_', at
	// most 128 characters); such a customer is never stored.
	ErrInvalidOpenID = errors.New("customers: malformed openid")
	// ErrUnknownCustomer: no record for the openid.
	ErrUnknownCustomer = errors.New("customers: unknown customer")
	// errContention: the record kept changing under a compare-and-set.
	errContention = errors.New("customers: customer record changed too often; retry")
)

var openIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidOpenID reports whether s can be an openid, and so a KV key.
func ValidOpenID(s string) bool { return openIDRE.MatchString(s) }

// Store is the customer read model in the kefu_customers bucket. Every
// write is a compare-and-set on the record's revision, so two handlers
// updating one customer at once never lose a transition.
type Store struct {
	kv        jetstream.KeyValue
	now       func() time.Time
	conflicts prometheus.Counter // nil: not counted
}

// Options are those of the role that keeps the model (queue care).
type Options struct {
	// Retention is how long a record nobody wrote to is kept; default
	// DefaultRetention.
	Retention time.Duration
	// Now stamps UpdatedAt; default time.Now.
	Now func() time.Time
	// Conflicts, when set, counts compare-and-set retries.
	Conflicts prometheus.Counter
}

// description is the bucket's, as queue care has always created it.
const description = "kefu customer states (queuecare read model)"

// Open opens the read model for a role that asks it questions (the
// notifier, ingest, the estimator). It binds to the bucket, creating it
// with the default retention only if queue care has not yet.
func Open(ctx context.Context, b *bus.Bus) (*Store, error) {
	kv, err := b.OpenKeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return Ensure(ctx, b, Options{})
	}
	if err != nil {
		return nil, fmt.Errorf("open kv %s: %w", Bucket, err)
	}
	return &Store{kv: kv, now: time.Now}, nil
}

// Ensure creates the bucket or updates it to o.Retention and opens the
// read model: what queue care, which keeps it, does at start.
func Ensure(ctx context.Context, b *bus.Bus, o Options) (*Store, error) {
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	kv, err := b.KeyValue(ctx, Bucket, bus.WithTTL(o.Retention), bus.WithDescription(description))
	if err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Store{kv: kv, now: o.Now, conflicts: o.Conflicts}, nil
}

// KV is the bucket itself, for the records kefu keeps beside the
// customers' (keys with a dot: queue care's stale report).
func (m *Store) KV() jetstream.KeyValue { return m.kv }

// Get returns the customer's state. An unknown customer gets a state with
// StatusNone and ErrUnknownCustomer; a malformed openid ErrInvalidOpenID.
func (m *Store) Get(ctx context.Context, openid string) (State, error) {
	if !ValidOpenID(openid) {
		return State{OpenID: openid, Status: StatusNone}, ErrInvalidOpenID
	}
	st, rev, err := m.load(ctx, openid)
	if err != nil {
		return st, err
	}
	if rev == 0 {
		return st, ErrUnknownCustomer
	}
	return st, nil
}

// Load returns the customer's state, StatusNone for an unknown customer.
func (m *Store) Load(ctx context.Context, openid string) (State, error) {
	st, _, err := m.load(ctx, openid)
	return st, err
}

// load reads a record; revision 0 means there is none.
func (m *Store) load(ctx context.Context, openid string) (State, uint64, error) {
	fresh := State{OpenID: openid, Status: StatusNone}
	entry, err := m.kv.Get(ctx, openid)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return fresh, 0, nil
	case err != nil:
		return fresh, 0, fmt.Errorf("read customer state: %w", err)
	}
	var st State
	if err := json.Unmarshal(entry.Value(), &st); err != nil || st.Status == "" {
		// An unreadable record is replaced rather than blocking the
		// customer for ever; the next facts and the reconciler rebuild it.
		return fresh, entry.Revision(), nil
	}
	st.OpenID = openid
	return st, entry.Revision(), nil
}

// maxCASAttempts bounds the compare-and-set retries of one update; each
// retry means another handler wrote the record in between.
const maxCASAttempts = 16

// Update applies fn to the customer's record under compare-and-set. fn
// reports whether it changed anything; nothing is written otherwise. It
// returns the state as stored (or as read when unchanged) and whether it
// was written.
func (m *Store) Update(ctx context.Context, openid string, fn func(*State) bool) (State, bool, error) {
	if !ValidOpenID(openid) {
		return State{}, false, ErrInvalidOpenID
	}
	for range maxCASAttempts {
		st, rev, err := m.load(ctx, openid)
		if err != nil {
			return st, false, err
		}
		next := st
		if !fn(&next) {
			return st, false, nil
		}
		next.UpdatedAt = m.now().UTC()
		data, err := json.Marshal(next)
		if err != nil {
			return st, false, fmt.Errorf("encode customer state: %w", err)
		}
		if rev == 0 {
			_, err = m.kv.Create(ctx, openid, data)
		} else {
			_, err = m.kv.Update(ctx, openid, data, rev)
		}
		if err == nil {
			return next, true, nil
		}
		if !isConflict(err) {
			return st, false, fmt.Errorf("store customer state: %w", err)
		}
		if m.conflicts != nil {
			m.conflicts.Inc()
		}
	}
	return State{}, false, errContention
}

// isConflict reports a compare-and-set that lost to another writer.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// Scan calls fn for every customer record (not kefu's own records), in no
// particular order, reading the bucket through one watcher.
func (m *Store) Scan(ctx context.Context, fn func(State)) error {
	w, err := m.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("scan customer states: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case entry, ok := <-w.Updates():
			if !ok {
				return errors.New("scan customer states: watcher closed")
			}
			if entry == nil { // every current value has been delivered
				return nil
			}
			if strings.Contains(entry.Key(), ".") {
				continue
			}
			var st State
			if json.Unmarshal(entry.Value(), &st) != nil || st.Status == "" {
				continue
			}
			st.OpenID = entry.Key()
			fn(st)
		}
	}
}
