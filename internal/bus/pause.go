package bus

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// probeTimeout bounds one Ready call.
func (s *Subscription) probeTimeout() time.Duration {
	return max(s.spec.ProbeInterval, 5*time.Second)
}

// pause drops the interest in the deliver subject, so the server stops
// pushing messages to this process, and probes Ready until it answers.
func (s *Subscription) pause(cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pauseErr = cause
	if s.paused.Load() || s.closing {
		return
	}
	s.paused.Store(true)
	for _, sub := range s.subs {
		// Drain, not Unsubscribe: the messages nats.go already holds are
		// handed back by deliver rather than left to their AckWait.
		sub.Drain() //nolint:errcheck // a closed subscription has no interest left to drop
	}
	s.subs = nil
	// Once the server has processed the unsubscribes it pushes nothing
	// more here: a round trip before Paused reports the pause (it waits
	// for s.mu), so what is published after it stays with the server.
	if err := s.conn.FlushTimeout(s.probeTimeout()); err != nil {
		s.log.Debug("flush after pausing", zap.Error(err))
	}
	s.b.metrics.paused.WithLabelValues(s.spec.Durable).Set(1)
	s.log.Warn("dependency unavailable; consumer paused until it answers", zap.Error(cause),
		zap.Duration("probe_interval", s.spec.ProbeInterval))
	s.wg.Add(1)
	go s.probe(time.Now())
}

// probe asks Ready every ProbeInterval and resumes once it answers.
func (s *Subscription) probe(since time.Time) {
	defer s.wg.Done()
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

// resume subscribes again; it fails only when NATS does, and is then
// tried again at the next probe.
func (s *Subscription) resume(since time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil
	}
	if err := s.subscribeLocked(); err != nil {
		return fmt.Errorf("resubscribe: %w", err)
	}
	s.paused.Store(false)
	s.pauseErr = nil
	s.b.metrics.paused.WithLabelValues(s.spec.Durable).Set(0)
	s.log.Info("dependency answers again; consumer resumed", zap.Duration("paused_for", time.Since(since)))
	return nil
}
