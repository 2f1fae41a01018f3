package ingest

import (
	"strings"
	"testing"
	"time"
)

func TestBackfillDaysAcceptISOAndTheOlderCompactForm(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	tests := []struct {
		name, from, to        string
		first, last, window   string
		days                  int
		wantFrom, wantToTucao string
	}{
		{"ISO days", "2026-01-11", "2026-01-12", "2026-01-11", "2026-01-12", "2026-01-11..2026-01-12", 2, "20260111", "20260113"},
		{"the older YYYYMMDD still works", "20260111", "20260112", "2026-01-11", "2026-01-12", "2026-01-11..2026-01-12", 2, "20260111", "20260113"},
		{"the forms mix", "20261231", "2027-01-01", "2026-12-31", "2027-01-01", "2026-12-31..2027-01-01", 2, "20261231", "20270102"},
		{"one day", "2026-02-28", "2026-02-28", "2026-02-28", "2026-02-28", "2026-02-28..2026-02-28", 1, "20260228", "20260301"},
		{"a leap day", "2028-02-29", "2028-03-01", "2028-02-29", "2028-03-01", "2028-02-29..2028-03-01", 2, "20280229", "20280302"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseBackfillDays(tt.from, tt.to)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.First.In(cst).Format(time.RFC3339); got != tt.first+"T00:00:00+08:00" {
				t.Errorf("first day starts %s, want midnight of %s in Asia/Shanghai", got, tt.first)
			}
			if got := d.Last.In(cst).Format(DayLayout); got != tt.last {
				t.Errorf("last day %s, want %s", got, tt.last)
			}
			if d.String() != tt.window || d.Count() != tt.days {
				t.Errorf("%s, %d days; want %s, %d", d, d.Count(), tt.window, tt.days)
			}
			// Tucao reads its own compact form, with an exclusive to.
			if o := d.listOptions(); o.From != tt.wantFrom || o.To != tt.wantToTucao {
				t.Errorf("Tucao window from=%s to=%s, want from=%s to=%s", o.From, o.To, tt.wantFrom, tt.wantToTucao)
			}
		})
	}
}

func TestBadBackfillDaysNameTheFlagAndTheForm(t *testing.T) {
	tests := []struct{ name, from, to, want string }{
		{"not a date", "yesterday", "2026-01-12", `--from "yesterday": want a day as YYYY-MM-DD`},
		{"a date without leading zeros", "2026-01-11", "2026-1-12", `--to "2026-1-12": want a day as YYYY-MM-DD`},
		{"a month that does not exist", "2026-13-01", "2026-13-02", `--from "2026-13-01": not a day of the calendar; want YYYY-MM-DD`},
		{"a day that does not exist", "2026-02-01", "2026-02-30", `--to "2026-02-30": not a day of the calendar`},
		{"an RFC 3339 time is not a day", "2026-01-11T00:00:00Z", "2026-01-12", `--from "2026-01-11T00:00:00Z": want a day as YYYY-MM-DD`},
		{"slashes", "2026/01/11", "2026-01-12", `--from "2026/01/11"`},
		{"empty", "", "2026-01-12", `--from "": want a day as YYYY-MM-DD`},
		{"to before from, in ISO whatever was typed", "20260113", "2026-01-12", "--to 2026-01-12 is before --from 2026-01-13"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseBackfillDays(tt.from, tt.to)
			if err == nil {
				t.Fatalf("%q..%q accepted", tt.from, tt.to)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
			if !strings.Contains(tt.want, "before") && !strings.Contains(err.Error(), "Asia/Shanghai") {
				t.Errorf("error %q does not say which time zone the day is in", err)
			}
		})
	}
}

func TestBackfillDaysDoneCountsFromTheNewestDay(t *testing.T) {
	d, err := ParseBackfillDays("2026-01-01", "2026-01-10")
	if err != nil {
		t.Fatal(err)
	}
	cst := time.FixedZone("CST", 8*3600)
	tests := []struct {
		created time.Time
		want    int
	}{
		{time.Date(2026, 1, 10, 23, 59, 0, 0, cst), 0},
		{time.Date(2026, 1, 10, 0, 0, 0, 0, cst), 0},
		{time.Date(2026, 1, 9, 23, 59, 0, 0, cst), 1},
		// 17:00 UTC on the 4th is already the 5th in Shanghai.
		{time.Date(2026, 1, 4, 17, 0, 0, 0, time.UTC), 5},
		{time.Date(2026, 1, 1, 0, 0, 0, 0, cst), 9},
		{time.Date(2025, 12, 31, 0, 0, 0, 0, cst), 10}, // outside: clamped
		{time.Date(2026, 1, 11, 12, 0, 0, 0, cst), 0},  // outside: clamped
	}
	for _, tt := range tests {
		if got := d.daysDone(tt.created); got != tt.want {
			t.Errorf("a post created %s: %d days done, want %d", tt.created.Format(time.RFC3339), got, tt.want)
		}
	}
}

func TestOnlyTheCompactFormIsDeprecated(t *testing.T) {
	for s, want := range map[string]bool{"20260111": true, "2026-01-11": false, "2026011": false, "": false} {
		if got := IsDeprecatedDay(s); got != want {
			t.Errorf("IsDeprecatedDay(%q) = %v, want %v", s, got, want)
		}
	}
}
