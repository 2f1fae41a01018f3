package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/pkg/events"
)

// retryEvery is the pause before a feed that failed (a stream not created
// yet, the bus away) starts again.
const retryEvery = 2 * time.Second

// feed follows the bus into the hub: three streams through ephemeral
// ordered consumers, and two KV buckets through watchers. A feed that
// fails, or whose connection the bus replaced (Bus.OnRedial), starts again
// where it stopped: a stream from the sequence after the last one applied.
type feed struct {
	b       *bus.Bus
	hub     *hub
	log     *zap.Logger
	history time.Duration
	postAge time.Duration
	appKey  string // the queue view's key in kefu_state

	mu      sync.Mutex
	cancels map[int]context.CancelFunc
	next    int
	wg      sync.WaitGroup
}

// run starts every source and returns at once.
func (f *feed) run(ctx context.Context) {
	f.cancels = map[int]context.CancelFunc{}
	f.b.OnRedial(f.restart)
	f.loop(ctx, "kf", func(ctx context.Context, last *uint64) error {
		return f.follow(ctx, events.StreamKF, "kefu.kf.>", f.history, last, func(m jetstream.Msg) {
			f.hub.update(func(s *state, o *ops) { s.applyKF(m.Subject(), m.Data(), o) })
		})
	})
	f.loop(ctx, "sessions", func(ctx context.Context, last *uint64) error {
		// Sessions, and what else kefu publishes about the queue on
		// KEFU_WECHAT (a customer joining), in their order.
		return f.follow(ctx, events.StreamWeChat, "kefu.wechat.kf.>", f.history, last, f.session)
	})
	f.loop(ctx, "posts", func(ctx context.Context, last *uint64) error {
		return f.follow(ctx, events.StreamTucao, "kefu.tucao.post.>", f.postAge, last, func(m jetstream.Msg) {
			p, err := events.Decode[events.FeedbackPost](m.Data())
			if err != nil || p.ID == "" {
				return
			}
			f.hub.update(func(s *state, o *ops) { s.applyPost(p, o) })
		})
	})
	f.loop(ctx, "queue view", func(ctx context.Context, _ *uint64) error {
		return f.watch(ctx, bus.BucketState, f.appKey, func(_ string, v []byte) {
			if v == nil {
				return
			}
			var view queueView
			if err := json.Unmarshal(v, &view); err != nil {
				return
			}
			f.hub.update(func(s *state, o *ops) { s.applyQueueView(view, o) })
		})
	})
	f.loop(ctx, "groups", func(ctx context.Context, _ *uint64) error {
		return f.watch(ctx, bus.BucketGroups, ">", func(k string, v []byte) {
			f.hub.update(func(s *state, o *ops) { s.applyGroup(k, v, o) })
		})
	})
}

func (f *feed) session(m jetstream.Msg) {
	if !strings.HasPrefix(m.Subject(), "kefu.wechat.kf.session.") {
		f.hub.update(func(s *state, o *ops) { s.applyKF(m.Subject(), m.Data(), o) })
		return
	}
	ev, err := events.DecodeSubject(m.Subject(), m.Data())
	if err != nil {
		return
	}
	f.hub.update(func(s *state, o *ops) {
		switch e := ev.(type) {
		case events.SessionCreated:
			s.sessionCreated(e.OpenID, e.KfAccount, e.OccurredAt, o)
		case events.SessionClosed:
			s.sessionClosed(e.OpenID, e.KfAccount, e.OccurredAt, o)
		case events.SessionSwitched:
			s.sessionSwitched(e.OpenID, e.FromKfAccount, e.ToKfAccount, e.OccurredAt, o)
		}
	})
}

// loop runs one source until ctx ends, again after each failure or redial.
func (f *feed) loop(ctx context.Context, name string, once func(ctx context.Context, last *uint64) error) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		var last uint64
		failing := false
		for ctx.Err() == nil {
			ictx, cancel := context.WithCancel(ctx)
			f.mu.Lock()
			id := f.next
			f.next++
			f.cancels[id] = cancel
			f.mu.Unlock()
			err := once(ictx, &last)
			cancel()
			f.mu.Lock()
			delete(f.cancels, id)
			f.mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			if err != nil && !failing {
				f.log.Info("console feed interrupted; retrying", zap.String("source", name), zap.Error(err))
			}
			failing = err != nil
			select {
			case <-ctx.Done():
			case <-time.After(retryEvery):
			}
		}
	}()
}

// restart ends every source's current attempt (after a redial their
// consumers and watchers are bound to the old connection).
func (f *feed) restart() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, cancel := range f.cancels {
		cancel()
	}
}

func (f *feed) wait() { f.wg.Wait() }

// follow reads a stream from *last+1 (or from history ago) until ctx ends.
func (f *feed) follow(ctx context.Context, name, filter string, history time.Duration, last *uint64, handle func(jetstream.Msg)) error {
	st, err := f.b.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, NamePrefix: "console"}
	if *last > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, *last+1
	} else {
		since := time.Now().Add(-history)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("consumer on %s: %w", name, err)
	}
	msgs, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	defer msgs.Stop()
	for {
		m, err := msgs.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read %s: %w", name, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		if meta.Sequence.Stream <= *last {
			continue
		}
		*last = meta.Sequence.Stream
		handle(m)
	}
}

// watch follows the keys of a bucket matching pattern; a deleted key is
// handed over with a nil value.
func (f *feed) watch(ctx context.Context, bucket, pattern string, handle func(key string, value []byte)) error {
	kv, err := f.b.KeyValue(ctx, bucket)
	if err != nil {
		return err
	}
	w, err := kv.Watch(ctx, pattern)
	if err != nil {
		return fmt.Errorf("watch %s: %w", bucket, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch " + bucket + " ended")
			}
			if e == nil {
				continue // the end of the initial values
			}
			if e.Operation() != jetstream.KeyValuePut {
				handle(e.Key(), nil)
				continue
			}
			handle(e.Key(), e.Value())
		}
	}
}

// queueKey is the key of the estimator's queue view for an appid, or every
// appid's when none is configured.
func queueKey(appID string) string {
	if appID == "" {
		return "queue.*"
	}
	return "queue." + events.Token(appID)
}
