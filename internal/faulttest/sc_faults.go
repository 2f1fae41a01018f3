package faulttest

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// faults is Run on the suite's binary — and its cluster when shared, or
// a cluster of its own — summed up in one row.
func (sc *scenario) faults(ctx context.Context, rep *SuiteReport, shared bool) Row {
	cfg := sc.cfg.Faults
	cfg.Dir, cfg.Binary = sc.dir, sc.bin
	if shared {
		cfg.cluster = sc.cluster
	}
	cfg.Log = logWriter{sc}
	r, err := Run(ctx, cfg)
	if err != nil {
		return Row{Err: err}
	}
	rep.Faults = &r
	return faultsRow(r)
}

// faultsRow sums up a Report: every callback answered success is one sent
// item, and what it must become — an event in the stream, for a close a
// stored session, for a create that session's start, with a notifier its
// notification — is stored, lost or doubled.
func faultsRow(r Report) Row {
	row := Row{Sent: r.Callbacks.Success}
	row.Lost = r.Stream.MissingSuccess + r.StoredSessions.Missing + r.StartUnknown +
		r.Created.Missing + r.Closed.Missing
	row.Doubled = r.Stream.DuplicatedIDs + r.StoredSessions.Duplicated + r.Created.Duplicated + r.Closed.Duplicated
	// Lost counts missing items, one callback possibly several (its event
	// and its session); Stored is what is left of Sent.
	row.Stored = max(0, row.Sent-row.Lost)
	var d []string
	for _, f := range r.Faults {
		if f.Err != nil {
			row.Err = fmt.Errorf("fault %s: %w", f.Fault.Describe(), f.Err)
		}
	}
	d = append(d, fmt.Sprintf("%d faults", len(r.Faults)),
		fmt.Sprintf("sessions %d/%d", r.StoredSessions.Actual, r.StoredSessions.Expected))
	if r.Notifier {
		d = append(d, fmt.Sprintf("notifications %d/%d, %d lost in crash window",
			r.Created.Actual+r.Closed.Actual, r.Created.Expected+r.Closed.Expected,
			r.Created.LostInCrashWindow+r.Closed.LostInCrashWindow))
	}
	d = append(d, fmt.Sprintf("%d retries", r.Callbacks.Retries))
	if len(r.Problems) > 0 && row.Err == nil {
		// A check that could not run proves nothing.
		row.Err = errors.New(strings.Join(r.Problems, "; "))
	}
	row.Detail = strings.Join(d, ", ")
	return row
}

// logWriter turns Run's progress lines into the suite's.
type logWriter struct{ s *scenario }

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.s.logf("%s", line)
	}
	return len(p), nil
}
