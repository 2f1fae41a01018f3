package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/pkg/events"
)

// KV buckets of the contract.
const (
	BucketGroups   = "kefu_groups"   // agent groups
	BucketToken    = "kefu_token"    // the shared WeChat access token
	BucketCursors  = "kefu_cursors"  // Tucao cursor, seen post versions
	BucketLocks    = "kefu_locks"    // one poller per source across replicas
	BucketNotified = "kefu_notified" // notification idempotency
	BucketState    = "kefu_state"    // services' learned state (estimator model)
	// BucketCallbackSigs remembers, per callback signature, a hash of the
	// body it carried, so that a plain-mode signature cannot carry another
	// body on any replica. Entries live as long as the de-duplication
	// window, which is more than twice the callbacks' freshness window.
	BucketCallbackSigs = "kefu_callback_sigs"
	// BucketChoice holds, per customer, the menu of agents they were
	// shown and await a number for; entries live ChoiceTTL.
	BucketChoice = "kefu_kf_choice"
)

// ChoiceTTL is how long a customer's menu of agents waits for their number.
const ChoiceTTL = 10 * time.Minute

// DuplicateWindow is the streams' de-duplication window. Callback
// freshness windows must stay below half of it (see BucketCallbackSigs).
func (b *Bus) DuplicateWindow() time.Duration { return b.cfg.DuplicateWindow }

// StreamConfig is the configuration kefu gives a stream of the contract.
func (b *Bus) StreamConfig(name string) (jetstream.StreamConfig, error) {
	subjects, ok := events.StreamSubjects[name]
	if !ok {
		return jetstream.StreamConfig{}, fmt.Errorf("unknown stream %q", name)
	}
	return jetstream.StreamConfig{
		Name:        name,
		Description: "kefu events " + subjects[0],
		Subjects:    subjects,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      b.cfg.StreamMaxAge,
		Duplicates:  b.cfg.DuplicateWindow,
		Replicas:    b.cfg.Replicas,
		Discard:     jetstream.DiscardOld,
	}, nil
}

// EnsureStreams creates or updates the named streams. It retries for a
// while because a freshly started cluster refuses R3 streams until its meta
// leader is elected.
func (b *Bus) EnsureStreams(ctx context.Context, names ...string) error {
	for _, name := range names {
		cfg, err := b.StreamConfig(name)
		if err != nil {
			return err
		}
		if err := retryStartup(ctx, func(ctx context.Context) error {
			cfg := cfg
			if st, err := b.JS.Stream(ctx, cfg.Name); err == nil {
				cur := st.CachedInfo().Config
				if len(cfg.Sources) == 0 && cfg.Mirror == nil {
					cfg.Sources = cur.Sources // a store-and-forward leaf's (leaf.go)
				}
				if sameStreamConfig(cur, cfg) {
					// Every role ensures the streams it uses; an update
					// that changes nothing is still a write, and
					// nats-server 2.15 races a stream update with a
					// consumer being created on it.
					return nil
				}
			}
			_, err := b.JS.CreateOrUpdateStream(ctx, cfg)
			return err
		}); err != nil {
			return fmt.Errorf("ensure stream %s: %w", name, err)
		}
	}
	return nil
}

// KeyValue creates (or updates) and returns a KV bucket of the contract.
func (b *Bus) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	cfg := jetstream.KeyValueConfig{
		Bucket:   bucket,
		History:  1,
		Storage:  jetstream.FileStorage,
		Replicas: b.cfg.Replicas,
	}
	if bucket == BucketNotified {
		// Idempotency records must outlive any replay of the streams, and
		// no longer.
		cfg.TTL = b.cfg.StreamMaxAge
	}
	if bucket == BucketLocks {
		// Leases expire by per-key TTL, on the server's clock (lease.go);
		// enabling it on an existing bucket is an allowed update.
		cfg.LimitMarkerTTL = leaseMarkerTTL
	}
	if bucket == BucketChoice {
		cfg.TTL = ChoiceTTL
	}
	if bucket == BucketCallbackSigs {
		// A signature is fresh for a window on either side of its
		// timestamp, so it must be remembered for twice that; the
		// de-duplication window is kept longer than that.
		cfg.TTL = b.cfg.DuplicateWindow
	}
	var kv jetstream.KeyValue
	err := retryStartup(ctx, func(ctx context.Context) error {
		var err error
		if kv, err = b.JS.KeyValue(ctx, bucket); err == nil {
			// As for streams: no write when nothing would change.
			if st, serr := kv.Status(ctx); serr == nil && sameKVConfig(st, cfg) {
				return nil
			}
		}
		kv, err = b.JS.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ensure kv %s: %w", bucket, err)
	}
	if bucket == BucketLocks {
		return &locksKV{KeyValue: kv, js: b.JS}, nil
	}
	return kv, nil
}

// sameStreamConfig reports whether cur already has every setting kefu
// gives a stream (the server fills in the rest).
func sameStreamConfig(cur, want jetstream.StreamConfig) bool {
	return cur.Description == want.Description && slices.Equal(cur.Subjects, want.Subjects) &&
		cur.Storage == want.Storage && cur.Retention == want.Retention && cur.MaxAge == want.MaxAge &&
		cur.Duplicates == want.Duplicates && cur.Replicas == want.Replicas && cur.Discard == want.Discard &&
		slices.EqualFunc(cur.Sources, want.Sources, func(a, b *jetstream.StreamSource) bool {
			return a != nil && b != nil && a.Name == b.Name && a.FilterSubject == b.FilterSubject &&
				(a.External == nil) == (b.External == nil) && (a.External == nil || *a.External == *b.External)
		})
}

// sameKVConfig reports whether a bucket already has every setting kefu
// gives it.
func sameKVConfig(st jetstream.KeyValueStatus, want jetstream.KeyValueConfig) bool {
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return false
	}
	cur := bs.StreamInfo().Config
	return st.History() == int64(want.History) && st.TTL() == want.TTL && st.LimitMarkerTTL() == want.LimitMarkerTTL &&
		cur.Storage == want.Storage && cur.Replicas == max(want.Replicas, 1)
}

func retryStartup(ctx context.Context, op func(context.Context) error) error {
	deadline := time.Now().Add(20 * time.Second)
	wait := 100 * time.Millisecond
	for {
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := op(octx)
		cancel()
		if err == nil {
			return nil
		}
		// A bad configuration never heals; only unavailability does.
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.ErrorCode != jetstream.JSErrCodeJetStreamNotEnabled {
			return err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if wait < 2*time.Second {
			wait *= 2
		}
	}
}
