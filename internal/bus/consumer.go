package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/pkg/events"
)

// ConsumerSpec describes one durable consumer and how its messages are handled.
type ConsumerSpec struct {
	// Role names the dead-letter subject: kefu.dlq.<role>.
	Role string
	// Stream and Durable name the consumer; FilterSubject selects messages.
	Stream, Durable, FilterSubject string
	// DeliverNew starts a new consumer at the end of the stream instead of
	// its beginning.
	DeliverNew bool
	// MaxAckPending bounds the messages in flight (default 4 ×
	// Concurrency, at least 16), so that messages never wait in a local
	// buffer until their AckWait expires: the server hands a backlog out
	// to the waiting pulls in turn, and a pull handles what it holds one
	// by one, so MaxAckPending × the slowest handler must stay below
	// AckWait.
	MaxAckPending int
	// AckWait must exceed the slowest handler (default 30s).
	AckWait time.Duration
	// MaxDeliver no longer sends anything to the dead-letter subject: a
	// message that fails transiently is retried for as long as it fails,
	// because its dependency coming back is all it needs. From this
	// delivery on (default 5) each further failure is logged as an error
	// instead of a warning, so that a stuck message is seen.
	MaxDeliver int
	// Backoff is the delay before the n-th redelivery after a transient
	// error; after its last value the delay doubles, and every delay is at
	// most MaxBackoff (default 1s, 2s, 4s, … up to MaxBackoff).
	Backoff []time.Duration
	// MaxBackoff caps the delay between two tries of a message
	// (KEFU_RETRY_MAX_BACKOFF, default 2m).
	MaxBackoff time.Duration
	// Concurrency is how many messages are handled at once (default 4).
	Concurrency int
	// Ready, when set, says whether the handler's dependency (a database)
	// answers. When a handler fails transiently and Ready fails too, the
	// subscription stops taking messages — the server then keeps them, or
	// hands them to a replica that can store them — and asks Ready every
	// ProbeInterval until it answers, then resumes.
	Ready func(ctx context.Context) error
	// ProbeInterval is how often Ready is asked while paused (default 1s,
	// at most MaxBackoff).
	ProbeInterval time.Duration
}

func (s *ConsumerSpec) setDefaults() {
	if s.Concurrency <= 0 {
		s.Concurrency = 4
	}
	if s.MaxAckPending <= 0 {
		s.MaxAckPending = 4 * s.Concurrency
		if s.MaxAckPending < 16 {
			s.MaxAckPending = 16
		}
	}
	if s.AckWait <= 0 {
		s.AckWait = 30 * time.Second
	}
	if s.MaxDeliver <= 0 {
		s.MaxDeliver = 5
	}
	if s.MaxBackoff <= 0 {
		s.MaxBackoff = 2 * time.Minute
	}
	if len(s.Backoff) == 0 {
		s.Backoff = []time.Duration{time.Second}
	}
	if s.ProbeInterval <= 0 {
		s.ProbeInterval = time.Second
	}
	s.ProbeInterval = min(s.ProbeInterval, s.MaxBackoff)
}

// Validate names what is missing.
func (s ConsumerSpec) Validate() error {
	switch {
	case s.Role == "":
		return errors.New("consumer: Role is required (it names the dead-letter subject)")
	case s.Stream == "":
		return errors.New("consumer: Stream is required")
	case s.Durable == "":
		return errors.New("consumer: Durable is required")
	case s.FilterSubject == "":
		return errors.New("consumer: FilterSubject is required")
	}
	for _, d := range s.Backoff {
		if d <= 0 {
			return fmt.Errorf("consumer %s: Backoff %s is not positive", s.Durable, d)
		}
	}
	return nil
}

// RetryDelay is the wait before the next try of a message whose
// delivered-th delivery failed transiently: Backoff[delivered-1], then
// doubling after the last value, capped at MaxBackoff. It never grows
// past the cap however often the message fails, so a message is tried
// again at most MaxBackoff after its dependency is back.
func (s ConsumerSpec) RetryDelay(delivered uint64) time.Duration {
	s.setDefaults()
	i := max(int(min(delivered, 1<<20)), 1) - 1
	if i < len(s.Backoff) {
		return min(s.Backoff[i], s.MaxBackoff)
	}
	d := s.Backoff[len(s.Backoff)-1]
	for j := len(s.Backoff) - 1; j < i && d < s.MaxBackoff; j++ {
		d *= 2
	}
	return min(d, s.MaxBackoff)
}

// Delivery is one message given to a handler.
type Delivery struct {
	Subject string
	Header  map[string]string
	Data    []byte
	// NumDelivered counts deliveries of this message, 1 the first time.
	NumDelivered uint64
	StreamSeq    uint64
	// Published is when JetStream stored the message.
	Published time.Time
}

// ID is the message's ce-id (its de-duplication id).
func (d *Delivery) ID() string { return d.Header[events.HeaderID] }

// Handler handles one message. nil acks it; an error wrapped with
// Permanent sends it to the dead-letter subject at once; any other error
// is transient: the message is redelivered after RetryDelay, as often as
// it takes.
type Handler func(ctx context.Context, d *Delivery) error

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix (a poison message).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Dead-letter headers added to the original message's headers.
const (
	HeaderDLQReason    = "Kefu-Dlq-Reason"
	HeaderDLQSubject   = "Kefu-Dlq-Subject"
	HeaderDLQStream    = "Kefu-Dlq-Stream"
	HeaderDLQStreamSeq = "Kefu-Dlq-Stream-Seq"
	HeaderDLQDelivered = "Kefu-Dlq-Delivered"
	HeaderDLQConsumer  = "Kefu-Dlq-Consumer"
	// HeaderDLQMsgID is the original Nats-Msg-Id, which the dead letter
	// cannot carry under its own name (it has a de-duplication id of its
	// own); `kefu dlq redrive` derives the redriven message's id from it.
	HeaderDLQMsgID = "Kefu-Dlq-Msg-Id"
	// HeaderRedriveConsumer is set by `kefu dlq redrive` to the durable
	// consumer that dead-lettered the message: every other consumer of
	// its subject already handled the original and acknowledges the
	// redriven copy without handling it.
	HeaderRedriveConsumer = "Kefu-Redrive-Consumer"
)

// ConsumerConfig is the JetStream configuration of spec's durable pull
// consumer. Every process bound to it pulls from it, so they share the
// work.
func ConsumerConfig(spec ConsumerSpec) jetstream.ConsumerConfig {
	spec.setDefaults()
	policy := jetstream.DeliverAllPolicy
	if spec.DeliverNew {
		policy = jetstream.DeliverNewPolicy
	}
	return jetstream.ConsumerConfig{
		Durable:       spec.Durable,
		Description:   "kefu " + spec.Role,
		DeliverPolicy: policy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       spec.AckWait,
		// No limit: a message the server stopped delivering would be lost
		// without a trace. A transient failure is retried until it
		// heals; a permanent one goes to the dead-letter subject, where
		// `kefu dlq` finds it.
		MaxDeliver:    -1,
		FilterSubject: spec.FilterSubject,
		MaxAckPending: spec.MaxAckPending,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}
}

// safeHandle turns a handler panic into a permanent error, so one poison
// message cannot crash a consumer in a loop.
func safeHandle(ctx context.Context, handle Handler, d *Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Permanent(fmt.Errorf("handler panic: %v", r))
		}
	}()
	return handle(ctx, d)
}

func (b *Bus) deadLetter(spec ConsumerSpec, d *Delivery, cause error) error {
	msg := &nats.Msg{Subject: events.DLQSubject(spec.Role), Data: d.Data, Header: nats.Header{}}
	for k, v := range d.Header {
		if k == events.HeaderMsgID {
			msg.Header.Set(HeaderDLQMsgID, v)
			continue
		}
		msg.Header.Set(k, v)
	}
	reason := cause.Error()
	if len(reason) > 1024 {
		reason = reason[:1024]
	}
	msg.Header.Set(HeaderDLQReason, reason)
	msg.Header.Set(HeaderDLQSubject, d.Subject)
	msg.Header.Set(HeaderDLQStream, spec.Stream)
	msg.Header.Set(HeaderDLQStreamSeq, strconv.FormatUint(d.StreamSeq, 10))
	msg.Header.Set(HeaderDLQDelivered, strconv.FormatUint(d.NumDelivered, 10))
	msg.Header.Set(HeaderDLQConsumer, spec.Durable)
	msg.Header.Set(events.HeaderMsgID, "dlq-"+spec.Stream+"-"+spec.Durable+"-"+strconv.FormatUint(d.StreamSeq, 10))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := b.PublishMsg(ctx, msg)
	return err
}
