package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/pkg/events"
)

// ErrTooLarge means an event (body and headers) exceeds what the NATS
// server accepts in one message (its max_payload). Retrying cannot help:
// callers refuse the input instead.
var ErrTooLarge = errors.New("event too large for the bus")

// MaxPayload is the largest message (body and headers) the connected NATS
// server accepts; 0 before the first connection.
func (b *Bus) MaxPayload() int64 { return b.conn().MaxPayload() }

// Envelope is what is needed to publish one event besides its body.
type Envelope struct {
	// ID is ce-id and Nats-Msg-Id: deterministic for facts from a source
	// (so retries are dropped as duplicates), unique otherwise.
	ID string
	// Source is ce-source, e.g. "kefu/ingest/<appid>".
	Source string
	// Time is ce-time; zero means now.
	Time time.Time
	// Extra headers (e.g. a trace id).
	Headers map[string]string
}

// Published is JetStream's answer to a publish.
type Published struct {
	Stream    string
	Sequence  uint64
	Duplicate bool
}

// bodyPool holds encoding buffers for Publish. A body is only read while
// PublishMsg runs (nats.go copies it into the connection's write buffer,
// and a retry after "no responders" happens inside the same call), so the
// buffer can be reused as soon as PublishRaw returns.
var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody keeps an occasional huge event from pinning its buffer.
const maxPooledBody = 64 << 10

// Publish encodes ev and publishes it on its subject, returning only once
// JetStream has stored it (or recognised it as a duplicate).
func (b *Bus) Publish(ctx context.Context, ev events.Event, env Envelope) (Published, error) {
	buf := bodyPool.Get().(*[]byte)
	data, err := events.AppendEncode((*buf)[:0], ev)
	if err != nil {
		bodyPool.Put(buf)
		return Published{}, err
	}
	pub, err := b.PublishRaw(ctx, ev.EventSubject(), data, env)
	if cap(data) <= maxPooledBody {
		*buf = data
		bodyPool.Put(buf)
	}
	return pub, err
}

// PublishRaw publishes an already encoded body with the contract's headers.
func (b *Bus) PublishRaw(ctx context.Context, subject string, data []byte, env Envelope) (Published, error) {
	if env.Time.IsZero() {
		env.Time = time.Now()
	}
	if env.ID == "" {
		env.ID = nats.NewInbox()[len(nats.InboxPrefix):]
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: make(nats.Header, 8+len(env.Headers))}
	events.SetHeaders(msg.Header, subject, env.ID, env.Source, env.Time)
	for k, v := range env.Headers {
		msg.Header[k] = []string{v}
	}
	// nats.go checks the size too, but not while reconnecting, when the
	// message would be buffered and then cost the connection.
	if max := b.conn().MaxPayload(); max > 0 && int64(len(data)+headerSize(msg.Header)) > max {
		return Published{}, fmt.Errorf("publish %s: %d bytes of body: %w (max_payload %d)", subject, len(data), ErrTooLarge, max)
	}
	ack, err := b.js().PublishMsg(ctx, msg)
	if err != nil {
		return Published{}, fmt.Errorf("publish %s: %w", subject, tooLarge(err))
	}
	return Published{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// PublishMsg publishes a prepared message (headers as given) and waits for the ack.
func (b *Bus) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (Published, error) {
	ack, err := b.js().PublishMsg(ctx, msg, opts...)
	if err != nil {
		return Published{}, fmt.Errorf("publish %s: %w", msg.Subject, tooLarge(err))
	}
	return Published{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// headerSize is the encoded size of h as nats.go writes it (an upper
// bound: values are trimmed when written).
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4 // ": " and CRLF
		}
	}
	return n
}

// tooLarge adds ErrTooLarge to the errors that mean the message can never
// be stored: the client's max_payload check, and a stream's max_msg_size.
func tooLarge(err error) error {
	var apiErr *jetstream.APIError
	if errors.Is(err, nats.ErrMaxPayload) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum) {
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	return err
}
