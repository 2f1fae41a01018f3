package faulttest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

// testLog turns the scenario's progress lines into t.Log lines.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Every "nothing lost" scenario in one run, as an operator would meet
// them, with kefu's roles as OS processes: NATS node, feedback, notifier
// and ingest killed under callback load; PostgreSQL cut off behind a
// proxy; Tucao posts piling up while ingest is stopped; a one-day
// backfill; every "certainly not sent" failure of a send; the access token
// revoked by another system; the estimator's lease holder paused past its
// lease; NATS stopped under callbacks to an ingest with store and forward.
// Nothing answered success (or held by Tucao) is lost or doubled.
func TestEveryScenarioLosesNothingAndDoublesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: this test runs a NATS cluster and kefu processes through eight fault scenarios, about three minutes")
	}
	if runtime.GOOS == "windows" {
		t.Skip("the scenarios stop kefu with SIGTERM and SIGSTOP, which Windows cannot send")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go tool is not on PATH, so cmd/kefu cannot be built:", err)
	}
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Skip("cannot listen on loopback, where the cluster and the roles run:", err)
	} else {
		l.Close()
	}

	dir := t.TempDir()
	cfg := ShortSuite(dir)
	cfg.Faults.FeedbackDSN = os.Getenv("KEFU_TEST_PG_DSN")
	cfg.PostgresDSN = os.Getenv("KEFU_TEST_PG_DSN")
	cfg.Log = testLog{t}
	suite, err := RunSuite(t.Context(), cfg)
	if err != nil {
		t.Fatalf("suite: %v\n%s", err, allLogTails(dir))
	}
	var table strings.Builder
	suite.WriteTable(&table)
	t.Log("\n" + table.String())

	if len(suite.Rows) != len(AllScenarios()) {
		t.Errorf("%d rows for %d scenarios", len(suite.Rows), len(AllScenarios()))
	}
	for _, r := range suite.Rows {
		switch {
		case r.Skipped != "":
			// Only what the machine may lack: PostgreSQL, the leaf port.
			if r.Scenario != ScenarioStoreOutage && r.Scenario != ScenarioNATSStopped {
				t.Errorf("%s skipped: %s", r.Scenario, r.Skipped)
			}
			t.Logf("%s skipped: %s", r.Scenario, r.Skipped)
		case !r.OK():
			t.Errorf("%s: sent %d, stored %d, lost %d, doubled %d, error %v (%s)", r.Scenario, r.Sent, r.Stored, r.Lost, r.Doubled, r.Err, r.Detail)
		case r.Sent == 0 || r.Stored != r.Sent:
			t.Errorf("%s: sent %d, stored %d: nothing went through, or the counts do not add up", r.Scenario, r.Sent, r.Stored)
		}
	}
	if suite.Faults == nil {
		t.Fatal("the faults scenario left no report")
	}
	rep := *suite.Faults
	wantFaults := len(cfg.Faults.Faults)
	if !rep.Notifier {
		wantFaults-- // no notifier to kill
		t.Log("this kefu has no notifier role: notifications are not checked")
	}
	faultErrs := 0
	for _, f := range rep.Faults {
		if f.Err != nil {
			faultErrs++
		}
	}
	for _, c := range []struct {
		rule string
		ok   bool
		got  any
	}{
		{"every fault was injected and its component came back", len(rep.Faults) == wantFaults && faultErrs == 0, rep.Faults},
		{"callbacks were answered success under the load", rep.Callbacks.Success > 0, rep.Callbacks},
		{"an event answered success is in the stream", rep.Stream.MissingSuccess == 0, rep.Stream},
		{"the stream holds each event id once", rep.Stream.DuplicatedIDs == 0, rep.Stream},
		{"a close answered success is a stored closed session", rep.StoredSessions.Missing == 0, rep.StoredSessions},
		{"a customer's session is stored once", rep.StoredSessions.Duplicated == 0, rep.StoredSessions},
		{"a create answered success is the stored session's start", rep.StartUnknown == 0, rep.StartUnknown},
		{"a session_created notification is sent or recorded as lost in the crash window", rep.Created.Missing == 0, rep.Created},
		{"a session_created notification is sent at most once", rep.Created.Duplicated == 0, rep.Created},
		{"a session_closed notification is sent or recorded as lost in the crash window", rep.Closed.Missing == 0, rep.Closed},
		{"a session_closed notification is sent at most once", rep.Closed.Duplicated == 0, rep.Closed},
		{"the consumers caught up and the verification ran", len(rep.Problems) == 0, rep.Problems},
	} {
		if !c.ok {
			t.Errorf("%s: violated: %+v", c.rule, c.got)
		}
	}
	if t.Failed() {
		t.Log(allLogTails(dir))
	}
}

// allLogTails is the end of every process log of every scenario.
func allLogTails(dir string) string {
	var b strings.Builder
	for _, name := range AllScenarios() {
		b.WriteString(LogTails(filepath.Join(dir, name), 2000))
	}
	return b.String()
}

// The comparison behind the report must see every kind of loss and
// duplicate, or the scenario above could not fail.
func TestTallyFindsLossesAndDuplicates(t *testing.T) {
	create := func(openid string, ok bool) callback {
		return callback{openid: openid, event: eventCreate, id: "c-" + openid, success: ok}
	}
	closing := func(openid string, ok bool) callback {
		return callback{openid: openid, event: eventClose, id: "x-" + openid, success: ok}
	}
	inStream := func(ids ...string) map[string]*streamEvent {
		m := map[string]*streamEvent{}
		for _, id := range ids {
			if m[id] == nil {
				m[id] = &streamEvent{}
			}
			m[id].count++
		}
		return m
	}
	started := time.Unix(1_700_000_000, 0)
	session := func(start time.Time) storedSession {
		return storedSession{StartedAt: start, ClosedAt: started.Add(time.Minute)}
	}
	sentBoth := map[string]map[string]int{"o1": {events.NotifySessionCreated: 1, events.NotifySessionClosed: 1}}

	tests := []struct {
		name     string
		cbs      []callback
		stream   map[string]*streamEvent
		stored   map[string][]storedSession
		outcomes map[string][]events.Notification
		sent     map[string]map[string]int
		check    func(Report) bool
	}{
		{
			name:   "a pair stored once everywhere is OK",
			cbs:    []callback{create("o1", true), closing("o1", true)},
			stream: inStream("c-o1", "x-o1"), stored: map[string][]storedSession{"o1": {session(started)}}, sent: sentBoth,
			check: func(r Report) bool { return r.OK() && r.StoredSessions.Expected == 1 && r.Created.Actual == 1 },
		},
		{
			name:   "an acknowledged callback missing from the stream is a loss",
			cbs:    []callback{create("o1", true), closing("o1", true)},
			stream: inStream("x-o1"), stored: map[string][]storedSession{"o1": {session(started)}}, sent: sentBoth,
			check: func(r Report) bool { return !r.OK() && r.Stream.MissingSuccess == 1 },
		},
		{
			name:   "an event id stored twice is a duplicate",
			cbs:    []callback{create("o1", true), closing("o1", true)},
			stream: inStream("c-o1", "c-o1", "x-o1"), stored: map[string][]storedSession{"o1": {session(started)}}, sent: sentBoth,
			check: func(r Report) bool { return !r.OK() && r.Stream.DuplicatedIDs == 1 && r.Stream.Events == 3 },
		},
		{
			name:   "an unacknowledged callback that was stored anyway is neither lost nor doubled",
			cbs:    []callback{create("o1", false), closing("o1", true)},
			stream: inStream("c-o1", "x-o1"), stored: map[string][]storedSession{"o1": {session(time.Time{})}}, sent: sentBoth,
			check: func(r Report) bool { return r.OK() && r.Stream.Unconfirmed == 1 && r.Created.Unconfirmed == 1 },
		},
		{
			name:   "an acknowledged close without a stored session is a loss",
			cbs:    []callback{create("o1", true), closing("o1", true)},
			stream: inStream("c-o1", "x-o1"), stored: map[string][]storedSession{}, sent: sentBoth,
			check: func(r Report) bool { return !r.OK() && r.StoredSessions.Missing == 1 },
		},
		{
			name:   "a customer with two stored sessions is a duplicate",
			cbs:    []callback{create("o1", true), closing("o1", true)},
			stream: inStream("c-o1", "x-o1"), stored: map[string][]storedSession{"o1": {session(started), session(started)}}, sent: sentBoth,
			check: func(r Report) bool { return !r.OK() && r.StoredSessions.Duplicated == 1 },
		},
		{
			name:   "a stored session that lost its acknowledged start is a loss",
			cbs:    []callback{create("o1", true), closing("o1", true)},
			stream: inStream("c-o1", "x-o1"), stored: map[string][]storedSession{"o1": {session(time.Time{})}}, sent: sentBoth,
			check: func(r Report) bool { return !r.OK() && r.StartUnknown == 1 },
		},
		{
			name:   "a notification sent twice is a duplicate",
			cbs:    []callback{create("o1", true), closing("o1", true)},
			stream: inStream("c-o1", "x-o1"), stored: map[string][]storedSession{"o1": {session(started)}},
			sent:  map[string]map[string]int{"o1": {events.NotifySessionCreated: 2, events.NotifySessionClosed: 1}},
			check: func(r Report) bool { return !r.OK() && r.Created.Duplicated == 1 },
		},
		{
			name:   "a notification neither sent nor recorded is a loss",
			cbs:    []callback{create("o1", true), closing("o1", true)},
			stream: inStream("c-o1", "x-o1"), stored: map[string][]storedSession{"o1": {session(started)}},
			sent:  map[string]map[string]int{"o1": {events.NotifySessionCreated: 1}},
			check: func(r Report) bool { return !r.OK() && r.Closed.Missing == 1 },
		},
		{
			name:   "a notification refused by WeChat is a loss",
			cbs:    []callback{create("o1", true), closing("o1", true)},
			stream: inStream("c-o1", "x-o1"), stored: map[string][]storedSession{"o1": {session(started)}},
			outcomes: map[string][]events.Notification{"x-o1": {{Outcome: events.OutcomeFailed, ErrCode: 45015, ErrMsg: "out of the reply window"}}},
			sent:     map[string]map[string]int{"o1": {events.NotifySessionCreated: 1}},
			check:    func(r Report) bool { return !r.OK() && r.Closed.Missing == 1 && r.Closed.FailedOther == 1 },
		},
		{
			name:   "a notification recorded as lost in the crash window is counted apart, not as a loss",
			cbs:    []callback{create("o1", true), closing("o1", true)},
			stream: inStream("c-o1", "x-o1"), stored: map[string][]storedSession{"o1": {session(started)}},
			outcomes: map[string][]events.Notification{"c-o1": {{Outcome: events.OutcomeFailed, ErrMsg: "unknown outcome (crash during send)"}}},
			sent:     map[string]map[string]int{"o1": {events.NotifySessionClosed: 1}},
			check:    func(r Report) bool { return r.OK() && r.Created.LostInCrashWindow == 1 && r.Created.Missing == 0 },
		},
		{
			name:   "a message of an unknown kind is a problem",
			cbs:    []callback{create("o1", true), closing("o1", true)},
			stream: inStream("c-o1", "x-o1"), stored: map[string][]storedSession{"o1": {session(started)}},
			sent:  map[string]map[string]int{"o1": {events.NotifySessionCreated: 1, events.NotifySessionClosed: 1, "other": 1}},
			check: func(r Report) bool { return !r.OK() && len(r.Problems) == 1 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tally(tt.cbs, tt.stream, tt.stored, tt.outcomes, tt.sent, true)
			if !tt.check(r) {
				t.Errorf("report %+v", r)
			}
		})
	}
}
