package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/pkg/events"
)

// HeaderReplayOf carries a republished event's original Nats-Msg-Id.
const HeaderReplayOf = "Kefu-Replay-Of"

const (
	// maxPendingAcks bounds the republished messages awaiting JetStream's ack.
	maxPendingAcks = 4096
	// ackTimeout is how long one republished message may wait for its ack;
	// it makes every publish end, acknowledged or failed.
	ackTimeout = 30 * time.Second
)

// ReplayMsgID is the Nats-Msg-Id of a republished event: stable for one
// stored message, so replaying a range twice within the target stream's
// duplicate window stores it once.
func ReplayMsgID(stream string, seq uint64) string {
	return "replay-" + stream + "-" + strconv.FormatUint(seq, 10)
}

// republisher publishes events again under a prefix: to JetStream,
// waiting for every ack, when a stream captures the prefix; on core NATS
// otherwise.
type republisher struct {
	prefix, stream string
	bus            *bus.Bus
	js             bus.AsyncPublisher // nil: core NATS
	stderr         io.Writer

	acks chan jetstream.PubAckFuture
	done chan struct{} // closed when the ack collector has seen every ack

	published int // only put and finish touch it, on the reading goroutine

	mu         sync.Mutex // shared with the ack collector
	stored     int
	duplicates int
	failed     error // the first failed publish
}

// newRepublisher checks the prefix against the streams: a prefix the
// source stream captures itself would feed the replay back into it forever.
func newRepublisher(ctx context.Context, b *bus.Bus, prefix, source string, stderr io.Writer) (*republisher, error) {
	targets, err := b.StreamNames(ctx, prefix+".>")
	if err != nil {
		return nil, fmt.Errorf("find the streams of %s.>: %w", prefix, err)
	}
	slices.Sort(targets)
	if slices.Contains(targets, source) {
		return nil, usagef("replay", "--republish %q: stream %s itself captures %s.>, republishing would loop", prefix, source, prefix)
	}
	r := &republisher{prefix: prefix, stream: source, bus: b, stderr: stderr}
	if len(targets) == 0 {
		fmt.Fprintf(stderr, "kefu replay: no stream captures %s.>; publishing on core NATS, only live subscribers receive the events\n", prefix)
		return r, nil
	}
	js, err := b.AsyncPublisher(maxPendingAcks, ackTimeout)
	if err != nil {
		return nil, err
	}
	r.js = js
	r.acks = make(chan jetstream.PubAckFuture, maxPendingAcks)
	r.done = make(chan struct{})
	go r.collectAcks()
	return r, nil
}

// message is the republished copy of r.
func (p *republisher) message(r *record) *nats.Msg {
	h := make(nats.Header, len(r.Header)+1)
	for k, v := range r.Header {
		// Nats-* headers are JetStream's directives for the original
		// publish (expected sequence, rollup, TTL, …) and its id: applied
		// to the copy they would fail it, purge the target or drop it.
		if len(k) >= 5 && strings.EqualFold(k[:5], "nats-") || k == HeaderReplayOf {
			continue
		}
		h[k] = v
	}
	if id := r.Header.Get(events.HeaderMsgID); id != "" {
		h[HeaderReplayOf] = []string{id}
	}
	h[events.HeaderMsgID] = []string{ReplayMsgID(p.stream, r.Seq)}
	return &nats.Msg{Subject: p.prefix + "." + r.Subject, Header: h, Data: r.Data}
}

func (p *republisher) put(r *record, _ bool) error {
	msg := p.message(r)
	if p.js == nil {
		if err := p.bus.PublishCore(msg); err != nil {
			return fmt.Errorf("republish %s: %w", msg.Subject, err)
		}
		p.published++
		return nil
	}
	p.mu.Lock()
	failed := p.failed
	p.mu.Unlock()
	if failed != nil {
		return failed
	}
	for {
		fut, err := p.js.PublishMsgAsync(msg)
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			// The target is slower than the source: wait for acks, not fail.
			<-p.js.PublishAsyncComplete()
			continue
		}
		if err != nil {
			return fmt.Errorf("republish %s: %w", msg.Subject, err)
		}
		p.acks <- fut
		p.published++
		return nil
	}
}

// collectAcks counts the acks in publish order and keeps the first failure.
func (p *republisher) collectAcks() {
	defer close(p.done)
	for fut := range p.acks {
		select {
		case ack := <-fut.Ok():
			p.mu.Lock()
			if ack.Duplicate {
				p.duplicates++
			} else {
				p.stored++
			}
			p.mu.Unlock()
		case err := <-fut.Err():
			p.mu.Lock()
			if p.failed == nil {
				p.failed = fmt.Errorf("republish %s: %w", fut.Msg().Subject, err)
			}
			p.mu.Unlock()
		}
	}
}

// finish waits for every ack (or flushes core NATS) and says on stderr
// what happened.
func (p *republisher) finish() error {
	if p.js == nil {
		ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
		defer cancel()
		if err := p.bus.Flush(ctx); err != nil {
			return fmt.Errorf("republish: flush: %w", err)
		}
		fmt.Fprintf(p.stderr, "kefu replay: republished %d events to %s.> on core NATS\n", p.published, p.prefix)
		return nil
	}
	close(p.acks)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.stderr, "kefu replay: republished %d events to %s.>: %d stored, %d dropped as duplicates of an earlier replay\n",
		p.published, p.prefix, p.stored, p.duplicates)
	return p.failed
}
