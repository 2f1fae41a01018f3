package waitmodel

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// lunchTeam feeds days of snapshots, one a minute, of four idle one-chat
// agents a..d (no session ever ends, so the learned pace stays the 5-minute
// prior); c and d are offline 12:00–13:00 every day when
// lunch is true, online all day otherwise. It returns the first instant of
// the next day.
func lunchTeam(e *Estimator, days int, lunch bool) time.Time {
	start := time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)
	for m := 0; m < days*24*60; m++ {
		at := start.Add(time.Duration(m) * time.Minute)
		e.Observe(Snapshot{At: at, Agents: teamAt(at, lunch, false)})
	}
	return start.Add(time.Duration(days) * 24 * time.Hour)
}

// teamAt is the team at a time: busy (every slot serving a chat that
// started a minute ago) or idle.
func teamAt(at time.Time, lunch, busy bool) []Agent {
	var out []Agent
	for _, kf := range []string{"a@x", "b@x", "c@x", "d@x"} {
		if lunch && at.Hour() == 12 && (kf == "c@x" || kf == "d@x") {
			continue
		}
		a := Agent{Account: kf, Status: 1, AutoAccept: 1}
		if busy {
			a = busyAgent(kf, 1, at, time.Minute)
		}
		out = append(out, a)
	}
	return out
}

func queueAt(at time.Time, n int) []WaitingCase {
	out := make([]WaitingCase, n)
	for i := range out {
		out[i] = WaitingCase{OpenID: fmt.Sprintf("w%02d", i), Since: at.Add(-time.Duration(n-i) * time.Second)}
	}
	return out
}

// estimateAfter returns the wait estimated for the customer at place pos
// of a queue of 20, at the given time of day after three days of the team
// (with or without lunch), by an estimator with profiles on or off.
func estimateAfter(t *testing.T, profiles, lunch bool, tod time.Duration, pos int) time.Duration {
	t.Helper()
	cfg := Config{}
	if !profiles {
		cfg.ScheduleMinDays = -1
	}
	e := mustNew(t, cfg)
	at := lunchTeam(e, 3, lunch).Add(tod)
	r := e.Observe(Snapshot{At: at, Count: 20, Waiting: queueAt(at, 20), Agents: teamAt(at, lunch, true)})
	return r.Estimates[pos-1].Wait
}

// TestScheduleForeseesLunch: after a few days of a team whose two members
// take lunch at 12:00, a customer deep in the queue at 11:50 waits longer
// than four agents' pace suggests, and one waiting at 12:40 less than two
// agents' pace suggests; the same days without lunch change nothing.
func TestScheduleForeseesLunch(t *testing.T) {
	before := 11*time.Hour + 50*time.Minute
	// Sessions last 5 min (the prior): four slots free 0.8 a minute, so
	// the 20th customer waits 25 min without lunch. With two agents gone
	// from 12:00: 8 departures by 12:00, 12 more at 0.4 a minute: 40 min.
	got, base := estimateAfter(t, true, true, before, 20), estimateAfter(t, false, true, before, 20)
	if math.Abs(base.Minutes()-25) > 1 {
		t.Fatalf("estimate without profiles at 11:50 = %v, want ≈ 25m (QL with 4 slots)", base)
	}
	if math.Abs(got.Minutes()-40) > 2 {
		t.Errorf("estimate before lunch = %v, want ≈ 40m (two agents leave at 12:00)", got)
	}
	// Early places, served before 12:00, are not affected.
	if g, b := estimateAfter(t, true, true, before, 2), estimateAfter(t, false, true, before, 2); math.Abs(g.Seconds()-b.Seconds()) > 1 {
		t.Errorf("2nd place before lunch: %v with profiles, %v without; want equal", g, b)
	}

	// At 12:40 two slots free 0.4 a minute: 50 min without profiles. With
	// them: 8 departures by 13:00, two agents back with free slots (10),
	// then 10 more at 0.8 a minute: 32.5 min.
	during := 12*time.Hour + 40*time.Minute
	got, base = estimateAfter(t, true, true, during, 20), estimateAfter(t, false, true, during, 20)
	if math.Abs(base.Minutes()-50) > 1 {
		t.Fatalf("estimate without profiles at 12:40 = %v, want ≈ 50m (QL with 2 slots)", base)
	}
	if math.Abs(got.Minutes()-32.5) > 2 {
		t.Errorf("estimate during lunch = %v, want ≈ 32.5m (two agents are back at 13:00)", got)
	}

	if g, b := estimateAfter(t, true, false, before, 20), estimateAfter(t, false, false, before, 20); g != b {
		t.Errorf("a team without lunch: %v with profiles, %v without; want equal", g, b)
	}
}

// TestScheduleNeedsPastDays: one day of history is not a pattern.
func TestScheduleNeedsPastDays(t *testing.T) {
	e := mustNew(t, Config{})
	blind := mustNew(t, Config{ScheduleMinDays: -1})
	at := lunchTeam(e, 1, true).Add(11*time.Hour + 50*time.Minute) // the 12:00 slot has one day
	lunchTeam(blind, 1, true)
	snap := Snapshot{At: at, Count: 20, Waiting: queueAt(at, 20), Agents: teamAt(at, true, true)}
	if g, b := e.Observe(snap).Estimates[19].Wait, blind.Observe(snap).Estimates[19].Wait; g != b {
		t.Errorf("after one day: %v with profiles, %v without; want equal", g, b)
	}
}

// TestSchedulePersists: the profiles survive MarshalState/UnmarshalState.
func TestSchedulePersists(t *testing.T) {
	e := mustNew(t, Config{})
	day := lunchTeam(e, 3, true)
	b, err := e.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 8<<10 {
		t.Errorf("state of 4 agents is %d bytes; profiles should be compact", len(b))
	}
	restored := mustNew(t, Config{})
	if err := restored.UnmarshalState(b); err != nil {
		t.Fatal(err)
	}
	at := day.Add(11*time.Hour + 50*time.Minute)
	snap := Snapshot{At: at, Count: 20, Waiting: queueAt(at, 20), Agents: teamAt(at, true, true)}
	want := e.Observe(snap).Estimates[19].Wait
	got := restored.Observe(snap).Estimates[19].Wait
	if math.Abs(got.Seconds()-want.Seconds()) > 5 {
		t.Errorf("restored estimate %v, original %v", got, want)
	}
	blind := mustNew(t, Config{ScheduleMinDays: -1})
	if err := blind.UnmarshalState(b); err != nil {
		t.Fatal(err)
	}
	if w := blind.Observe(snap).Estimates[19].Wait; w >= got-5*time.Minute {
		t.Errorf("restored estimate %v is not above the one without profiles %v", got, w)
	}
}

// TestScheduleForgetsAgents: an agent not seen for ScheduleForget loses its
// profile.
func TestScheduleForgetsAgents(t *testing.T) {
	e := mustNew(t, Config{ScheduleForget: 2 * time.Hour})
	at := t0
	e.Observe(Snapshot{At: at, Agents: []Agent{busyAgent("a@x", 1, at, 0), busyAgent("b@x", 1, at, 0)}})
	at = at.Add(3 * time.Hour)
	e.Observe(Snapshot{At: at, Agents: []Agent{busyAgent("a@x", 1, at, 0)}})
	if _, ok := e.roster["b@x"]; ok {
		t.Error("b@x still has a profile 3h after it was last online")
	}
	if _, ok := e.roster["a@x"]; !ok {
		t.Error("a@x lost its profile")
	}
}
