package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Every KV bucket kefu creates is declared here, and only here: its name,
// why it exists and how it is configured. Other packages name a bucket by
// these constants and open it with Bus.KeyValue, which refuses a name not
// declared here; TestEveryBucketIsDeclared in internal/app starts `kefu
// all` and checks that the buckets on the server are these.
const (
	BucketGroups   = "kefu_groups"   // agent groups
	BucketToken    = "kefu_token"    // the shared WeChat access token
	BucketCursors  = "kefu_cursors"  // Tucao cursor, seen post versions
	BucketLocks    = "kefu_locks"    // one poller per source across replicas
	BucketNotified = "kefu_notified" // notification idempotency
	BucketState    = "kefu_state"    // services' learned state (estimator model)
	// BucketCustomers is the customer read model: one key per openid,
	// kept by queue care and read by the other roles. Its entries live
	// as long as the retention its keeper opens it with (WithTTL).
	BucketCustomers = "kefu_customers"
	// BucketCallbackSigs remembers, per callback signature, a hash of the
	// body it carried, so that a plain-mode signature cannot carry another
	// body on any replica. Entries live as long as the de-duplication
	// window, which is more than twice the callbacks' freshness window.
	BucketCallbackSigs = "kefu_callback_sigs"
	// BucketChoice holds, per customer, the menu of agents they were
	// shown and await a number for; entries live ChoiceTTL.
	BucketChoice = "kefu_kf_choice"
)

// Buckets lists every bucket declared above.
var Buckets = []string{
	BucketGroups, BucketToken, BucketCursors, BucketLocks, BucketNotified, BucketState,
	BucketCustomers, BucketCallbackSigs, BucketChoice,
}

// OptionalBuckets are the buckets a role creates only with some settings:
// kefu_callback_sigs while plaintext callbacks are accepted (no
// KEFU_WECHAT_AES_KEY, or KEFU_WECHAT_ALLOW_PLAINTEXT), kefu_kf_choice
// with KEFU_KF_CHOOSE_KEYWORDS.
var OptionalBuckets = []string{BucketCallbackSigs, BucketChoice}

// ChoiceTTL is how long a customer's menu of agents waits for their number.
const ChoiceTTL = 10 * time.Minute

// ErrUnknownBucket is returned for a bucket name not declared in this file.
var ErrUnknownBucket = errors.New("unknown KV bucket")

// BucketOption changes how KeyValue configures a bucket.
type BucketOption func(*jetstream.KeyValueConfig)

// WithTTL makes the bucket forget an entry nobody wrote to for ttl (zero:
// the bucket's default).
func WithTTL(ttl time.Duration) BucketOption {
	return func(c *jetstream.KeyValueConfig) {
		if ttl > 0 {
			c.TTL = ttl
		}
	}
}

// WithDescription sets the bucket's description.
func WithDescription(d string) BucketOption {
	return func(c *jetstream.KeyValueConfig) { c.Description = d }
}

// bucketConfig is the configuration kefu gives bucket.
func (b *Bus) bucketConfig(bucket string) (jetstream.KeyValueConfig, error) {
	if !slices.Contains(Buckets, bucket) {
		return jetstream.KeyValueConfig{}, fmt.Errorf("%w %q: declare it in internal/bus/buckets.go", ErrUnknownBucket, bucket)
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:   bucket,
		History:  1,
		Storage:  jetstream.FileStorage,
		Replicas: b.cfg.Replicas,
	}
	switch bucket {
	case BucketNotified:
		// Idempotency records must outlive any replay of the streams, and
		// no longer.
		cfg.TTL = b.cfg.StreamMaxAge
	case BucketLocks:
		// Leases expire by per-key TTL, on the server's clock (lease.go);
		// enabling it on an existing bucket is an allowed update.
		cfg.LimitMarkerTTL = leaseMarkerTTL
	case BucketChoice:
		cfg.TTL = ChoiceTTL
	case BucketCallbackSigs:
		// A signature is fresh for a window on either side of its
		// timestamp, so it must be remembered for twice that; the
		// de-duplication window is kept longer than that.
		cfg.TTL = b.cfg.DuplicateWindow
	}
	return cfg, nil
}

// KeyValue creates (or updates) and returns a KV bucket of the contract.
func (b *Bus) KeyValue(ctx context.Context, bucket string, opts ...BucketOption) (jetstream.KeyValue, error) {
	cfg, err := b.bucketConfig(bucket)
	if err != nil {
		return nil, err
	}
	for _, o := range opts {
		o(&cfg)
	}
	var kv jetstream.KeyValue
	err = retryStartup(ctx, func(ctx context.Context) error {
		var err error
		if kv, err = b.js().KeyValue(ctx, bucket); err == nil {
			// As for streams: no write when nothing would change.
			if st, serr := kv.Status(ctx); serr == nil && sameKVConfig(st, cfg) {
				return nil
			}
		}
		kv, err = b.js().CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ensure kv %s: %w", bucket, err)
	}
	if bucket == BucketLocks {
		return &locksKV{KeyValue: kv, js: b.js()}, nil
	}
	return kv, nil
}

// OpenKeyValue binds to a bucket of the contract that another role keeps,
// without creating or changing it: jetstream.ErrBucketNotFound while that
// role has not created it yet.
func (b *Bus) OpenKeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	if _, err := b.bucketConfig(bucket); err != nil {
		return nil, err
	}
	return b.js().KeyValue(ctx, bucket)
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
		cur.Storage == want.Storage && cur.Replicas == max(want.Replicas, 1) && cur.Description == want.Description
}
