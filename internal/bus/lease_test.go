package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
)

// leaseTTL is the shortest TTL the server accepts (whole seconds, ≥ 1 s)
// times two, so that the tests wait for real expiry for a few seconds only.
const leaseTTL = 2 * time.Second

func locks(t *testing.T, b *bus.Bus) jetstream.KeyValue {
	t.Helper()
	kv, err := b.KeyValue(context.Background(), bus.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// acquireWithin polls l until it holds the lease and returns how long that
// took; it fails the test after limit.
func acquireWithin(t *testing.T, l *bus.Lease, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, err := l.TryAcquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("lease not acquired within %v", limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The server expires a lease, whatever the hosts' clocks say: a replica
// whose clock is an hour ahead cannot take a held lease, a holder whose
// clock is an hour behind cannot keep one it stopped renewing, and a
// renewal restarts the server's TTL.
func TestLeaseExpiresByServerTTLNotHostClocks(t *testing.T) {
	b := openBus(t)
	kv := locks(t, b)
	ctx := context.Background()
	a := bus.NewLease(kv, "tucao-poller", "a", leaseTTL)
	c := bus.NewLease(kv, "tucao-poller", "c", leaseTTL)
	a.SetClock(func() time.Time { return time.Now().Add(-time.Hour) }) // behind: its records "expired" an hour ago
	c.SetClock(func() time.Time { return time.Now().Add(time.Hour) })  // ahead: every record looks expired to it

	if ok, err := a.TryAcquire(ctx); !ok || err != nil {
		t.Fatalf("a: %v %v", ok, err)
	}
	fence := a.Fence()
	if fence == 0 {
		t.Fatal("held lease without a fence")
	}
	if ok, err := c.TryAcquire(ctx); ok || err != nil {
		t.Fatalf("a clock an hour ahead took a held lease: %v %v", ok, err)
	}
	// Renewals past the first TTL keep it: each restarts the server's TTL.
	acquired := time.Now()
	var lastRenewal time.Time // when the last renewal was sent: the server's TTL starts after it
	for time.Since(acquired) < leaseTTL+leaseTTL/2 {
		time.Sleep(leaseTTL / 3)
		lastRenewal = time.Now()
		if err := a.Check(ctx); err != nil {
			t.Fatalf("renewal: %v", err)
		}
	}
	if ok, err := c.TryAcquire(ctx); ok || err != nil {
		t.Fatalf("a renewed lease was taken %v after it was acquired: %v %v", time.Since(acquired), ok, err)
	}
	if a.Fence() != fence {
		t.Fatalf("renewal changed the fence %d → %d", fence, a.Fence())
	}

	// a stops renewing: the server expires the key one TTL later, not before.
	took := acquireWithin(t, c, 10*leaseTTL)
	since := time.Since(lastRenewal)
	if since < leaseTTL-50*time.Millisecond {
		t.Fatalf("lease taken over %v after the last renewal (%v polling), before its TTL of %v", since, took, leaseTTL)
	}
	t.Logf("taken over %v after the last renewal was sent (TTL %v)", since, leaseTTL)
	if c.Fence() <= fence {
		t.Fatalf("the successor's fence %d is not above the predecessor's %d", c.Fence(), fence)
	}
	if ok, _ := a.TryAcquire(ctx); ok {
		t.Fatal("the old holder still believes it holds the lease")
	}
	if err := a.Check(ctx); !errors.Is(err, bus.ErrLeaseLost) {
		t.Fatalf("old holder's renewal: %v, want ErrLeaseLost", err)
	}
	if a.Held() || a.Fence() != 0 {
		t.Fatal("old holder reports the lease held")
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := a.TryAcquire(ctx); !ok {
		t.Fatal("released lease not available")
	}
	if a.Fence() <= fence {
		t.Fatal("a new tenure kept an old fence")
	}
}

// Two leaders racing, one paused: A holds the lease and writes, is frozen
// (its renewals stop) past the TTL, B takes over and writes; when A
// resumes, its write does not land and A learns it lost the lease.
func TestPausedLeaderCannotOverwriteItsSuccessor(t *testing.T) {
	b := openBus(t)
	kv := locks(t, b)
	state, err := b.KeyValue(context.Background(), bus.BucketState)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const key = "estimator.test"

	a := bus.NewLease(kv, "estimator-test", "a", leaseTTL)
	pause, resume := make(chan struct{}), make(chan struct{})
	a.SetRenewHook(func() {
		select {
		case <-pause:
			<-resume
		default:
		}
	})
	if ok, err := a.TryAcquire(ctx); !ok || err != nil {
		t.Fatalf("a: %v %v", ok, err)
	}
	job, stop := a.Hold(ctx)
	defer stop()
	aw := bus.NewFencedKV(bus.JetStream(b), state, a)
	if _, err := aw.Put(job, key, []byte("a1")); err != nil {
		t.Fatalf("holder's write: %v", err)
	}

	close(pause) // A is frozen from its next renewal on
	bl := bus.NewLease(kv, "estimator-test", "b", leaseTTL)
	acquireWithin(t, bl, 10*leaseTTL)
	bw := bus.NewFencedKV(bus.JetStream(b), state, bl)
	if _, err := bw.Put(ctx, key, []byte("b1")); err != nil {
		t.Fatalf("successor's write: %v", err)
	}

	close(resume)
	_, err = aw.Put(ctx, key, []byte("a2"))
	if !errors.Is(err, bus.ErrLeaseLost) {
		t.Fatalf("stale leader's write: %v, want ErrLeaseLost", err)
	}
	if e, err := state.Get(ctx, key); err != nil || string(e.Value()) != "b1" {
		t.Fatalf("state after the stale write: %v %v, want b1", e, err)
	}
	if a.Held() {
		t.Fatal("the stale leader still believes it holds the lease")
	}
	select {
	case <-job.Done():
		if !errors.Is(context.Cause(job), bus.ErrLeaseLost) {
			t.Fatalf("job context ended with %v, want ErrLeaseLost", context.Cause(job))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stale leader's job context did not end")
	}
}

// The record itself refuses a smaller fence, even from a writer whose
// own lease check passed: here two leases of one bucket write one key, and
// the one taken earlier (smaller revision) loses.
func TestFencedWriteRefusesAnOlderFence(t *testing.T) {
	b := openBus(t)
	kv := locks(t, b)
	state, _ := b.KeyValue(context.Background(), bus.BucketState)
	ctx := context.Background()
	const key = "shared"
	if _, err := state.Put(ctx, key, []byte("legacy")); err != nil { // written before fencing: no fence
		t.Fatal(err)
	}
	older := bus.NewLease(kv, "job-1", "x", time.Minute)
	newer := bus.NewLease(kv, "job-2", "y", time.Minute)
	for _, l := range []*bus.Lease{older, newer} {
		if ok, err := l.TryAcquire(ctx); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	ow, nw := bus.NewFencedKV(bus.JetStream(b), state, older), bus.NewFencedKV(bus.JetStream(b), state, newer)
	if _, err := ow.Put(ctx, key, []byte("old")); err != nil {
		t.Fatalf("a fenced write over an unfenced record: %v", err)
	}
	if _, err := nw.Put(ctx, key, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if fence, _, err := nw.Fence(ctx, key); err != nil || fence != newer.Fence() {
		t.Fatalf("record's fence %d %v, want %d", fence, err, newer.Fence())
	}
	if _, err := ow.Put(ctx, key, []byte("stale")); !errors.Is(err, bus.ErrLeaseLost) {
		t.Fatalf("write with an older fence: %v, want ErrLeaseLost", err)
	}
	if e, _ := state.Get(ctx, key); string(e.Value()) != "new" {
		t.Fatalf("value %q, want new", e.Value())
	}
}

// kefu_locks created by an older kefu (no per-key TTL) is upgraded in
// place, idempotently; an older kefu's record is honoured until its
// expires_at and taken over after it.
func TestLocksBucketUpgradesAndLegacyRecordsExpire(t *testing.T) {
	b := openBus(t)
	ctx := context.Background()
	old, err := bus.JetStream(b).CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.BucketLocks, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	legacy := func(holder string, expires time.Time) []byte {
		b, _ := json.Marshal(map[string]any{"holder": holder, "expires_at": expires})
		return b
	}
	old.Put(ctx, "live", legacy("old-replica", time.Now().Add(time.Hour)))
	old.Put(ctx, "dead", legacy("old-replica", time.Now().Add(-time.Minute)))

	kv := locks(t, b)
	kv = locks(t, b) // twice: the update is idempotent
	if st, err := kv.Status(ctx); err != nil || st.(*jetstream.KeyValueBucketStatus).LimitMarkerTTL() == 0 {
		t.Fatalf("kefu_locks not upgraded to per-key TTL: %v", err)
	}
	if ok, err := bus.NewLease(kv, "live", "new", leaseTTL).TryAcquire(ctx); ok || err != nil {
		t.Fatalf("an older kefu's lease taken within its time: %v %v", ok, err)
	}
	dead := bus.NewLease(kv, "dead", "new", leaseTTL)
	if ok, err := dead.TryAcquire(ctx); !ok || err != nil {
		t.Fatalf("an older kefu's expired lease not taken over: %v %v", ok, err)
	}
	// Now a server-expired record: nobody renews it, the server removes it.
	acquireWithin(t, bus.NewLease(kv, "dead", "other", leaseTTL), 10*leaseTTL)
}

// A lease on a bucket that was not opened through bus.KeyValue cannot
// expire, so it is refused with a clear error rather than held for ever.
func TestLeaseNeedsTheLocksBucket(t *testing.T) {
	b := openBus(t)
	raw, err := bus.JetStream(b).CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := bus.NewLease(raw, "k", "a", time.Minute).TryAcquire(context.Background()); ok || err == nil {
		t.Fatalf("lease on a plain bucket: %v %v", ok, err)
	}
}

// A job longer than the TTL keeps its lease: Hold renews it in the
// background (without it the server would have expired the key, and the
// holder's own renewal after the job would fail).
func TestHoldRenewsThroughALongJob(t *testing.T) {
	b := openBus(t)
	kv := locks(t, b)
	ctx := context.Background()
	l := bus.NewLease(kv, "queuecare-test", "a", leaseTTL)
	if ok, err := l.TryAcquire(ctx); !ok || err != nil {
		t.Fatal(ok, err)
	}
	fence := l.Fence()
	job, stop := l.Hold(ctx)
	time.Sleep(2 * leaseTTL) // the job
	if job.Err() != nil {
		t.Fatalf("job context ended: %v", context.Cause(job))
	}
	stop()
	if err := l.Check(ctx); err != nil || l.Fence() != fence || !l.Held() {
		t.Fatalf("after a job of twice the TTL: %v, fence %d (was %d)", err, l.Fence(), fence)
	}
}
