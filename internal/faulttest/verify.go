package faulttest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

// LogTails returns the end of every role's log, for a failed test.
func LogTails(dir string, n int) string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		p := &process{logPath: f}
		fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(f), p.logTail(n))
	}
	return b.String()
}

func countCallbacks(cbs []callback) CallbackCounts {
	var c CallbackCounts
	for _, cb := range cbs {
		c.Sent++
		c.Attempts += cb.attempts
		c.Status503 += cb.status503
		c.Transport += cb.transport
		c.Other += cb.statusElse
		if cb.success {
			c.Success++
		} else {
			c.Failed++
		}
	}
	c.Retries = c.Attempts - c.Sent
	return c
}

// verify compares what the system holds with what the generator was told.
// why is non-empty while the consumers still have work.
func (r *run) verify(ctx context.Context, obs *observer, consumers []consumerRef, cbs []callback, hasNotifier bool) (rep Report, why string, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if ok, why := obs.idle(ctx, consumers); !ok {
		return rep, why, nil
	}
	stream, err := obs.sessionEvents(ctx)
	if err != nil {
		return rep, "", err
	}
	stored, err := obs.storedSessions(ctx)
	if err != nil {
		return rep, "", err
	}
	var outcomes map[string][]events.Notification
	var sent map[string]map[string]int
	if hasNotifier {
		if outcomes, err = obs.outcomes(ctx); err != nil {
			return rep, "", err
		}
		sent = obs.sentMessages()
	}
	return tally(cbs, stream, stored, outcomes, sent, hasNotifier), "", nil
}

// tally is the pure comparison behind verify.
func tally(cbs []callback, stream map[string]*streamEvent, stored map[string][]storedSession,
	outcomes map[string][]events.Notification, sent map[string]map[string]int, hasNotifier bool) Report {
	var rep Report
	for _, e := range stream {
		rep.Stream.Events += e.count
		rep.Stream.DistinctIDs++
		if e.count > 1 {
			rep.Stream.DuplicatedIDs++
		}
	}
	createOK := map[string]bool{}
	for _, cb := range cbs {
		_, inStream := stream[cb.id]
		switch {
		case cb.success && !inStream:
			rep.Stream.MissingSuccess++
		case !cb.success && inStream:
			rep.Stream.Unconfirmed++
		}
		if cb.event == eventCreate && cb.success {
			createOK[cb.openid] = true
		}
	}

	for _, cb := range cbs {
		if cb.event != eventClose {
			continue
		}
		n := len(stored[cb.openid])
		tallyOne(&rep.StoredSessions, cb.success, n)
		if n > 0 && createOK[cb.openid] && stored[cb.openid][0].StartedAt.IsZero() {
			rep.StartUnknown++
		}
	}

	if hasNotifier {
		other := 0
		for _, kinds := range sent {
			other += kinds["other"]
		}
		if other > 0 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%d messages of an unknown kind sent to the run's customers", other))
		}
		for _, cb := range cbs {
			kind, t := events.NotifySessionCreated, &rep.Created
			if cb.event == eventClose {
				kind, t = events.NotifySessionClosed, &rep.Closed
			}
			n := sent[cb.openid][kind]
			if cb.success && n == 0 {
				lost, failed := false, false
				for _, o := range outcomes[cb.id] {
					if o.Outcome == events.OutcomeFailed {
						failed = true
						lost = lost || strings.HasPrefix(o.ErrMsg, "unknown outcome")
					}
				}
				switch {
				case lost:
					t.LostInCrashWindow++
					t.Expected++
					continue
				case failed:
					t.FailedOther++
				}
			}
			tallyOne(&t.Tally, cb.success, n)
		}
	}
	return rep
}

// tallyOne counts one expected-or-not item found n times.
func tallyOne(t *Tally, expected bool, n int) {
	if expected {
		t.Expected++
		if n == 0 {
			t.Missing++
		}
	} else if n > 0 {
		t.Unconfirmed++
	}
	if n > 0 {
		t.Actual++
	}
	if n > 1 {
		t.Duplicated++
	}
}
