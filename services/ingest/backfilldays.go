package ingest

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/kefu-io/kefu/internal/tucao"
)

// DayLayout is how a person writes the days of a backfill: ISO 8601.
const DayLayout = "2006-01-02"

// BackfillZone names the time zone of the backfill's days: Tucao's,
// China Standard Time, where a day starts at 16:00 UTC the day before.
const BackfillZone = "Asia/Shanghai, UTC+8"

var (
	isoDay    = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	legacyDay = regexp.MustCompile(`^[0-9]{8}$`)
)

// BackfillDays are the days of `kefu ingest --tucao-backfill --from D1
// --to D2`, both included, as midnights in Asia/Shanghai.
type BackfillDays struct {
	First, Last time.Time
}

// ParseBackfillDays reads --from and --to: YYYY-MM-DD, or the older
// YYYYMMDD (still accepted, no longer documented). An error names the
// flag and the expected form.
func ParseBackfillDays(from, to string) (BackfillDays, error) {
	first, err := parseBackfillDay("--from", from)
	if err != nil {
		return BackfillDays{}, err
	}
	last, err := parseBackfillDay("--to", to)
	if err != nil {
		return BackfillDays{}, err
	}
	d := BackfillDays{First: first, Last: last}
	if last.Before(first) {
		return BackfillDays{}, fmt.Errorf("--to %s is before --from %s", d.Last.Format(DayLayout), d.First.Format(DayLayout))
	}
	return d, nil
}

// parseBackfillDay reads one day given to flag.
func parseBackfillDay(flag, s string) (time.Time, error) {
	compact := s
	switch {
	case isoDay.MatchString(s):
		compact = strings.ReplaceAll(s, "-", "")
	case legacyDay.MatchString(s):
	default:
		return time.Time{}, fmt.Errorf("%s %q: want a day as YYYY-MM-DD, e.g. 2026-12-01 (%s)", flag, s, BackfillZone)
	}
	// Tucao's own form is the compact one; the client owns its parsing.
	t, err := tucao.ParseDate(compact)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: not a day of the calendar; want YYYY-MM-DD, e.g. 2026-12-01 (%s)", flag, s, BackfillZone)
	}
	return t, nil
}

// IsDeprecatedDay reports whether s is a day in the older YYYYMMDD form,
// which --from and --to still accept but no longer document.
func IsDeprecatedDay(s string) bool { return legacyDay.MatchString(s) }

// String is "2026-12-01..2026-12-07".
func (d BackfillDays) String() string {
	return d.First.Format(DayLayout) + ".." + d.Last.Format(DayLayout)
}

// Count is how many days there are.
func (d BackfillDays) Count() int {
	return int(d.Last.Sub(d.First).Round(time.Hour)/(24*time.Hour)) + 1
}

// listOptions is Tucao's window for the days: from the first day to the
// day after the last, which Tucao excludes.
func (d BackfillDays) listOptions() tucao.ListOptions {
	return tucao.ListOptions{Count: tucao.MaxCount, From: tucao.FormatDate(d.First), To: tucao.FormatDate(d.Last.AddDate(0, 0, 1))}
}

// daysDone is how many days a backfill has finished when it reads a post
// created at created: Tucao lists the newest first, so the days after the
// post's are done.
func (d BackfillDays) daysDone(created time.Time) int {
	day, err := tucao.ParseDate(tucao.FormatDate(created))
	if err != nil {
		return 0
	}
	n := int(d.Last.Sub(day).Round(time.Hour) / (24 * time.Hour))
	return min(max(n, 0), d.Count())
}

// BackfillProgress is how far a backfill has come.
type BackfillProgress struct {
	Days     BackfillDays
	DaysDone int
	Result   PollResult
}
