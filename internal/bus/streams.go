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
			if st, err := b.js().Stream(ctx, cfg.Name); err == nil {
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
			_, err := b.js().CreateOrUpdateStream(ctx, cfg)
			return err
		}); err != nil {
			return fmt.Errorf("ensure stream %s: %w", name, err)
		}
	}
	return nil
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
