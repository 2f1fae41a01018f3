package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// OnRedial registers f to run after each redial, once the new connection
// is in place: what is bound to a connection (a subscription, a KV watcher)
// is re-opened there. f must not block. remove unregisters it (a closed
// subscription's, say), so the bus does not keep it for ever.
func (b *Bus) OnRedial(f func()) (remove func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := &f
	b.onRedial = append(b.onRedial, h)
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.onRedial = slices.DeleteFunc(b.onRedial, func(x *func()) bool { return x == h })
	}
}

// stall records that durable's Consume has ended and cannot be started
// again yet (why: cause): until unstall, Ready fails naming it and
// UnusableSince runs, so that a consumer that cannot come back ends in a
// restart instead of silence.
func (b *Bus) stall(durable string, cause error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stalled == nil {
		b.stalled = map[string]error{}
	}
	b.stalled[durable] = cause
}

// unstall records that durable consumes again (or has closed).
func (b *Bus) unstall(durable string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.stalled, durable)
}

// stalledDown names a consumer that does not consume, or returns "".
// b.mu must be held.
func (b *Bus) stalledDown() string {
	for durable, cause := range b.stalled {
		return fmt.Sprintf("consumer %s not consuming: %v", durable, cause)
	}
	return ""
}

// UnusableSince is when the bus stopped being usable — disconnected,
// closed, or between a close and the new connection; or a consumer
// that cannot consume — or zero while it is connected. /healthz fails once
// this is older than KEFU_NATS_DOWN_LIMIT.
func (b *Bus) UnusableSince() time.Time {
	g := b.gen.Load()
	b.mu.Lock()
	defer b.mu.Unlock()
	if g != nil && g.nc.IsConnected() && !b.closing && b.stalledDown() == "" {
		b.downSince = time.Time{}
	} else if b.downSince.IsZero() {
		b.downSince = time.Now()
	}
	return b.downSince
}

// current reports whether nc is the bus's connection of the moment (the
// handlers outlive a redial).
func (b *Bus) current(nc *nats.Conn) bool {
	g := b.gen.Load()
	return g != nil && g.nc == nc
}

func (b *Bus) markDown(nc *nats.Conn) {
	if !b.current(nc) {
		return
	}
	b.mu.Lock()
	if b.downSince.IsZero() {
		b.downSince = time.Now()
	}
	b.mu.Unlock()
}

func (b *Bus) markUp(nc *nats.Conn) {
	if !b.current(nc) || !nc.IsConnected() {
		return
	}
	b.mu.Lock()
	b.downSince = time.Time{}
	b.mu.Unlock()
}

// closed runs when a connection is closed for good. Unless the bus itself
// is closing, the current one is replaced.
func (b *Bus) closed(nc *nats.Conn) {
	if !b.current(nc) {
		return
	}
	b.mu.Lock()
	closing := b.closing
	if !closing && b.downSince.IsZero() {
		b.downSince = time.Now()
	}
	b.mu.Unlock()
	if closing {
		return
	}
	b.log.Error("nats connection closed by the server for good; dialing a new one", zap.Error(nc.LastError()))
	go b.redial(b.gen.Load())
}

// redial opens a new connection with the same options and swaps it in.
// nats.Connect with RetryOnFailedConnect returns at once and keeps trying
// in the background, so the loop only repeats when the options themselves
// fail (say, an unreadable credentials file).
func (b *Bus) redial(old *generation) {
	wait := 250 * time.Millisecond
	for {
		nc, err := nats.Connect(b.url, b.opts...)
		var js jetstream.JetStream
		if err == nil {
			if js, err = jetstream.New(nc); err != nil {
				nc.Close()
			}
		}
		if err == nil {
			b.mu.Lock()
			if b.closing {
				b.mu.Unlock()
				nc.Close()
				return
			}
			b.gen.Store(&generation{nc: nc, js: js, n: old.n + 1})
			b.redials.Add(1)
			hooks := make([]func(), 0, len(b.onRedial))
			for _, h := range b.onRedial {
				hooks = append(hooks, *h)
			}
			b.mu.Unlock()
			b.markUp(nc)
			for _, f := range hooks {
				f()
			}
			return
		}
		b.log.Warn("nats redial failed; retrying", zap.Error(err), zap.Duration("in", wait))
		select {
		case <-b.stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func waitConnected(ctx context.Context, nc *nats.Conn) error {
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() {
		// A caller's shorter deadline is reported as such, not as 10 s.
		if err := ctx.Err(); err != nil {
			return withLastError(err, nc)
		}
		if time.Now().After(deadline) {
			return withLastError(errors.New("no server answered within 10s"), nc)
		}
		select {
		case <-ctx.Done():
			return withLastError(ctx.Err(), nc)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
