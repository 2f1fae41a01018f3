package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrLeaseLost is returned (and is the cause of a Hold context's end) when
// this process no longer holds its lease: another process took it over, or
// it could not be renewed before it ran out.
var ErrLeaseLost = errors.New("lease lost")

// Lease makes one process at a time the holder of a named job (a poller,
// a sweeper) across replicas.
//
// Expiry is the NATS server's: every write of the lease record carries a
// per-message TTL (kefu_locks allows them), and the server deletes the key
// when the holder stops renewing. No host's clock decides who holds it, so
// a replica whose clock runs ahead cannot steal a lease and one whose
// clock runs behind cannot keep it.
//
// Every write is a compare-and-set on the key's revision, so two processes
// never both take it. The revision of the write that began the current
// tenure is the lease's fencing token (Fence): it only grows across
// tenures, and FencedKV refuses a write stamped with a smaller one than
// the record already carries, so a holder that was paused past its TTL
// cannot overwrite what its successor wrote.
type Lease struct {
	kv        jetstream.KeyValue
	key       string
	holder    string
	ttl       time.Duration
	serverTTL time.Duration // ttl rounded up to whole seconds (the server's unit)
	now       func() time.Time

	op sync.Mutex // one operation on the key at a time: two CAS writes of one holder must not race

	mu         sync.Mutex // guards the fields below
	revision   uint64     // of this holder's last write
	fence      uint64     // revision that began the current tenure
	held       bool
	validUntil time.Time // monotonic; past it the holder stops acting even if unsure
	renewHook  func()
}

type leaseRecord struct {
	Holder string `json:"holder"`
	// ExpiresAt is for people and for kefu versions before server-side
	// expiry, which compare it with their clock; current ones ignore it.
	ExpiresAt time.Time `json:"expires_at"`
	// TTLSeconds marks a record the server expires. A record without it
	// (an older kefu) falls back to ExpiresAt, so a rolling upgrade does
	// not hang on a lease that never expires.
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
}

// ttlWriter is the compare-and-set write that also (re)sets the key's TTL,
// which the KV API offers only on Create. Bus.KeyValue returns kefu_locks
// with it; NewLease finds it there.
type ttlWriter interface {
	updateTTL(ctx context.Context, key string, value []byte, revision uint64, ttl time.Duration) (uint64, error)
}

// locksKV is kefu_locks as Bus.KeyValue returns it.
type locksKV struct {
	jetstream.KeyValue
	js jetstream.JetStream
}

func (kv *locksKV) updateTTL(ctx context.Context, key string, value []byte, revision uint64, ttl time.Duration) (uint64, error) {
	msg := &nats.Msg{Subject: kvSubject(kv.js, kv.Bucket(), key), Header: nats.Header{}, Data: value}
	ack, err := kv.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(revision), jetstream.WithMsgTTL(ttl))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// kvSubject is the subject a KV write of key goes to, as nats.go builds it.
func kvSubject(js jetstream.JetStream, bucket, key string) string {
	prefix := ""
	switch o := js.Options(); {
	case o.Domain != "":
		prefix = "$JS." + o.Domain + ".API."
	case o.APIPrefix != "" && o.APIPrefix != jetstream.DefaultAPIPrefix:
		prefix = strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	return prefix + "$KV." + bucket + "." + key
}

// NewLease returns a lease on key held under the name holder (unique per
// process) for ttl after each successful TryAcquire or renewal. kv must be
// kefu_locks as Bus.KeyValue returns it (the server expires its keys).
func NewLease(kv jetstream.KeyValue, key, holder string, ttl time.Duration) *Lease {
	server := ttl.Truncate(time.Second)
	if server < ttl {
		server += time.Second
	}
	return &Lease{kv: kv, key: key, holder: holder, ttl: ttl, serverTTL: server, now: time.Now}
}

// SetClock replaces the wall clock written into the record for people and
// older kefu versions. Expiry never depends on it.
func (l *Lease) SetClock(now func() time.Time) { l.now = now }

// SetRenewHook installs a function called before every background renewal
// by Hold (tests: blocking in it freezes the holder's renewals as a stopped
// process would).
func (l *Lease) SetRenewHook(hook func()) {
	l.mu.Lock()
	l.renewHook = hook
	l.mu.Unlock()
}

// TTL is the lease's time to live.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Held reports whether this process holds the lease: the last acquisition
// or renewal succeeded and its time is not yet up by the local monotonic
// clock (which runs out before the server's TTL does).
func (l *Lease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held && time.Now().Before(l.validUntil)
}

// Fence is the fencing token of the current tenure: the KV revision of the
// write that acquired the lease. It is 0 when the lease is not held, and
// greater in every later tenure, whoever holds it.
func (l *Lease) Fence() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.held {
		return 0
	}
	return l.fence
}

func (l *Lease) record() []byte {
	rec, _ := json.Marshal(leaseRecord{Holder: l.holder, ExpiresAt: l.now().Add(l.ttl).UTC(), TTLSeconds: int64(l.serverTTL / time.Second)})
	return rec
}

func (l *Lease) writer() (ttlWriter, error) {
	w, ok := l.kv.(ttlWriter)
	if !ok {
		return nil, fmt.Errorf("lease %s: bucket %s was not opened with bus.KeyValue; its keys could not expire", l.key, l.kv.Bucket())
	}
	return w, nil
}

// TryAcquire takes or renews the lease. It returns true while this process
// holds it. Call it well within the TTL (every ttl/3); Hold renews in the
// background while a long job runs.
func (l *Lease) TryAcquire(ctx context.Context) (bool, error) {
	l.op.Lock()
	defer l.op.Unlock()
	w, err := l.writer()
	if err != nil {
		l.drop()
		return false, err
	}
	start := time.Now()
	entry, err := l.kv.Get(ctx, l.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound): // never held, released, or expired by the server
		rev, err := l.kv.Create(ctx, l.key, l.record(), jetstream.KeyTTL(l.serverTTL))
		return l.acquired(start, rev, true, err)
	case err != nil:
		l.drop()
		return false, fmt.Errorf("lease %s: %w", l.key, err)
	}
	var cur leaseRecord
	if json.Unmarshal(entry.Value(), &cur) != nil {
		cur = leaseRecord{} // unreadable: treated as an expired record of an older kefu
	}
	l.mu.Lock()
	renewing := l.held && l.revision == entry.Revision()
	l.mu.Unlock()
	switch {
	case cur.Holder == l.holder:
		// Ours. The tenure goes on only from the revision this holder
		// last wrote; otherwise it begins again with a new fence.
	case cur.TTLSeconds > 0:
		l.drop()
		return false, nil // another holder's, and the server has not expired it
	case l.now().Before(cur.ExpiresAt):
		l.drop()
		return false, nil // an older kefu's, within its time
	}
	rev, err := w.updateTTL(ctx, l.key, l.record(), entry.Revision(), l.serverTTL)
	return l.acquired(start, rev, !renewing, err)
}

// acquired records the outcome of an acquiring write begun at start.
func (l *Lease) acquired(start time.Time, rev uint64, newTenure bool, err error) (bool, error) {
	if err != nil {
		l.drop()
		if isRevisionConflict(err) {
			return false, nil // someone else won the race
		}
		return false, fmt.Errorf("lease %s: %w", l.key, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.revision, l.held = rev, true
	if newTenure || l.fence == 0 {
		l.fence = rev
	}
	l.validUntil = start.Add(l.validity())
	return true, nil
}

// validity is how long the holder acts on a renewal, counted from before
// the write was sent: the server's TTL starts later and is rounded up, and
// the quarter left is for a write in flight to land before the server
// could hand the lease to someone else.
func (l *Lease) validity() time.Duration { return l.ttl - l.ttl/4 }

func (l *Lease) drop() {
	l.mu.Lock()
	l.held = false
	l.mu.Unlock()
}

// Check renews the lease by revision and reports ErrLeaseLost if another
// process holds it now or it ran out. Call it right before an effect that
// only the holder may have (FencedKV does).
func (l *Lease) Check(ctx context.Context) error {
	l.op.Lock()
	defer l.op.Unlock()
	w, err := l.writer()
	if err != nil {
		return err
	}
	l.mu.Lock()
	held, rev, until := l.held, l.revision, l.validUntil
	l.mu.Unlock()
	if !held {
		return fmt.Errorf("lease %s: %w", l.key, ErrLeaseLost)
	}
	start := time.Now()
	newRev, err := w.updateTTL(ctx, l.key, l.record(), rev, l.serverTTL)
	if isRevisionConflict(err) {
		// A renewal whose answer was lost may have landed: the record is
		// still ours if its holder is us (only this holder writes it while
		// it holds it, always by revision).
		if entry, gerr := l.kv.Get(ctx, l.key); gerr == nil {
			var cur leaseRecord
			if json.Unmarshal(entry.Value(), &cur) == nil && cur.Holder == l.holder {
				newRev, err = w.updateTTL(ctx, l.key, l.record(), entry.Revision(), l.serverTTL)
			}
		}
	}
	switch {
	case err == nil:
		l.mu.Lock()
		l.revision, l.validUntil = newRev, start.Add(l.validity())
		l.mu.Unlock()
		return nil
	case isRevisionConflict(err):
		l.drop()
		return fmt.Errorf("lease %s: %w: it expired or another holder has it", l.key, ErrLeaseLost)
	case !time.Now().Before(until):
		l.drop()
		return fmt.Errorf("lease %s: %w: not renewed in time: %v", l.key, ErrLeaseLost, err)
	}
	return fmt.Errorf("renew lease %s: %w", l.key, err)
}

// Hold renews the lease every ttl/3 until the returned stop is called, so
// that a job longer than a tick keeps it. The returned context ends, with
// cause ErrLeaseLost, as soon as a renewal finds the lease lost or it could
// not be renewed in time; run the job under it. stop does not release the
// lease.
func (l *Lease) Hold(ctx context.Context) (context.Context, func()) {
	hctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	every := max(l.ttl/3, 100*time.Millisecond)
	go func() {
		defer close(done)
		t := time.NewTimer(every)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
			}
			l.mu.Lock()
			hook := l.renewHook
			l.mu.Unlock()
			if hook != nil {
				hook()
			}
			// A slow answer is still a renewal (validity counts from the
			// request), so give it up to half the TTL rather than failing
			// it at the next tick on a loaded machine.
			rctx, rcancel := context.WithTimeout(hctx, max(every, l.ttl/2))
			err := l.Check(rctx)
			rcancel()
			switch {
			case errors.Is(err, ErrLeaseLost):
				cancel(err)
				return
			case err != nil:
				t.Reset(min(every, time.Second)) // NATS unreachable: try again soon
			default:
				t.Reset(every)
			}
		}
	}()
	return hctx, func() {
		cancel(context.Canceled)
		<-done
	}
}

// LostCause tells whether err, or the end of ctx, comes from losing the
// lease, and returns ErrLeaseLost (wrapped) in that case and err otherwise.
func LostCause(ctx context.Context, err error) error {
	if errors.Is(err, ErrLeaseLost) {
		return err
	}
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), ErrLeaseLost) {
		return context.Cause(ctx)
	}
	return err
}

// Release gives the lease up at once (on shutdown), so another replica
// need not wait for it to expire.
func (l *Lease) Release(ctx context.Context) error {
	l.op.Lock()
	defer l.op.Unlock()
	l.mu.Lock()
	held, rev := l.held, l.revision
	l.held = false
	l.mu.Unlock()
	if !held {
		return nil
	}
	err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) && !isRevisionConflict(err) {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	return nil
}

// isRevisionConflict reports a compare-and-set that lost: the key exists
// already, or its revision is not the one expected.
func isRevisionConflict(err error) bool {
	if err == nil {
		return false
	}
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// HeaderFence carries, on a record written through FencedKV, the fencing
// token of the lease it was written under.
const HeaderFence = "Kefu-Fence"

// FencedKV writes the keys of a KV bucket on behalf of a lease holder:
// each write renews the lease by revision, reads the key's last record and
// its fence, refuses (ErrLeaseLost) if that fence is greater than the
// lease's — a later holder wrote it — and otherwise writes by revision,
// stamped with the lease's fence. The values are unchanged (the fence
// travels in a header), so readers use the bucket as before.
//
// Once a new holder has written a key, no write of an earlier holder can
// land on it; what an earlier holder wrote before that is overwritten by
// the new holder's first write, which is why a holder writes its state
// once right after taking over.
type FencedKV struct {
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	lease *Lease

	mu     sync.Mutex
	stream jetstream.Stream
}

// NewFencedKV returns the writer of kv's keys under lease.
func NewFencedKV(js jetstream.JetStream, kv jetstream.KeyValue, lease *Lease) *FencedKV {
	return &FencedKV{js: js, kv: kv, lease: lease}
}

// maxFencedAttempts bounds the compare-and-set retries of one write: each
// means another writer wrote the key in between.
const maxFencedAttempts = 8

// Put writes value to key if the lease is still held and no later holder
// wrote key; it returns the new revision or an error wrapping ErrLeaseLost.
func (f *FencedKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := f.lease.Check(ctx); err != nil {
		return 0, err
	}
	fence := f.lease.Fence()
	if fence == 0 {
		return 0, ErrLeaseLost
	}
	stream, err := f.bucketStream(ctx)
	if err != nil {
		return 0, err
	}
	subject := kvSubject(f.js, f.kv.Bucket(), key)
	for range maxFencedAttempts {
		rev, cur, err := lastFence(ctx, stream, "$KV."+f.kv.Bucket()+"."+key)
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", key, err)
		}
		if cur > fence {
			f.lease.drop()
			return 0, fmt.Errorf("write %s: %w: written under fence %d, this holder's is %d", key, ErrLeaseLost, cur, fence)
		}
		msg := &nats.Msg{Subject: subject, Header: nats.Header{}, Data: value}
		msg.Header.Set(HeaderFence, fmt.Sprint(fence))
		ack, err := f.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(rev))
		if err == nil {
			return ack.Sequence, nil
		}
		if !isRevisionConflict(err) {
			return 0, fmt.Errorf("write %s: %w", key, err)
		}
	}
	return 0, fmt.Errorf("write %s: too many concurrent writers", key)
}

// Fence returns the fence key was last written under (0: none, or not
// through FencedKV) and its revision (0: no such key).
func (f *FencedKV) Fence(ctx context.Context, key string) (fence, revision uint64, err error) {
	stream, err := f.bucketStream(ctx)
	if err != nil {
		return 0, 0, err
	}
	revision, fence, err = lastFence(ctx, stream, "$KV."+f.kv.Bucket()+"."+key)
	return fence, revision, err
}

func (f *FencedKV) bucketStream(ctx context.Context) (jetstream.Stream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stream != nil {
		return f.stream, nil
	}
	s, err := f.js.Stream(ctx, "KV_"+f.kv.Bucket())
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", f.kv.Bucket(), err)
	}
	f.stream = s
	return s, nil
}

// lastFence reads the revision and fence of the last record on subject
// (a delete marker counts, with fence 0).
func lastFence(ctx context.Context, stream jetstream.Stream, subject string) (rev, fence uint64, err error) {
	m, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	if v := m.Header.Get(HeaderFence); v != "" {
		if _, err := fmt.Sscan(v, &fence); err != nil {
			return 0, 0, fmt.Errorf("unreadable %s header %q", HeaderFence, v)
		}
	}
	return m.Sequence, fence, nil
}

// leaseMarkerTTL is how long kefu_locks keeps the marker the server leaves
// when a lease expires (watchers see the expiry; then it goes).
const leaseMarkerTTL = time.Minute
