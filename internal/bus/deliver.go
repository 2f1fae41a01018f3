package bus

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/pkg/events"
)

func delivery(m jetstream.Msg) *Delivery {
	h := m.Headers()
	d := &Delivery{Subject: m.Subject(), Data: m.Data(), Header: make(map[string]string, len(h))}
	for k, v := range h {
		if len(v) > 0 {
			d.Header[k] = v[0]
		}
	}
	if meta, err := m.Metadata(); err == nil {
		d.NumDelivered = meta.NumDelivered
		d.StreamSeq = meta.Sequence.Stream
		d.Published = meta.Timestamp
	}
	return d
}

// deliver handles one message and acks, retries or dead-letters it.
func (s *Subscription) deliver(m jetstream.Msg) {
	durable := s.spec.Durable
	if s.halted.Load() {
		// Received just before the pause: handed back untouched.
		s.handBack(m)
		return
	}
	if c := m.Headers().Get(HeaderRedriveConsumer); c != "" && c != durable {
		m.Ack() //nolint:errcheck // a lost ack redelivers it, and it is skipped again
		s.b.metrics.handled.WithLabelValues(durable, "skipped").Inc()
		return
	}
	d := delivery(m)
	if d.NumDelivered > 1 {
		s.b.metrics.redeliver.WithLabelValues(durable).Inc()
	}
	start := time.Now()
	err := safeHandle(s.ctx, s.handle, d)
	s.b.metrics.duration.WithLabelValues(durable).Observe(time.Since(start).Seconds())
	log := s.log
	switch {
	case err == nil:
		m.Ack() //nolint:errcheck // a lost ack redelivers; handlers are idempotent
		s.b.metrics.handled.WithLabelValues(durable, "ack").Inc()
		if ce := log.Check(zap.DebugLevel, "event handled"); ce != nil {
			// event_id is the ce-id ingest logged when it stored the
			// event: grep it to follow one event through every role.
			ce.Write(zap.String("event_id", d.ID()), zap.String("subject", d.Subject), zap.Uint64("stream_seq", d.StreamSeq))
		}
	case IsPermanent(err):
		if dlqErr := s.b.deadLetter(s.spec, d, err); dlqErr != nil {
			// Not acked: it comes back and the dead-letter publish is retried.
			log.Error("dead-letter publish failed", zap.Error(dlqErr), zap.String("event_id", d.ID()), zap.Uint64("stream_seq", d.StreamSeq))
			m.NakWithDelay(s.spec.RetryDelay(d.NumDelivered)) //nolint:errcheck // unacked, it comes back after AckWait anyway
			return
		}
		log.Error("message moved to dead-letter subject", zap.Error(err), zap.String("event_id", d.ID()), zap.String("subject", d.Subject),
			zap.Uint64("stream_seq", d.StreamSeq), zap.Uint64("delivered", d.NumDelivered), zap.String("dlq", events.DLQSubject(s.spec.Role)))
		m.Ack() //nolint:errcheck // a lost ack redelivers; the dead letter's id de-duplicates it
		s.b.metrics.handled.WithLabelValues(durable, "dead_letter").Inc()
		s.b.metrics.deadLet.WithLabelValues(durable).Inc()
	case s.ctx.Err() != nil:
		// Shutting down: the message comes back to another subscriber,
		// whatever its delivery count; it is not a poison message.
		m.Nak() //nolint:errcheck // unacked, it comes back after AckWait anyway
	default:
		delay := s.spec.RetryDelay(d.NumDelivered)
		if s.spec.Ready != nil {
			rctx, cancel := context.WithTimeout(s.ctx, s.probeTimeout())
			rerr := s.spec.Ready(rctx)
			cancel()
			if rerr != nil {
				s.pause(rerr)
				delay = s.spec.ProbeInterval
			}
		}
		level := zap.WarnLevel
		if d.NumDelivered >= uint64(s.spec.MaxDeliver) {
			level = zap.ErrorLevel
		}
		if ce := log.Check(level, "handler failed; will retry"); ce != nil {
			ce.Write(zap.Error(err), zap.String("event_id", d.ID()), zap.String("subject", d.Subject),
				zap.Uint64("stream_seq", d.StreamSeq), zap.Uint64("delivered", d.NumDelivered), zap.Duration("retry_in", delay))
		}
		m.NakWithDelay(delay) //nolint:errcheck // unacked, it comes back after AckWait anyway
		s.b.metrics.handled.WithLabelValues(durable, "retry").Inc()
	}
}
