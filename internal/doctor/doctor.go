// Package doctor explains why a kefu installation does not work: it runs
// one check after another — the configuration, NATS and JetStream,
// PostgreSQL, the WeChat credentials and 多客服, the callback URL as WeChat
// calls it, Tucao and the clock — and says for each what it found and, for a
// failure, what to set or do. `kefu doctor` (internal/app) wires it to the
// environment and prints the report.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Status is the verdict of one check.
type Status string

// The verdicts, as printed.
const (
	OK   Status = "ok"
	Fail Status = "FAIL"
	Warn Status = "warn"
	Skip Status = "skip"
)

// Result is one line of the report.
type Result struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Found is what the check saw.
	Found string `json:"found"`
	// Fix is what to set or do, for a failure or a warning; one line.
	Fix string `json:"fix,omitempty"`
}

// Check is one named check. Run may return several results (the
// configuration check reports each problem on its own line); it must
// return when ctx ends.
type Check struct {
	Name string
	Run  func(ctx context.Context) []Result
}

// Defaults of Run.
const (
	DefaultCheckTimeout = 5 * time.Second
	// DefaultTotalTimeout bounds a whole run, whatever the number of checks.
	DefaultTotalTimeout = 60 * time.Second
)

// Run runs checks in order, each within perCheck (and all within the
// deadline of ctx). A check that has not returned when its time is up is a
// failure saying so; its goroutine is left to end with its context. Once
// ctx is done the remaining checks are skipped.
func Run(ctx context.Context, checks []Check, perCheck time.Duration) []Result {
	if perCheck <= 0 {
		perCheck = DefaultCheckTimeout
	}
	var out []Result
	for _, c := range checks {
		if err := ctx.Err(); err != nil {
			out = append(out, Result{Name: c.Name, Status: Skip, Found: "not run: the doctor's time is up"})
			continue
		}
		out = append(out, runOne(ctx, c, perCheck)...)
	}
	return out
}

func runOne(ctx context.Context, c Check, timeout time.Duration) []Result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan []Result, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case rs := <-done:
		for i := range rs {
			if rs[i].Name == "" {
				rs[i].Name = c.Name
			}
		}
		return rs
	case <-ctx.Done():
		return []Result{{Name: c.Name, Status: Fail, Found: fmt.Sprintf("no answer within %s", timeout),
			Fix: "see what the check waits for (network, firewall, DNS) or give it longer with --timeout"}}
	}
}

// Failed reports whether any result is a failure.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

// Count returns how many results have status s.
func Count(rs []Result, s Status) int {
	n := 0
	for _, r := range rs {
		if r.Status == s {
			n++
		}
	}
	return n
}

// ANSI colours of the verdicts on a terminal.
var colours = map[Status]string{OK: "\x1b[32m", Fail: "\x1b[31m", Warn: "\x1b[33m"}

// Write prints one line per result — verdict, name, what was found — and
// under a failure or a warning the fix, indented. With colour the verdicts
// are green, red and yellow (only for a terminal: plain words when piped).
func Write(w io.Writer, rs []Result, colour bool) error {
	width := 0
	for _, r := range rs {
		width = max(width, displayWidth(r.Name))
	}
	var b strings.Builder
	for _, r := range rs {
		verdict := fmt.Sprintf("%-4s", r.Status)
		if c, ok := colours[r.Status]; ok && colour {
			verdict = c + verdict + "\x1b[0m"
		}
		pad := strings.Repeat(" ", width-displayWidth(r.Name))
		fmt.Fprintf(&b, "%s  %s%s  %s\n", verdict, r.Name, pad, oneLine(r.Found))
		if r.Fix != "" && (r.Status == Fail || r.Status == Warn) {
			fmt.Fprintf(&b, "      %s  fix: %s\n", strings.Repeat(" ", width), oneLine(r.Fix))
		}
	}
	fmt.Fprintf(&b, "\n%d ok, %d failed, %d warnings, %d skipped\n", Count(rs, OK), Count(rs, Fail), Count(rs, Warn), Count(rs, Skip))
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON prints the results as one JSON document for machines:
// {"ok": bool, "checks": [{"name","status","found","fix"}…]}.
func WriteJSON(w io.Writer, rs []Result) error {
	if rs == nil {
		rs = []Result{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		OK     bool     `json:"ok"`
		Checks []Result `json:"checks"`
	}{!Failed(rs), rs})
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// displayWidth is how many terminal columns s takes: wide (East Asian)
// characters such as 多客服 take two.
func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case r >= 0x1100 && (r <= 0x115f || (r >= 0x2e80 && r <= 0xa4cf) || (r >= 0xac00 && r <= 0xd7a3) ||
			(r >= 0xf900 && r <= 0xfaff) || (r >= 0xfe30 && r <= 0xfe4f) || (r >= 0xff00 && r <= 0xff60) || (r >= 0xffe0 && r <= 0xffe6)):
			n += 2
		default:
			n++
		}
	}
	return n
}
