package queuecare

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
	"github.com/kefu-io/kefu/pkg/events"
)

// Bucket is the KV bucket of the customer read model: one key per openid
// holding a CustomerState as JSON, shared by every replica. Keys with a
// dot are kefu's own records (reportKey), never an openid.
const Bucket = "kefu_customers"

// DefaultStateRetention is how long a record nobody wrote to is kept.
const DefaultStateRetention = 7 * 24 * time.Hour

// reportKey holds the last stale-session sweep (GET /api/kf/stale).
const reportKey = "report.stale"

// Errors of the read model.
var (
	// ErrInvalidOpenID: not an openid (letters, digits, '-' and '_', at
	// most 128 characters); such a customer is never stored.
	ErrInvalidOpenID = errors.New("queuecare: malformed openid")
	// ErrUnknownCustomer: no record for the openid.
	ErrUnknownCustomer = errors.New("queuecare: unknown customer")
	// errContention: the record kept changing under a compare-and-set.
	errContention = errors.New("queuecare: customer record changed too often; retry")
)

var openIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidOpenID reports whether s can be an openid, and so a KV key.
func ValidOpenID(s string) bool { return openIDRE.MatchString(s) }

// States is the customer read model in the kefu_customers bucket. Every
// write is a compare-and-set on the record's revision, so two handlers
// updating one customer at once never lose a transition.
type States struct {
	kv        jetstream.KeyValue
	now       func() time.Time
	conflicts prometheus.Counter // nil: not counted
}

// BucketConfig is the configuration of the kefu_customers bucket.
func BucketConfig(b *bus.Bus, retention time.Duration) (jetstream.KeyValueConfig, error) {
	// The streams' replica count is the deployment's (1 embedded, 3 in a
	// cluster); the bucket follows it.
	sc, err := b.StreamConfig(events.StreamKF)
	if err != nil {
		return jetstream.KeyValueConfig{}, err
	}
	if retention <= 0 {
		retention = DefaultStateRetention
	}
	return jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "kefu customer states (queuecare read model)",
		History:     1,
		TTL:         retention,
		Storage:     jetstream.FileStorage,
		Replicas:    sc.Replicas,
	}, nil
}

// OpenStates opens the read model for a reader in another role (the
// notifier, ingest). It binds to the bucket, creating it with the default
// retention only if queuecare has not yet.
func OpenStates(ctx context.Context, b *bus.Bus) (*States, error) {
	kv, err := b.JS.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return openStates(ctx, b, DefaultStateRetention, time.Now, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("open kv %s: %w", Bucket, err)
	}
	return &States{kv: kv, now: time.Now}, nil
}

func openStates(ctx context.Context, b *bus.Bus, retention time.Duration, now func() time.Time, conflicts prometheus.Counter) (*States, error) {
	cfg, err := BucketConfig(b, retention)
	if err != nil {
		return nil, err
	}
	kv, err := b.JS.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ensure kv %s: %w", Bucket, err)
	}
	return &States{kv: kv, now: now, conflicts: conflicts}, nil
}

// Get returns the customer's state. An unknown customer gets a state with
// StatusNone and ErrUnknownCustomer; a malformed openid ErrInvalidOpenID.
func (m *States) Get(ctx context.Context, openid string) (CustomerState, error) {
	if !ValidOpenID(openid) {
		return CustomerState{OpenID: openid, Status: StatusNone}, ErrInvalidOpenID
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

// Served reports whether an agent serves the customer now. An unknown
// customer is not served.
func (m *States) Served(ctx context.Context, openid string) (bool, error) {
	st, err := m.Get(ctx, openid)
	if errors.Is(err, ErrUnknownCustomer) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return st.Status == StatusServed, nil
}

// load reads a record; revision 0 means there is none.
func (m *States) load(ctx context.Context, openid string) (CustomerState, uint64, error) {
	fresh := CustomerState{OpenID: openid, Status: StatusNone}
	entry, err := m.kv.Get(ctx, openid)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return fresh, 0, nil
	case err != nil:
		return fresh, 0, fmt.Errorf("read customer state: %w", err)
	}
	var st CustomerState
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

// update applies fn to the customer's record under compare-and-set. fn
// reports whether it changed anything; nothing is written otherwise. It
// returns the state as stored (or as read when unchanged).
func (m *States) update(ctx context.Context, openid string, fn func(*CustomerState) bool) (CustomerState, bool, error) {
	if !ValidOpenID(openid) {
		return CustomerState{}, false, ErrInvalidOpenID
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
	return CustomerState{}, false, errContention
}

// isConflict reports a compare-and-set that lost to another writer.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// scan calls fn for every customer record (not kefu's own records), in no
// particular order, reading the bucket through one watcher.
func (m *States) scan(ctx context.Context, fn func(CustomerState)) error {
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
			var st CustomerState
			if json.Unmarshal(entry.Value(), &st) != nil || st.Status == "" {
				continue
			}
			st.OpenID = entry.Key()
			fn(st)
		}
	}
}
