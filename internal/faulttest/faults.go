package faulttest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

// FaultKind is what goes wrong.
type FaultKind int

// Faults.
const (
	// KillNATSNode shuts a NATS node down (Fault.Node), waits
	// Config.NATSDown and starts it again on its store; back when the
	// cluster is healthy.
	KillNATSNode FaultKind = iota
	// KillFeedback kills the feedback process (SIGKILL) and restarts it.
	KillFeedback
	// KillNotifier kills the notifier process (SIGKILL) and restarts it.
	KillNotifier
	// RestartIngest stops ingest with SIGTERM and starts it again;
	// callbacks meanwhile find no listener and are retried.
	RestartIngest
)

// Fault is one fault of the scenario.
type Fault struct {
	Kind FaultKind
	// At is when it begins, as a fraction of the load's duration; a fault
	// never begins before the previous one is over.
	At float64
	// Node is the NATS node KillNATSNode shuts down: n1, n2 or n3, or
	// LeaderNode for the one leading KEFU_WECHAT at that moment, the
	// hardest case for ingest (default LeaderNode).
	Node string
}

// LeaderNode makes KillNATSNode pick the KEFU_WECHAT stream leader.
const LeaderNode = "leader"

func (f Fault) node() string {
	if f.Node == "" {
		return LeaderNode
	}
	return f.Node
}

// Describe names the fault for the report.
func (f Fault) Describe() string {
	switch f.Kind {
	case KillNATSNode:
		return "NATS node shut down, restarted"
	case KillFeedback:
		return "kill -9 feedback, restart"
	case KillNotifier:
		return "kill -9 notifier, restart"
	case RestartIngest:
		return "SIGTERM ingest, restart"
	}
	return fmt.Sprintf("fault %d", int(f.Kind))
}

// DefaultFaults is the soak's sequence, spread over the load.
func DefaultFaults() []Fault {
	return []Fault{
		{Kind: KillNATSNode, At: 0.1, Node: LeaderNode},
		{Kind: KillFeedback, At: 0.3},
		{Kind: KillNotifier, At: 0.5},
		{Kind: RestartIngest, At: 0.7},
	}
}

// injectFaults runs the faults in order, each at its time or right after
// the previous one, whichever is later.
func (r *run) injectFaults(ctx context.Context, hasNotifier bool) []FaultRecord {
	var out []FaultRecord
	for _, f := range r.cfg.Faults {
		at := time.Duration(f.At * float64(r.cfg.Duration))
		select {
		case <-ctx.Done():
			return out
		case <-time.After(time.Until(r.start.Add(at))):
		}
		if f.Kind == KillNotifier && !hasNotifier {
			continue
		}
		rec := FaultRecord{Fault: f, At: time.Since(r.start)}
		r.logf("fault: %s", f.Describe())
		began := time.Now()
		rec.Note, rec.Err = r.inject(ctx, f)
		rec.Took = time.Since(began)
		if rec.Err != nil {
			r.logf("fault %s (%s): %v", f.Describe(), rec.Note, rec.Err)
		} else {
			r.logf("fault over: %s %s(back after %s)", f.Describe(), noteOf(rec.Note), rec.Took.Round(100*time.Millisecond))
		}
		out = append(out, rec)
	}
	return out
}

func (r *run) inject(ctx context.Context, f Fault) (note string, err error) {
	restart := func(p *process) error {
		if err := p.start(); err != nil {
			return err
		}
		return p.waitReady(ctx, 60*time.Second)
	}
	switch f.Kind {
	case KillNATSNode:
		name := f.node()
		if name == LeaderNode {
			if name, err = r.obs.streamLeader(ctx, events.StreamWeChat); err != nil {
				return "", err
			}
			note = "node " + name + ", the KEFU_WECHAT leader"
		} else {
			note = "node " + name
		}
		n, err := r.cluster.node(name)
		if err != nil {
			return note, err
		}
		n.stop()
		select {
		case <-ctx.Done():
			return note, ctx.Err()
		case <-time.After(r.cfg.NATSDown):
		}
		if err := n.start(); err != nil {
			return note, err
		}
		return note, r.cluster.waitHealthy(90 * time.Second)
	case KillFeedback, KillNotifier:
		p := r.procs[map[FaultKind]string{KillFeedback: "feedback", KillNotifier: "notifier"}[f.Kind]]
		if err := p.kill(); err != nil {
			return "", err
		}
		return "", restart(p)
	case RestartIngest:
		p := r.procs["ingest"]
		if err := p.term(30 * time.Second); err != nil {
			return "", err
		}
		return "", restart(p)
	}
	return "", fmt.Errorf("unknown fault %d", int(f.Kind))
}

func noteOf(note string) string {
	if note == "" {
		return ""
	}
	return "[" + note + "] "
}

func (r *run) stopAll() {
	var wg sync.WaitGroup
	for _, p := range r.procs {
		wg.Add(1)
		go func(p *process) {
			defer wg.Done()
			p.term(20 * time.Second)
		}(p)
	}
	wg.Wait()
}
