package feedback

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// fakeWriter records the batches it is given and rejects, like the store,
// any batch holding an item of bad; it fails the first fail calls.
type fakeWriter struct {
	mu   sync.Mutex
	bad  map[string]bool
	fail int
	// failOn, when set, fails the batches it returns true for.
	failOn func(items []string) bool
	// entered and gate, when set, hold every write until gate is closed.
	entered chan struct{}
	gate    chan struct{}
	calls   [][]string
	written []string
}

var errDatabaseDown = errors.New("database down")

func (w *fakeWriter) write(_ context.Context, items []string) error {
	if w.gate != nil {
		w.entered <- struct{}{}
		<-w.gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, slices.Clone(items))
	if w.fail > 0 || w.failOn != nil && w.failOn(items) {
		w.fail--
		return errDatabaseDown
	}
	for _, it := range items {
		if w.bad[it] {
			return fmt.Errorf("%w: %s", store.ErrInvalidPost, it)
		}
	}
	w.written = append(w.written, items...)
	return nil
}

// submitAll submits items concurrently and returns each one's result.
func submitAll(b *batcher[string], items []string) []error {
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Go(func() { errs[i] = b.submit(context.Background(), it) })
	}
	wg.Wait()
	return errs
}

func newTestBatcher(t *testing.T, w *fakeWriter, size int, linger time.Duration) *batcher[string] {
	t.Helper()
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := newBatcher("post", w.write, rejectedBy(store.ErrInvalidPost), batchTiming{size: size, linger: linger, timeout: 5 * time.Second}, m, zap.NewNop())
	t.Cleanup(func() { _ = b.stop(context.Background()) })
	return b
}

func TestBatcher(t *testing.T) {
	items := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	cases := []struct {
		name string
		bad  []string
		fail int
		// wantPermanent are the items whose handlers get bus.Permanent;
		// wantFailed those that get a retryable error; the rest succeed.
		wantPermanent []string
		wantFailed    []string
	}{
		{name: "a full batch is written in one transaction and every handler succeeds"},
		{name: "a store failure fails every handler of the batch with a retryable error",
			fail: 1, wantFailed: items},
		{name: "one invalid item is dead-lettered and the rest of its batch is stored",
			bad: []string{"f"}, wantPermanent: []string{"f"}},
		{name: "several invalid items are each dead-lettered and only they",
			bad: []string{"a", "d", "e"}, wantPermanent: []string{"a", "d", "e"}},
		{name: "an all-invalid batch is dead-lettered item by item",
			bad: items, wantPermanent: items},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := &fakeWriter{bad: map[string]bool{}, fail: c.fail}
			for _, it := range c.bad {
				w.bad[it] = true
			}
			// size = len(items) and an hour's linger: all items form
			// exactly one batch, written as soon as it is full.
			b := newTestBatcher(t, w, len(items), time.Hour)
			errs := submitAll(b, items)

			var permanent, failed, stored []string
			for i, err := range errs {
				switch {
				case err == nil:
					stored = append(stored, items[i])
				case bus.IsPermanent(err):
					if !errors.Is(err, store.ErrInvalidPost) {
						t.Errorf("%s: permanent error %v does not wrap the store's reason", items[i], err)
					}
					permanent = append(permanent, items[i])
				default:
					if !errors.Is(err, errDatabaseDown) {
						t.Errorf("%s: retryable error %v does not wrap the store's error", items[i], err)
					}
					failed = append(failed, items[i])
				}
			}
			if !slices.Equal(permanent, c.wantPermanent) {
				t.Errorf("dead-lettered %v, want %v", permanent, c.wantPermanent)
			}
			if !slices.Equal(failed, c.wantFailed) {
				t.Errorf("failed %v, want %v", failed, c.wantFailed)
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if len(w.calls[0]) != len(items) {
				t.Errorf("first write had %d items, want the whole batch of %d", len(w.calls[0]), len(items))
			}
			written := slices.Sorted(slices.Values(w.written))
			if !slices.Equal(written, stored) {
				t.Errorf("written %v, but handlers told success for %v", written, stored)
			}
		})
	}
}

func TestBatcherIsolationFailureFailsOnlyThePartItHits(t *testing.T) {
	items := []string{"a", "b", "c", "d"}
	// The batch is rejected because of a and split; then the database
	// fails every part holding c that the split writes.
	w := &fakeWriter{bad: map[string]bool{"a": true}, failOn: func(xs []string) bool {
		return slices.Contains(xs, "c") && !slices.Contains(xs, "a")
	}}
	b := newTestBatcher(t, w, len(items), time.Hour)
	errs := submitAll(b, items)
	if !bus.IsPermanent(errs[0]) {
		t.Errorf("a: %v, want permanent", errs[0])
	}
	if errs[2] == nil || bus.IsPermanent(errs[2]) || !errors.Is(errs[2], errDatabaseDown) {
		t.Errorf("c: %v, want a retryable store error", errs[2])
	}
	var stored []string
	for i, err := range errs {
		switch {
		case err == nil:
			stored = append(stored, items[i])
		case i != 0 && (bus.IsPermanent(err) || !errors.Is(err, errDatabaseDown)):
			t.Errorf("%s: %v, want stored or a retryable store error", items[i], err)
		}
	}
	if len(stored) == 0 {
		t.Error("nothing stored: the valid part away from c should be")
	}
	if got := slices.Sorted(slices.Values(w.written)); !slices.Equal(got, stored) {
		t.Errorf("written %v, but handlers told success for %v", got, stored)
	}
}

func TestBatcherWritesAPartialBatchAfterTheLinger(t *testing.T) {
	w := &fakeWriter{}
	b := newTestBatcher(t, w, 1000, time.Millisecond)
	// Fewer items than size: only the linger can write them.
	for _, err := range submitAll(b, []string{"x", "y", "z"}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := slices.Sorted(slices.Values(w.written)); !slices.Equal(got, []string{"x", "y", "z"}) {
		t.Fatalf("written %v", got)
	}
}

func TestBatcherStopFinishesTheWriteInProgressAndRefusesNewItems(t *testing.T) {
	w := &fakeWriter{entered: make(chan struct{}), gate: make(chan struct{})}
	b := newTestBatcher(t, w, 1, time.Hour)
	first := make(chan error, 1)
	go func() { first <- b.submit(context.Background(), "first") }()
	<-w.entered // "first" is being written

	stopped := make(chan error, 1)
	go func() { stopped <- b.stop(context.Background()) }()
	<-b.quit
	if err := b.submit(context.Background(), "late"); !errors.Is(err, errStopped) || bus.IsPermanent(err) {
		t.Fatalf("submit during stop: %v, want the retryable errStopped", err)
	}
	close(w.gate)
	if err := <-first; err != nil {
		t.Fatalf("the item being written at stop: %v, want stored", err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(w.written, []string{"first"}) {
		t.Fatalf("written %v, want [first]", w.written)
	}
}

func TestBatcherStopCancelsTheWriteWhenItsContextEnds(t *testing.T) {
	blocked := make(chan struct{})
	m, _ := newMetrics(nil)
	b := newBatcher("post", func(ctx context.Context, _ []string) error {
		close(blocked)
		<-ctx.Done() // a write that never finishes by itself
		return ctx.Err()
	}, rejectedBy(store.ErrInvalidPost), batchTiming{size: 1, linger: time.Hour, timeout: time.Hour}, m, zap.NewNop())
	result := make(chan error, 1)
	go func() { result <- b.submit(context.Background(), "stuck") }()
	<-blocked
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.stop(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("stop: %v, want the context's error", err)
	}
	if err := <-result; err == nil || bus.IsPermanent(err) {
		t.Fatalf("the cancelled item: %v, want a retryable error", err)
	}
}
