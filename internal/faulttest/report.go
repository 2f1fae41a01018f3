package faulttest

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of one run.
type Report struct {
	Rate     float64       // callbacks per second offered
	Duration time.Duration // of the load
	Store    string        // "sqlite" or "postgres"
	Notifier bool          // the notifier role ran and was checked

	Faults []FaultRecord

	Sessions  int // session pairs started
	Callbacks CallbackCounts

	// Stream counts the run's session events in KEFU_WECHAT.
	Stream StreamCounts

	// StoredSessions: expected = closes answered success; a session is
	// missing when the store has none for the customer, duplicated when it
	// has more than one.
	StoredSessions Tally
	// StartUnknown counts stored sessions whose create was answered
	// success but whose start the store does not know: a lost created fact.
	StartUnknown int

	// Created and Closed are the notifier's messages (custom/send accepted
	// by the fake) for session_created and session_closed; expected = the
	// events answered success. Zero when Notifier is false.
	Created, Closed NotifyTally

	// CatchUp is how long the consumers took to drain after the load.
	CatchUp time.Duration
	// Problems lists what the verification could not do.
	Problems []string
}

// FaultRecord is one fault as it happened.
type FaultRecord struct {
	Fault Fault
	// At is when it began, from the start of the load; Took until the
	// component was back and ready.
	At, Took time.Duration
	// Note says which NATS node went down.
	Note string
	Err  error
}

// CallbackCounts is what the WeChat side saw.
type CallbackCounts struct {
	Sent      int // distinct callbacks (a retry is the same callback)
	Attempts  int // HTTP requests, retries included
	Retries   int // Attempts − Sent
	Success   int // callbacks answered "success" (at some attempt)
	Failed    int // callbacks never answered "success" after 1 + 3 tries
	Status503 int // answers 503 (ingest could not store the event)
	Transport int // connection refused, reset or timed out (ingest restarting)
	Other     int // any other answer
}

// StreamCounts is what KEFU_WECHAT holds of the run.
type StreamCounts struct {
	Events      int // messages
	DistinctIDs int // distinct Nats-Msg-Id
	// DuplicatedIDs are ids stored more than once: JetStream's
	// de-duplication failed.
	DuplicatedIDs int
	// MissingSuccess are callbacks answered "success" whose event is not
	// in the stream: an acknowledged callback was lost.
	MissingSuccess int
	// Unconfirmed are events of callbacks never answered "success" that
	// were stored anyway (the answer was lost, not the event).
	Unconfirmed int
}

// Tally compares what was expected with what is there.
type Tally struct {
	Expected   int
	Actual     int // customers of the run with at least one
	Missing    int // expected, none there
	Duplicated int // more than one there
	// Unconfirmed are there although their callback was never answered
	// "success": at least once, not a duplicate.
	Unconfirmed int
}

// NotifyTally is a Tally of notifications, with the misses explained.
type NotifyTally struct {
	Tally
	// LostInCrashWindow are misses the notifier recorded as failed with an
	// unknown outcome: the process died during the send and, being at
	// most once by design, did not send again. Not counted in Missing.
	LostInCrashWindow int
	// FailedOther are misses with another failure outcome (a WeChat
	// errcode); they count in Missing.
	FailedOther int
}

// OK reports whether nothing acknowledged was lost and nothing doubled.
func (r Report) OK() bool {
	return len(r.Problems) == 0 && r.Stream.DuplicatedIDs == 0 && r.Stream.MissingSuccess == 0 &&
		r.StoredSessions.Missing == 0 && r.StoredSessions.Duplicated == 0 && r.StartUnknown == 0 &&
		r.Created.Missing == 0 && r.Created.Duplicated == 0 &&
		r.Closed.Missing == 0 && r.Closed.Duplicated == 0
}

// WriteTable prints the report as aligned text.
func (r Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "load: %.0f callbacks/s for %s, feedback store %s, notifier %s\n\n",
		r.Rate, r.Duration, r.Store, map[bool]string{true: "checked", false: "not in this build"}[r.Notifier])

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "fault\t\tat\tback after\tresult\t")
	for _, f := range r.Faults {
		res := "ok"
		if f.Err != nil {
			res = "ERROR: " + f.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", f.Fault.Describe(), f.Note, f.At.Round(100*time.Millisecond), f.Took.Round(100*time.Millisecond), res)
	}
	tw.Flush()
	fmt.Fprintln(w)

	c := r.Callbacks
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(name string, v int) { fmt.Fprintf(tw, "%s\t%d\t\n", name, v) }
	row("session pairs started", r.Sessions)
	row("callbacks sent", c.Sent)
	row("HTTP attempts", c.Attempts)
	row("retries", c.Retries)
	row("answered success", c.Success)
	row("never answered success", c.Failed)
	row("answers 503", c.Status503)
	row("connection errors/timeouts", c.Transport)
	row("other answers", c.Other)
	row("events in stream", r.Stream.Events)
	row("distinct event ids in stream", r.Stream.DistinctIDs)
	row("ids stored twice", r.Stream.DuplicatedIDs)
	row("success but not in stream", r.Stream.MissingSuccess)
	row("stored though never answered success", r.Stream.Unconfirmed)
	tw.Flush()
	fmt.Fprintln(w)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\texpected\tactual\tmissing\tduplicated\tunconfirmed\tlost in crash window\t")
	tally := func(name string, t Tally, lost string) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t\n", name, t.Expected, t.Actual, t.Missing, t.Duplicated, t.Unconfirmed, lost)
	}
	tally("sessions in store", r.StoredSessions, "-")
	if r.Notifier {
		tally("notifications session_created", r.Created.Tally, fmt.Sprint(r.Created.LostInCrashWindow))
		tally("notifications session_closed", r.Closed.Tally, fmt.Sprint(r.Closed.LostInCrashWindow))
	}
	tw.Flush()
	if r.StartUnknown > 0 {
		fmt.Fprintf(w, "stored sessions whose confirmed start is unknown: %d\n", r.StartUnknown)
	}
	if n := r.Created.FailedOther + r.Closed.FailedOther; n > 0 {
		fmt.Fprintf(w, "notifications failed with a WeChat error: %d\n", n)
	}
	fmt.Fprintf(w, "\nconsumers caught up %s after the load\n", r.CatchUp.Round(100*time.Millisecond))
	for _, p := range r.Problems {
		fmt.Fprintln(w, "PROBLEM:", p)
	}
	if r.OK() {
		fmt.Fprintln(w, "result: every callback answered success is stored exactly once; none lost, none doubled")
	} else {
		fmt.Fprintln(w, "result: FAILED — "+strings.Join(r.failures(), "; "))
	}
}

func (r Report) failures() []string {
	var out []string
	add := func(cond bool, format string, args ...any) {
		if cond {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	add(r.Stream.MissingSuccess > 0, "%d acknowledged callbacks not in the stream", r.Stream.MissingSuccess)
	add(r.Stream.DuplicatedIDs > 0, "%d event ids stored twice", r.Stream.DuplicatedIDs)
	add(r.StoredSessions.Missing > 0, "%d sessions missing from the store", r.StoredSessions.Missing)
	add(r.StoredSessions.Duplicated > 0, "%d sessions stored twice", r.StoredSessions.Duplicated)
	add(r.StartUnknown > 0, "%d stored sessions lost their confirmed start", r.StartUnknown)
	add(r.Created.Missing > 0, "%d session_created notifications missing", r.Created.Missing)
	add(r.Created.Duplicated > 0, "%d session_created notifications sent twice", r.Created.Duplicated)
	add(r.Closed.Missing > 0, "%d session_closed notifications missing", r.Closed.Missing)
	add(r.Closed.Duplicated > 0, "%d session_closed notifications sent twice", r.Closed.Duplicated)
	add(len(r.Problems) > 0, "%d problems", len(r.Problems))
	return out
}
