package waitmodel

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)

func mustNew(t testing.TB, cfg Config) *Estimator {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// busyAgent is an online agent serving slots chats that started age ago.
func busyAgent(account string, slots int, at time.Time, age time.Duration) Agent {
	a := Agent{Account: account, Status: 1, AutoAccept: slots, Accepted: slots}
	for i := range slots {
		a.Sessions = append(a.Sessions, Session{OpenID: fmt.Sprintf("%s-busy%d", account, i), Since: at.Add(-age)})
	}
	return a
}

func byOpenID(r Result) map[string]Estimate {
	out := map[string]Estimate{}
	for _, e := range r.Estimates {
		out[e.OpenID] = e
	}
	return out
}

func TestObserveQueues(t *testing.T) {
	at := t0.Add(time.Hour)
	two := []Agent{busyAgent("a@x", 1, at, time.Minute), busyAgent("b@x", 1, at, time.Minute)}
	tests := []struct {
		name  string
		snap  Snapshot
		check func(t *testing.T, r Result)
	}{
		{
			name: "empty queue gives no estimate",
			snap: Snapshot{At: at, Agents: two},
			check: func(t *testing.T, r Result) {
				if len(r.Estimates) != 0 || r.Unlisted != 0 {
					t.Fatalf("got %d estimates, %d unlisted", len(r.Estimates), r.Unlisted)
				}
			},
		},
		{
			name: "nobody online makes every estimate unknown",
			snap: Snapshot{At: at, Count: 2, Waiting: []WaitingCase{
				{OpenID: "c1", Since: at.Add(-time.Minute)}, {OpenID: "c2", Since: at, KfAccount: "a@x"}}},
			check: func(t *testing.T, r Result) {
				for _, e := range r.Estimates {
					if !e.Unknown || e.Wait != 0 || e.WaitP90 != 0 {
						t.Errorf("%s: %+v, want unknown with zero durations", e.OpenID, e)
					}
				}
			},
		},
		{
			name: "free slot means no wait",
			snap: Snapshot{At: at, Count: 1, Waiting: []WaitingCase{{OpenID: "c1", Since: at}},
				Agents: []Agent{{Account: "a@x", Status: 1, AutoAccept: 2, Accepted: 1, Sessions: []Session{{OpenID: "s", Since: at}}}}},
			check: func(t *testing.T, r Result) {
				if e := r.Estimates[0]; e.Unknown || e.Wait != 0 || e.Position != 1 {
					t.Fatalf("got %+v, want position 1 and zero wait", e)
				}
			},
		},
		{
			name: "customers asking for an agent queue for that agent only",
			snap: Snapshot{At: at, Count: 5, Agents: two, Waiting: []WaitingCase{
				{OpenID: "g1", Since: at.Add(-5 * time.Minute)},
				{OpenID: "a1", Since: at.Add(-4 * time.Minute), KfAccount: "a@x"},
				{OpenID: "g2", Since: at.Add(-3 * time.Minute)},
				{OpenID: "a2", Since: at.Add(-2 * time.Minute), KfAccount: "a@x"},
				{OpenID: "off", Since: at.Add(-time.Minute), KfAccount: "gone@x"},
			}},
			check: func(t *testing.T, r Result) {
				got := byOpenID(r)
				for id, pos := range map[string]int{"g1": 1, "a1": 1, "g2": 2, "a2": 2, "off": 1} {
					if got[id].Position != pos {
						t.Errorf("%s position %d, want %d", id, got[id].Position, pos)
					}
				}
				if !got["off"].Unknown {
					t.Errorf("customer of an offline agent: %+v, want unknown", got["off"])
				}
				if !(got["g1"].Wait < got["g2"].Wait && got["a1"].Wait < got["a2"].Wait) {
					t.Errorf("later customers must wait longer: %+v", got)
				}
				// a1 needs one of a's two departures-ahead share plus g1's
				// claim on a: it cannot be served before g1.
				if got["a1"].Wait < got["g1"].Wait {
					t.Errorf("a1 (%v) predicted before the earlier global g1 (%v)", got["a1"].Wait, got["g1"].Wait)
				}
				for _, e := range r.Estimates {
					if !e.Unknown && e.WaitP90 < e.Wait {
						t.Errorf("%s: P90 %v below mean %v", e.OpenID, e.WaitP90, e.Wait)
					}
				}
			},
		},
		{
			name: "count above the listed 100 estimates the unlisted tail",
			snap: func() Snapshot {
				s := Snapshot{At: at, Count: 250, Agents: two}
				for i := range 100 {
					s.Waiting = append(s.Waiting, WaitingCase{OpenID: fmt.Sprint("c", i), Since: at.Add(-time.Duration(200-i) * time.Second)})
				}
				return s
			}(),
			check: func(t *testing.T, r Result) {
				if r.Unlisted != 150 || len(r.Estimates) != 100 {
					t.Fatalf("unlisted %d, estimates %d; want 150 and 100", r.Unlisted, len(r.Estimates))
				}
				last := r.Estimates[99]
				if r.Tail.Position != 250 || r.Tail.Wait <= last.Wait {
					t.Fatalf("tail %+v must be position 250 and wait longer than the 100th (%v)", r.Tail, last.Wait)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := mustNew(t, Config{})
			tc.check(t, e.Observe(tc.snap))
		})
	}
}

func TestPredictPositionGrowsWithPosition(t *testing.T) {
	e := mustNew(t, Config{})
	at := t0
	e.Observe(Snapshot{At: at, Count: 300, Agents: []Agent{busyAgent("a@x", 3, at, time.Minute)}})
	prev := time.Duration(-1)
	for _, pos := range []int{1, 2, 10, 100, 300} {
		for _, m := range Models() {
			if est := e.PredictPosition(m, pos); est.Unknown {
				t.Fatalf("%v at %d unknown with an agent online", m, pos)
			}
		}
		w := e.PredictPosition(Kefu, pos).Wait
		if w <= prev {
			t.Fatalf("position %d waits %v, not more than the previous %v", pos, w, prev)
		}
		prev = w
	}
}

// feedDeterministic runs one agent with one slot whose sessions all last
// exactly length, back to back, for n sessions, polling in between.
func feedDeterministic(e *Estimator, n int, length time.Duration) time.Time {
	at := t0
	for i := range n {
		id := fmt.Sprint("s", i)
		e.SessionCreated(id, "a@x", at)
		// The next customer waits meanwhile and is served next: no
		// abandonment.
		e.Observe(Snapshot{At: at.Add(time.Second), Count: 1, Waiting: []WaitingCase{{OpenID: fmt.Sprint("s", i+1), Since: at}},
			Agents: []Agent{{Account: "a@x", Status: 1, AutoAccept: 1, Accepted: 1, Sessions: []Session{{OpenID: id, Since: at}}}}})
		at = at.Add(length)
		e.SessionClosed(id, "a@x", at)
	}
	return at
}

func TestLearnsDurationsAndSessionAges(t *testing.T) {
	e := mustNew(t, Config{})
	at := feedDeterministic(e, 400, 2*time.Minute)
	// A session that started 30 s ago ends in 90 s; a memoryless model
	// would say 120 s whatever the age.
	res := e.Observe(Snapshot{At: at, Count: 3,
		Waiting: []WaitingCase{{OpenID: "x1", Since: at}, {OpenID: "x2", Since: at}, {OpenID: "x3", Since: at}},
		Agents:  []Agent{{Account: "a@x", Status: 1, AutoAccept: 1, Accepted: 1, Sessions: []Session{{OpenID: "cur", Since: at.Add(-30 * time.Second)}}}}})
	if d := res.ServiceFor - 2*time.Minute; d < -5*time.Second || d > 5*time.Second {
		t.Fatalf("learned session length %v, want about 2m", res.ServiceFor)
	}
	got := byOpenID(res)
	if w := got["x1"].Wait; w < 85*time.Second || w > 95*time.Second {
		t.Fatalf("first customer waits %v, want about 90s (the rest of the current session)", w)
	}
	// Each later customer needs one more whole session (the renewal
	// beyond the learned horizon is extrapolated at the mean rate, which
	// for lattice durations like these can add up to half a session).
	for _, pair := range [][2]string{{"x1", "x2"}, {"x2", "x3"}} {
		if d := got[pair[1]].Wait - got[pair[0]].Wait; d < 100*time.Second || d > 180*time.Second {
			t.Errorf("%s waits %v more than %s, want about 2m", pair[1], d, pair[0])
		}
	}
}

func TestAbandonmentInference(t *testing.T) {
	at := t0
	agents := []Agent{busyAgent("a@x", 1, at, time.Minute)}
	listed := []WaitingCase{{OpenID: "left", Since: at}, {OpenID: "served", Since: at}, {OpenID: "late", Since: at}}
	tests := []struct {
		name   string
		events func(e *Estimator)
		want   []string
	}{
		{name: "vanished without a session is abandoned after the grace", want: []string{"left", "served"}},
		{
			name: "a session created before or within the grace is not abandonment",
			events: func(e *Estimator) {
				e.SessionCreated("served", "a@x", at.Add(10*time.Second))
			},
			want: []string{"left"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := mustNew(t, Config{AbandonGrace: 30 * time.Second})
			e.Observe(Snapshot{At: at, Count: 3, Waiting: listed, Agents: agents})
			if tc.events != nil {
				tc.events(e)
			}
			r := e.Observe(Snapshot{At: at.Add(15 * time.Second), Agents: agents})
			if len(r.Abandoned) != 0 {
				t.Fatalf("abandonment reported before the grace: %+v", r.Abandoned)
			}
			e.SessionCreated("late", "a@x", at.Add(20*time.Second)) // event raced the poll
			r = e.Observe(Snapshot{At: at.Add(60 * time.Second), Agents: agents})
			var got []string
			for _, a := range r.Abandoned {
				got = append(got, a.OpenID)
				if a.Waited <= 0 || a.Waited > 15*time.Second {
					t.Errorf("%s waited %v, want within the first poll interval", a.OpenID, a.Waited)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("abandoned %v, want %v", got, tc.want)
			}
			if e.theta() <= 0 {
				t.Fatalf("abandonment rate not learned")
			}
		})
	}
}

func TestStateRoundTrip(t *testing.T) {
	e := mustNew(t, Config{})
	at := feedDeterministic(e, 300, 90*time.Second)
	e.Observe(Snapshot{At: at.Add(time.Minute), Agents: []Agent{busyAgent("a@x", 1, at, 0)}}) // the last customer left
	e.Observe(Snapshot{At: at.Add(2 * time.Minute), Agents: []Agent{busyAgent("a@x", 1, at, 0)}})
	if e.aband == 0 {
		t.Fatal("setup: an abandonment should have been learned")
	}
	b, err := e.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	restored := mustNew(t, Config{})
	if err := restored.UnmarshalState(b); err != nil {
		t.Fatal(err)
	}
	b2, err := restored.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatalf("state changed across a round trip:\n%s\n%s", b, b2)
	}
	// Same time as the last observation: the original's knowledge of the
	// queue (not persisted) adds no exposure before predicting.
	snap := Snapshot{At: at.Add(2 * time.Minute), Count: 4, Agents: []Agent{busyAgent("a@x", 1, at, 30*time.Second)}}
	for i := range 4 {
		snap.Waiting = append(snap.Waiting, WaitingCase{OpenID: fmt.Sprint("n", i), Since: at})
	}
	r1, r2 := e.Observe(snap), restored.Observe(snap)
	if fmt.Sprint(r1.Estimates) != fmt.Sprint(r2.Estimates) {
		t.Fatalf("restored estimator predicts differently:\n%v\n%v", r1.Estimates, r2.Estimates)
	}
	if err := restored.UnmarshalState([]byte(`{"version":99}`)); !errors.Is(err, ErrStateVersion) {
		t.Fatalf("unknown version: %v, want ErrStateVersion", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"unknown model is rejected", Config{Model: modelCount}},
		{"negative half-life is rejected", Config{HalfLife: -time.Second}},
		{"quantile at or below the median is rejected", Config{Quantile: 0.5}},
		{"min shape samples above the ring is rejected", Config{ShapeSamples: 100, MinShapeSamples: 200}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New: %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := New(Config{}); err != nil {
		t.Fatalf("defaults must be valid: %v", err)
	}
}

func BenchmarkObserve10k(b *testing.B) {
	e := mustNew(b, Config{})
	at := feedDeterministic(e, 400, 2*time.Minute) // learned shape: full model path
	benchObserve10k(b, e, at)
}

// BenchmarkObserve10kProfiles is BenchmarkObserve10k with presence
// profiles in play: half the agents leave for an hour in 5 minutes, and 20
// agents now offline come back in 30 minutes.
func BenchmarkObserve10kProfiles(b *testing.B) {
	e := mustNew(b, Config{})
	at := feedDeterministic(e, 400, 2*time.Minute)
	_, slot, _ := daySlot(at)
	e.roster = make(map[string]*presence)
	profile := func(capacity int, off func(j int) bool) *presence {
		pr := &presence{capacity: capacity, lastOnline: at}
		for j := range pr.slots {
			pr.slots[j] = presenceSlot{Frac: 3, Days: 3}
			if off((j - slot + daySlots) % daySlots) {
				pr.slots[j].Frac = 0
			}
		}
		return pr
	}
	for i := range 200 {
		leaves := i%2 == 0
		e.roster[fmt.Sprintf("kf%03d@x", i)] = profile(3, func(j int) bool { return leaves && j >= 1 && j <= 12 })
	}
	for i := range 20 {
		e.roster[fmt.Sprintf("back%02d@x", i)] = profile(3, func(j int) bool { return j < 6 })
	}
	benchObserve10k(b, e, at)
}

func benchObserve10k(b *testing.B, e *Estimator, at time.Time) {
	snap := Snapshot{At: at, Count: 10_000}
	for i := range 200 {
		snap.Agents = append(snap.Agents, busyAgent(fmt.Sprintf("kf%03d@x", i), 3, at, time.Duration(i)*time.Second))
	}
	for i := range 10_000 {
		w := WaitingCase{OpenID: fmt.Sprint("c", i), Since: at.Add(time.Duration(i-10_000) * time.Second)}
		if i%10 == 0 {
			w.KfAccount = fmt.Sprintf("kf%03d@x", i%200)
		}
		snap.Waiting = append(snap.Waiting, w)
	}
	b.ReportAllocs()
	for b.Loop() {
		snap.At = snap.At.Add(time.Second)
		if r := e.Observe(snap); len(r.Estimates) != 10_000 {
			b.Fatal("missing estimates")
		}
	}
}
