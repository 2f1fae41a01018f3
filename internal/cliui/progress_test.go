package cliui_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/cliui"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC)} }

// draws counts the progress lines written: each starts with a carriage
// return and ends by clearing the rest of the line.
func draws(s string) int { return strings.Count(s, "\x1b[K") - strings.Count(s, "\r\x1b[K") }

func TestProgressRedrawsAtMostEveryRefreshInterval(t *testing.T) {
	var out bytes.Buffer
	clk := newClock()
	p := cliui.NewProgress(&out, "kefu replay KEFU_WECHAT", "messages", cliui.WithTerminal(true), cliui.WithClock(clk.now))
	p.SetTotal(1000) // first drawing
	for i := 0; i < 100; i++ {
		clk.advance(10 * time.Millisecond) // 100 updates over one second
		p.Add(1)
	}
	// Drawn at 0 and then every 250 ms: 250, 500, 750, 1000.
	if got := draws(out.String()); got != 5 {
		t.Fatalf("%d drawings in one second of updates every 10 ms, want 5 (at most one per %s):\n%q", got, cliui.RefreshInterval, out.String())
	}
	last := out.String()[strings.LastIndex(out.String(), "\r")+1:]
	want := "kefu replay KEFU_WECHAT: 100/1000 messages (10%), 100 messages/s, 1.0s\x1b[K"
	if last != want {
		t.Fatalf("last drawing %q, want %q", last, want)
	}
}

func TestProgressWithoutTotalAndWithDetail(t *testing.T) {
	clk := newClock()
	p := cliui.NewProgress(&bytes.Buffer{}, "backfill", "posts", cliui.WithTerminal(true), cliui.WithClock(clk.now))
	clk.advance(90 * time.Second)
	p.Update(4500, "day 3/10")
	if got, want := p.Line(), "backfill: 4500 posts, 50 posts/s, 1m30s, day 3/10"; got != want {
		t.Fatalf("line %q, want %q", got, want)
	}
}

func TestProgressPercentNeverPassesAHundred(t *testing.T) {
	clk := newClock()
	p := cliui.NewProgress(&bytes.Buffer{}, "redrive", "messages", cliui.WithTerminal(true), cliui.WithClock(clk.now))
	p.SetTotal(3)
	p.Add(5)
	if got := p.Line(); !strings.Contains(got, "5/3 messages (100%)") {
		t.Fatalf("line %q", got)
	}
}

func TestProgressFinishClearsTheLineForGood(t *testing.T) {
	var out bytes.Buffer
	clk := newClock()
	p := cliui.NewProgress(&out, "redrive", "messages", cliui.WithTerminal(true), cliui.WithClock(clk.now))
	p.SetTotal(2)
	p.Add(1)
	p.Finish()
	if !strings.HasSuffix(out.String(), "\r\x1b[K") {
		t.Fatalf("finish did not clear the line: %q", out.String())
	}
	n := out.Len()
	clk.advance(time.Second)
	p.Add(1)
	if out.Len() != n {
		t.Fatalf("drawn after Finish: %q", out.String()[n:])
	}
	if got, want := p.Summary(), "2 messages in 1.0s (2.0 messages/s)"; got != want {
		t.Fatalf("summary %q, want %q", got, want)
	}
}

func TestProgressIsSilentWhenNotATerminal(t *testing.T) {
	var out bytes.Buffer
	clk := newClock()
	p := cliui.NewProgress(&out, "backfill", "days", cliui.WithTerminal(false), cliui.WithClock(clk.now))
	p.SetTotal(10)
	for i := 0; i < 10; i++ {
		clk.advance(time.Second)
		p.Add(1)
	}
	var stdout bytes.Buffer
	w := p.Writer(&stdout)
	w.Write([]byte("line\n"))
	p.Clear()
	p.Finish()
	if out.Len() != 0 {
		t.Fatalf("wrote %q to a writer that is not a terminal", out.String())
	}
	if stdout.String() != "line\n" {
		t.Fatalf("stdout %q", stdout.String())
	}
	if p.Active() {
		t.Fatal("Active on a writer that is not a terminal")
	}
	if got, want := p.Summary(), "10 days in 10s (1.0 days/s)"; got != want {
		t.Fatalf("summary %q, want %q", got, want)
	}
}

func TestProgressNeedsNoOptionForAPlainWriter(t *testing.T) {
	var out bytes.Buffer
	p := cliui.NewProgress(&out, "x", "messages")
	p.Add(1)
	p.Finish()
	if p.Active() || out.Len() != 0 {
		t.Fatalf("a bytes.Buffer is no terminal; wrote %q", out.String())
	}
}

func TestProgressWriterClearsTheLineBeforeOtherOutput(t *testing.T) {
	var screen bytes.Buffer // stderr and stdout on one terminal
	clk := newClock()
	p := cliui.NewProgress(&screen, "redrive", "messages", cliui.WithTerminal(true), cliui.WithClock(clk.now))
	p.SetTotal(2)
	stdout := p.Writer(&screen)
	stdout.Write([]byte("7\tkefu.x\tredriven\n"))
	got := screen.String()
	want := "\rredrive: 0/2 messages (0%), 0.0s\x1b[K\r\x1b[K7\tkefu.x\tredriven\n"
	if got != want {
		t.Fatalf("screen %q, want %q", got, want)
	}
	// With nothing on the screen there is nothing to clear.
	stdout.Write([]byte("8\n"))
	if rest := screen.String()[len(want):]; rest != "8\n" {
		t.Fatalf("second write %q", rest)
	}
}

func TestDetect(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if got := cliui.Detect(&bytes.Buffer{}, env(nil)); got.Is || got.Color {
		t.Errorf("a buffer detected as %+v", got)
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := cliui.Detect(f, env(nil)); got.Is || got.Color {
		t.Errorf("a regular file detected as %+v", got)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if cliui.IsTerminal(w) {
		t.Error("a pipe detected as a terminal")
	}
}

func TestColourOnlyOnATerminalThatShowsIt(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name     string
		terminal bool
		env      map[string]string
		want     cliui.Terminal
	}{
		{"a terminal shows colour and redraws", true, map[string]string{"TERM": "xterm-256color"}, cliui.Terminal{Is: true, Color: true, Redraw: true}},
		{"TERM=dumb has neither", true, map[string]string{"TERM": "dumb"}, cliui.Terminal{Is: true}},
		{"NO_COLOR turns colour off, not redrawing", true, map[string]string{"TERM": "xterm", "NO_COLOR": "1"}, cliui.Terminal{Is: true, Redraw: true}},
		{"not a terminal: nothing", false, map[string]string{"TERM": "xterm"}, cliui.Terminal{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cliui.Describe(tt.terminal, env(tt.env)); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
