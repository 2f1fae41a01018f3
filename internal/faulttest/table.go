package faulttest

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints the suite's table — one row per scenario, sent /
// stored / lost / doubled — then ScenarioFaults' detailed report.
func (s SuiteReport) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tsent\tstored\tlost\tdoubled\ttook\tresult\tdetail")
	for _, r := range s.Rows {
		result := "ok"
		switch {
		case r.Skipped != "":
			result = "skipped"
		case r.Err != nil:
			result = "ERROR"
		case !r.OK():
			result = "FAILED"
		}
		detail := r.Detail
		if r.Skipped != "" {
			detail = r.Skipped
		}
		if r.Err != nil {
			detail = strings.TrimSpace(detail + " — " + r.Err.Error())
		}
		counts := func(n int) string {
			if r.Skipped != "" {
				return "-"
			}
			return fmt.Sprint(n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Scenario, counts(r.Sent), counts(r.Stored),
			counts(r.Lost), counts(r.Doubled), r.Took.Round(time.Second), result, oneLine(detail))
	}
	tw.Flush()
	if s.OK() {
		fmt.Fprintln(w, "\nsuite: nothing acknowledged was lost or doubled")
	} else {
		fmt.Fprintln(w, "\nsuite: FAILED")
	}
	if s.Faults != nil {
		fmt.Fprintf(w, "\n== %s, in detail\n\n", ScenarioFaults)
		s.Faults.WriteTable(w)
	}
}

// oneLine keeps a detail on its row.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}
