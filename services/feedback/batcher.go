package feedback

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// errStopped answers a handler whose item reached a batcher that has
// stopped: the message is not acknowledged and comes back to whichever
// process next consumes the durable consumer.
var errStopped = errors.New("feedback: batcher stopped")

// Outcomes of a batch (kefu_feedback_batches_total).
const (
	outcomeOK      = "ok"      // written in one transaction
	outcomeFailed  = "failed"  // the store failed: every item is redelivered
	outcomeInvalid = "invalid" // the store rejected an item: the batch was split to find it
)

// batcher gathers the items of concurrent handlers into one store write.
// A handler blocks in submit until the batch holding its item is
// committed, so its message is acknowledged only once the row is durable,
// and a failed write fails every handler of the batch, whose messages are
// then redelivered.
//
// A batch is written when it holds size items, when no item has come for
// idle, or linger after its first item, whichever comes first. Every
// handler of a consumer waits in the batch, so a batch never holds more
// items than the consumer's concurrency: size is at most that, or every
// batch would wait for the linger.
type batcher[T any] struct {
	kind string
	// write stores items in one transaction. An error for which invalid
	// is true means an item can never be stored; any other error may heal.
	write   func(ctx context.Context, items []T) error
	invalid func(error) bool
	batchTiming
	metrics *metrics
	log     *zap.Logger

	in   chan request[T]
	quit chan struct{}
	done chan struct{}
	// base bounds every write; cancelled only when a stop runs out of time.
	base  context.Context
	abort context.CancelFunc
}

// batchTiming says when a batch is written.
type batchTiming struct {
	// size: a batch holding this many items is written at once.
	size int
	// linger: a batch is written at the latest this long after its
	// first item.
	linger time.Duration
	// idle: a batch is written when no item has come for this long
	// (0: never). Items arrive in a burst after each commit, when the
	// consumer refills the handlers it released, and at once when a
	// single subscription holds a backlog; waiting for the full linger
	// after the burst is over would only delay the ack.
	idle time.Duration
	// timeout bounds the writing of one batch, its splitting included.
	timeout time.Duration
}

type request[T any] struct {
	item   T
	result chan error // buffered: the batcher never waits for a handler
}

// rejectedBy says which write errors mean an item can never be stored:
// the store's own sentinel, or the database refusing the data itself. Any
// other error — the database unreachable, a timeout, a failover — heals,
// and its messages are retried until it does.
func rejectedBy(sentinel error) func(error) bool {
	return func(err error) bool { return errors.Is(err, sentinel) || store.IsDataError(err) }
}

func newBatcher[T any](kind string, write func(context.Context, []T) error, invalid func(error) bool,
	timing batchTiming, m *metrics, log *zap.Logger) *batcher[T] {
	base, abort := context.WithCancel(context.Background())
	timing.size = max(timing.size, 1)
	b := &batcher[T]{
		kind: kind, write: write, invalid: invalid, batchTiming: timing,
		metrics: m, log: log,
		in:   make(chan request[T]),
		quit: make(chan struct{}),
		done: make(chan struct{}),
		base: base, abort: abort,
	}
	go b.run()
	return b
}

// submit hands item to the next batch and waits until that batch is
// written. It returns nil once the item is committed, an error marked
// bus.Permanent when the store rejects this very item, and any other
// error when it should be tried again later.
func (b *batcher[T]) submit(ctx context.Context, item T) error {
	r := request[T]{item: item, result: make(chan error, 1)}
	select {
	case <-b.quit: // stopping: take nothing new, even if the batcher could
		return errStopped
	default:
	}
	select {
	case b.in <- r:
	case <-b.quit:
		return errStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once in a batch, the item's outcome is awaited even when ctx ends
	// (the subscription closing): the write is bounded by the timeout,
	// and the handler then reports what really happened to its message.
	return <-r.result
}

// stop writes the batch being gathered, answers its handlers and ends the
// batcher. When ctx ends first the write in progress is cancelled.
func (b *batcher[T]) stop(ctx context.Context) error {
	select {
	case <-b.quit:
	default:
		close(b.quit)
	}
	select {
	case <-b.done:
		b.abort()
		return nil
	case <-ctx.Done():
		b.abort()
		<-b.done
		return fmt.Errorf("stop %s batcher: %w", b.kind, ctx.Err())
	}
}

// run gathers batches and hands them to one writer goroutine. While the
// writer commits a batch the next one keeps gathering, and it is handed
// over, however full, as soon as the writer is free and the batch is
// ready — full, idle or past its linger: under load batches grow to what
// one commit takes, with no extra wait (group commit).
func (b *batcher[T]) run() {
	defer close(b.done)
	writes := make(chan []request[T])
	written := make(chan struct{})
	go func() {
		defer close(written)
		for batch := range writes {
			b.flush(batch)
		}
	}()
	defer func() {
		close(writes)
		<-written
	}()

	linger, idle := stoppedTimer(), stoppedTimer()
	defer linger.Stop()
	defer idle.Stop()
	var (
		batch    []request[T]
		ready    bool // the linger or idle time has run out
		quitting bool
	)
	in, quit := b.in, b.quit
	for {
		full := len(batch) >= b.size
		var out chan []request[T]
		if len(batch) > 0 && (ready || full || quitting) {
			out = writes
		}
		switch {
		case quitting && len(batch) == 0:
			return
		case full || quitting:
			in = nil // a full batch waits for the writer; a stopping one takes no more
		default:
			in = b.in
		}
		select {
		case r := <-in:
			if len(batch) == 0 {
				linger.Reset(b.linger)
			}
			batch = append(batch, r)
			if b.idle > 0 {
				idle.Reset(b.idle)
			}
		case <-linger.C:
			ready = true
		case <-idle.C:
			ready = true
		case out <- batch:
			batch, ready = nil, false
			linger.Stop()
			idle.Stop()
		case <-quit:
			quitting, quit = true, nil
		}
	}
}

// stoppedTimer is a timer that fires only once Reset.
func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// flush writes one batch and answers each of its handlers.
func (b *batcher[T]) flush(batch []request[T]) {
	ctx, cancel := context.WithTimeout(b.base, b.timeout)
	defer cancel()
	items := make([]T, len(batch))
	for i, r := range batch {
		items[i] = r.item
	}
	errs := make([]error, len(items))
	b.metrics.batchSize.WithLabelValues(b.kind).Observe(float64(len(items)))

	err := b.write(ctx, items)
	var outcome string
	switch {
	case err == nil:
		outcome = outcomeOK
	case b.invalid(err):
		outcome = outcomeInvalid
		b.isolate(ctx, items, errs, err)
	default:
		outcome = outcomeFailed
		b.log.Warn("feedback batch failed; its messages will be redelivered",
			zap.String("kind", b.kind), zap.Int("items", len(items)), zap.Error(err))
		failed := fmt.Errorf("store %s batch: %w", b.kind, err)
		for i := range errs {
			errs[i] = failed
		}
	}
	b.metrics.batches.WithLabelValues(b.kind, outcome).Inc()
	stored := 0
	for i, r := range batch {
		if errs[i] == nil {
			stored++
		}
		r.result <- errs[i]
	}
	b.metrics.items.WithLabelValues(b.kind).Add(float64(stored))
}

// isolate writes the halves of a batch the store rejected, splitting again
// each half that is rejected in turn, down to the single items the store
// refuses: those, and only those, are permanent. One poison item among n
// costs about 2·log2(n) transactions instead of n one-item ones, and a
// valid item is written once. A transient failure on the way fails only
// the items of that part, which are redelivered.
func (b *batcher[T]) isolate(ctx context.Context, items []T, errs []error, rejected error) {
	if len(items) == 1 {
		errs[0] = bus.Permanent(fmt.Errorf("store %s: %w", b.kind, rejected))
		return
	}
	mid := len(items) / 2
	for _, part := range [2][2]int{{0, mid}, {mid, len(items)}} {
		sub, subErrs := items[part[0]:part[1]], errs[part[0]:part[1]]
		err := b.write(ctx, sub)
		switch {
		case err == nil:
		case b.invalid(err):
			b.isolate(ctx, sub, subErrs, err)
		default:
			failed := fmt.Errorf("store %s batch: %w", b.kind, err)
			for i := range subErrs {
				subErrs[i] = failed
			}
		}
	}
}
