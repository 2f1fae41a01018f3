package main

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func TestBudgetStats(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// burst returns n requests d apart from at.
	burst := func(at time.Duration, n int, d time.Duration) []time.Time {
		ts := make([]time.Time, n)
		for i := range ts {
			ts[i] = t0.Add(at + time.Duration(i)*d)
		}
		return ts
	}
	join := func(parts ...[]time.Time) []time.Time {
		var all []time.Time
		for _, p := range parts {
			all = append(all, p...)
		}
		return all
	}
	for _, tc := range []struct {
		name      string
		sent      []time.Time
		minutes   int
		perMinute []int
		min, max  int
		mean      float64 // requests per window
	}{
		{
			name:      "a window straddling two minutes counts the requests of both",
			sent:      join(burst(50*time.Second, 60, 100*time.Millisecond), burst(60*time.Second, 60, 100*time.Millisecond)),
			minutes:   2,
			perMinute: []int{60, 60},
			min:       60, max: 120,
			// A request at t is in the windows starting in (t-60 s, t]
			// within [0, 60 s]: t long for the first burst, 120 s - t
			// for the second; 60×52.95 + 60×57.05 over 60 s.
			mean: 110,
		},
		{
			name:      "a request exactly a window after another is in the next window",
			sent:      []time.Time{t0, t0.Add(time.Minute)},
			minutes:   2,
			perMinute: []int{1, 1},
			min:       1, max: 1, mean: 1,
		},
		{
			name:      "requests outside the run are not counted",
			sent:      []time.Time{t0.Add(-time.Second), t0.Add(30 * time.Second), t0.Add(2 * time.Minute)},
			minutes:   2,
			perMinute: []int{1, 0},
			min:       0, max: 1, mean: 0.5,
		},
		{
			name:      "bursts of 100 every 61 s use about 60/61 of the budget",
			sent:      join(burst(0, 100, 10*time.Millisecond), burst(61*time.Second, 100, 10*time.Millisecond), burst(122*time.Second, 100, 10*time.Millisecond)),
			minutes:   3,
			perMinute: []int{100, 100, 100},
			// A gap of 60.01 s between bursts holds a whole window.
			min: 0, max: 100,
			mean: 100 * (0.495 + 60 + 57.505) / 120,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := budgetStats(tc.sent, t0, t0.Add(time.Duration(tc.minutes)*time.Minute), time.Minute)
			if len(st.perMinute) != len(tc.perMinute) {
				t.Fatalf("per minute %v, want %v", st.perMinute, tc.perMinute)
			}
			for i := range st.perMinute {
				if st.perMinute[i] != tc.perMinute[i] {
					t.Fatalf("per minute %v, want %v", st.perMinute, tc.perMinute)
				}
			}
			if st.min != tc.min || st.max != tc.max {
				t.Errorf("min %d, max %d; want %d, %d", st.min, st.max, tc.min, tc.max)
			}
			if d := st.mean - tc.mean; d > 0.1 || d < -0.1 {
				t.Errorf("mean %.2f, want %.2f", st.mean, tc.mean)
			}
		})
	}
}

// TestShortRuns runs both measurements end to end on a small scale: every
// post must reach the store, and the budget run must stay within the
// limit without a 429.
func TestShortRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole backfill path")
	}
	ctx := context.Background()
	o, err := parse([]string{"-posts", "500", "-budget-minutes", "2", "-clock", clockSkip, "-store", "sqlite"})
	if err != nil {
		t.Fatal(err)
	}
	// A budget of 100 a minute needs 100 pages a minute; 5 show the same.
	o.perMinute = 5
	tp, err := runThroughput(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if tp.storedDistinct != 500 || tp.requests != 5 {
		t.Errorf("throughput: %d posts stored in %d requests, want 500 in 5", tp.storedDistinct, tp.requests)
	}
	b, err := runBudget(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if b.stats.requests != 10 || b.stats.max > 5 {
		t.Errorf("budget: %d requests, at most %d in a window; want 10, at most 5", b.stats.requests, b.stats.max)
	}
	if b.stats.mean < 0.95*5 {
		t.Errorf("budget: %.2f requests in a 60 s window on average, want at least 95 %% of 5", b.stats.mean)
	}
	if n := b.log.statuses[http.StatusTooManyRequests]; n != 0 {
		t.Errorf("budget: the fake answered 429 %d times", n)
	}
	if b.created != 10*100 {
		t.Errorf("budget: %d posts published, want the 1000 of 10 pages", b.created)
	}
}
