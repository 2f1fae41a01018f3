package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/kefu-io/kefu/services/feedback/store"
)

// Opening a store: migrations applied once, reopening and ping.

func testReopen(t *testing.T, backend Backend) {
	open := backend(t)
	var applied []int
	s, err := open(store.OnMigrationApplied(func(v int, _ string) { applied = append(applied, v) }))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if len(applied) == 0 || applied[0] != 1 {
		t.Fatalf("first open applied migrations %v, want 1…n", applied)
	}
	upsert(t, s, post(1, "o", t0.Add(time.Minute), "kept"))
	record(t, s, closed("o", "kf1", t0))
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	var reapplied []int
	s2 := mustOpen(t, open, store.OnMigrationApplied(func(v int, _ string) { reapplied = append(reapplied, v) }))
	if len(reapplied) != 0 {
		t.Errorf("reopening applied migrations %v again", reapplied)
	}
	assertLinked(t, onlyPost(t, s2, "1"), "kf1", t0)
}

func testConcurrentOpen(t *testing.T, backend Backend) {
	open := backend(t)
	var mu sync.Mutex
	applied := map[int]int{}
	count := store.OnMigrationApplied(func(v int, _ string) {
		mu.Lock()
		applied[v]++
		mu.Unlock()
	})
	var wg sync.WaitGroup
	stores := make([]store.Store, 3)
	errs := make([]error, 3)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = open(count) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	// Each version from 1 up was applied by exactly one of the three.
	if len(applied) == 0 {
		t.Fatal("no open applied the migrations")
	}
	for v := 1; v <= len(applied); v++ {
		if applied[v] != 1 {
			t.Errorf("migration %d applied %d times, want once (all: %v)", v, applied[v], applied)
		}
	}
	upsert(t, stores[0], post(1, "o", t0, "x"))
	for i, st := range stores {
		if got := len(listPosts(t, st, store.PostQuery{}).Items); got != 1 {
			t.Errorf("store %d sees %d posts, want 1", i, got)
		}
	}
}

func testPing(t *testing.T, backend Backend) {
	open := backend(t)
	s, err := open()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := s.Ping(ctx(t)); err != nil {
		t.Errorf("Ping on an open store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Ping(ctx(t)); err == nil {
		t.Errorf("Ping on a closed store succeeded")
	}
}
