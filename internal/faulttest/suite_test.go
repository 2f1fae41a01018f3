package faulttest

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The per-callback count behind the outage rows must see every loss and
// duplicate, or those rows could not fail.
func TestSessionRowCountsEveryLossAndDuplicate(t *testing.T) {
	started := time.Unix(1_700_000_000, 0)
	pair := func(openid string, createOK, closeOK bool) []callback {
		return []callback{
			{openid: openid, event: eventCreate, id: "c-" + openid, success: createOK},
			{openid: openid, event: eventClose, id: "x-" + openid, success: closeOK},
		}
	}
	stream := func(ids ...string) map[string]*streamEvent {
		m := map[string]*streamEvent{}
		for _, id := range ids {
			if m[id] == nil {
				m[id] = &streamEvent{}
			}
			m[id].count++
		}
		return m
	}
	one := func(start time.Time) []storedSession {
		return []storedSession{{StartedAt: start, ClosedAt: started.Add(time.Minute)}}
	}
	tests := []struct {
		name                        string
		cbs                         []callback
		stream                      map[string]*streamEvent
		stored                      map[string][]storedSession
		sent, arrived, lost, double int
	}{
		{"a pair stored once", pair("o1", true, true), stream("c-o1", "x-o1"), map[string][]storedSession{"o1": one(started)}, 2, 2, 0, 0},
		{"an event missing from the stream", pair("o1", true, true), stream("x-o1"), map[string][]storedSession{"o1": one(started)}, 2, 1, 1, 0},
		{"a close without its stored session", pair("o1", true, true), stream("c-o1", "x-o1"), nil, 2, 0, 2, 0},
		{"a stored session without its confirmed start", pair("o1", true, true), stream("c-o1", "x-o1"), map[string][]storedSession{"o1": one(time.Time{})}, 2, 1, 1, 0},
		{"an event stored twice", pair("o1", true, true), stream("c-o1", "c-o1", "x-o1"), map[string][]storedSession{"o1": one(started)}, 2, 2, 0, 1},
		{"a session stored twice", pair("o1", true, true), stream("c-o1", "x-o1"), map[string][]storedSession{"o1": append(one(started), one(started)...)}, 2, 2, 0, 2},
		{"a callback never answered success is not counted", pair("o1", false, true), stream("x-o1"), map[string][]storedSession{"o1": one(time.Time{})}, 1, 1, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sessionRow(tt.cbs, tt.stream, tt.stored)
			if r.Sent != tt.sent || r.Stored != tt.arrived || r.Lost != tt.lost || r.Doubled != tt.double {
				t.Errorf("row %+v, want sent %d stored %d lost %d doubled %d", r, tt.sent, tt.arrived, tt.lost, tt.double)
			}
		})
	}
}

// A write whose fence is below one already written to the same key is a
// stale holder's write that landed.
func TestFenceOrderFindsAStaleWrite(t *testing.T) {
	recs := []fencedRecord{
		{key: "estimator.wx", fence: 5}, {key: "queue.wx", fence: 5},
		{key: "estimator.wx", fence: 9}, {key: "queue.wx", fence: 5},
		{key: "estimator.wx", fence: 5}, // A, resumed, wrote after B
		{key: "queue.wx", fence: 9}, {key: "estimator.wx", fence: 9},
	}
	inOrder, stale, fences := fenceOrder(recs)
	if inOrder != 6 || stale != 1 || fences != 2 {
		t.Fatalf("in order %d, stale %d, fences %d; want 6, 1, 2", inOrder, stale, fences)
	}
	if _, stale, _ := fenceOrder(append(recs[:4:4], recs[5:]...)); stale != 0 {
		t.Fatalf("%d stale writes in a history without one", stale)
	}
}

// The table shows every row, and the suite fails on any loss, duplicate or
// error, but not on a scenario skipped for lack of PostgreSQL.
func TestSuiteTableShowsEveryRowAndFailsOnAnyLoss(t *testing.T) {
	ok := Row{Scenario: ScenarioBackfill, Sent: 40, Stored: 40, Detail: "day 20260101"}
	skipped := Row{Scenario: ScenarioStoreOutage, Skipped: "no PostgreSQL DSN"}
	for _, tt := range []struct {
		name string
		bad  Row
		want string
	}{
		{"lost", Row{Scenario: ScenarioNATSStopped, Sent: 10, Stored: 9, Lost: 1}, "FAILED"},
		{"doubled", Row{Scenario: ScenarioToken, Sent: 10, Stored: 10, Doubled: 1}, "FAILED"},
		{"error", Row{Scenario: ScenarioPausedLeader, Err: errors.New("estimator B never took over")}, "ERROR"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			good := SuiteReport{Rows: []Row{ok, skipped}}
			if !good.OK() {
				t.Fatal("a suite of an ok and a skipped row is not OK")
			}
			bad := SuiteReport{Rows: []Row{ok, skipped, tt.bad}}
			if bad.OK() {
				t.Fatalf("a suite with %+v is OK", tt.bad)
			}
			var b strings.Builder
			bad.WriteTable(&b)
			out := b.String()
			for _, want := range []string{"scenario", "sent", "stored", "lost", "doubled", ScenarioBackfill, "skipped", "no PostgreSQL DSN", tt.bad.Scenario, tt.want, "suite: FAILED"} {
				if !strings.Contains(out, want) {
					t.Errorf("table lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// A fault run's report becomes a row that fails on its losses.
func TestFaultsRowCarriesTheReportsLosses(t *testing.T) {
	r := Report{Callbacks: CallbackCounts{Success: 100}, StoredSessions: Tally{Expected: 50, Actual: 50}}
	if row := faultsRow(r); !row.OK() || row.Sent != 100 || row.Stored != 100 {
		t.Fatalf("clean report: %+v", row)
	}
	r.Stream.MissingSuccess, r.Closed.Duplicated = 1, 2
	if row := faultsRow(r); row.OK() || row.Lost != 1 || row.Doubled != 2 {
		t.Fatalf("report with a loss and duplicates: %+v", row)
	}
	r = Report{Callbacks: CallbackCounts{Success: 100}, Problems: []string{"not caught up"}}
	if row := faultsRow(r); row.OK() {
		t.Fatalf("report with a problem: %+v", row)
	}
}
