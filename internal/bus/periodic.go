package bus

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Periodic runs a job every interval, and at once when kicked, until it
// is stopped: the loop of kefu's pollers (Tucao, the queue). It runs the
// job once at start, never runs two at a time, and cancels the job's
// context on Stop.
type Periodic struct {
	interval time.Duration
	job      func(ctx context.Context)

	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	started atomic.Bool
}

// NewPeriodic returns a stopped loop of job every interval.
func NewPeriodic(interval time.Duration, job func(ctx context.Context)) *Periodic {
	return &Periodic{interval: interval, job: job, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// Start runs the loop until Stop or until ctx ends.
func (p *Periodic) Start(ctx context.Context) {
	if !p.started.CompareAndSwap(false, true) {
		return
	}
	go p.run(ctx)
}

// Kick asks for a run now; kicks during a run coalesce into one.
func (p *Periodic) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Stop ends the loop and waits for the job in progress, or for ctx.
func (p *Periodic) Stop(ctx context.Context) error {
	p.once.Do(func() { close(p.stop) })
	if !p.started.Load() {
		return nil
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Periodic) run(ctx context.Context) {
	defer close(p.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.job(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		}
	}
}
