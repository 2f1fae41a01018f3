package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// probeTimeout bounds one Ready call.
func (s *Subscription) probeTimeout() time.Duration {
	return max(s.spec.ProbeInterval, 5*time.Second)
}

// pause stops the Consumes, so the server stops handing messages to this
// process, and probes Ready until it answers. It does not wait for them:
// it runs in a handler of one of them.
func (s *Subscription) pause(cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	if s.halted.Load() {
		if s.pauseErr != nil {
			s.pauseErr = cause
		}
		return
	}
	s.halted.Store(true)
	ccs := s.ccs
	s.ccs = nil
	s.wg.Add(1)
	// Drained, not stopped: what the client already holds is handed
	// back by deliver rather than left to its AckWait.
	go s.probe(ccs, cause)
}

// probe reports the pause once the Consumes are drained, then asks Ready
// every ProbeInterval and resumes once it answers.
func (s *Subscription) probe(ccs []jetstream.ConsumeContext, cause error) {
	defer s.wg.Done()
	since := time.Now()
	drained := make(chan struct{})
	go func() {
		drain(ccs)
		close(drained)
	}()
	select {
	case <-drained:
	case <-s.ctx.Done():
		return
	}
	// The drained Consumes have dropped their interest; a round trip makes
	// sure the server knows before Paused reports the pause, so what is
	// published after it stays with the server.
	if err := s.b.gen.Load().nc.FlushTimeout(s.probeTimeout()); err != nil {
		s.log.Debug("flush after pausing", zap.Error(err))
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.pauseErr = cause
	s.mu.Unlock()
	s.b.metrics.paused.WithLabelValues(s.spec.Durable).Set(1)
	s.log.Warn("dependency unavailable; consumer paused until it answers", zap.Error(cause),
		zap.Duration("probe_interval", s.spec.ProbeInterval))

	t := time.NewTicker(s.spec.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.probeTimeout())
		err := s.spec.Ready(ctx)
		cancel()
		if err == nil {
			err = s.resume(since)
			if err == nil {
				return
			}
		}
		s.mu.Lock()
		s.pauseErr = err
		s.mu.Unlock()
	}
}

// resume consumes again; it fails only when NATS does, and is then tried
// again at the next probe.
func (s *Subscription) resume(since time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil
	}
	s.halted.Store(false)
	if err := s.consumeLocked(nil); err != nil {
		s.halted.Store(true)
		return fmt.Errorf("consume again: %w", err)
	}
	s.pauseErr = nil
	s.b.metrics.paused.WithLabelValues(s.spec.Durable).Set(0)
	s.log.Info("dependency answers again; consumer resumed", zap.Duration("paused_for", time.Since(since)))
	return nil
}
