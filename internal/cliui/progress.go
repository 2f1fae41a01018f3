package cliui

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// RefreshInterval is the shortest time between two drawings of a progress
// line: often enough to look alive, rarely enough to cost nothing.
const RefreshInterval = 250 * time.Millisecond

// Progress is the single updating line a long command shows on a
// terminal, for example
//
//	kefu replay KEFU_WECHAT: 1200/5000 messages (24%), 600 messages/s, 2s
//
// It writes only when its writer is a terminal, redraws at most every
// RefreshInterval, and Finish removes it, so the command's own one-line
// summary follows on a clean line. Elsewhere (a pipe, a file, a container
// log) it writes nothing at all. It is safe for concurrent use.
type Progress struct {
	mu          sync.Mutex
	w           io.Writer
	on          bool
	now         func() time.Time
	label, unit string
	total, done int64
	detail      string
	start       time.Time
	drawn       time.Time // when the line was last drawn; zero: never
	shown       bool      // the line is on the screen now
	finished    bool
}

// Option changes how a Progress is made.
type Option func(*Progress)

// WithTerminal says whether the writer is a terminal that can redraw a
// line, instead of asking the operating system and TERM (tests; a caller
// that knows better).
func WithTerminal(on bool) Option { return func(p *Progress) { p.on = on } }

// WithClock sets the clock that limits redrawing and measures the rate.
func WithClock(now func() time.Time) Option { return func(p *Progress) { p.now = now } }

// NewProgress starts a progress line on w (stderr) that counts unit
// ("messages", "days"); label names the work. The clock starts now.
func NewProgress(w io.Writer, label, unit string, opts ...Option) *Progress {
	p := &Progress{w: w, label: label, unit: unit, now: time.Now}
	// A terminal that cannot rewrite a line would fill with progress.
	p.on = CanRedraw(w)
	for _, o := range opts {
		o(p)
	}
	p.start = p.now()
	return p
}

// Active reports whether the line is drawn at all (the writer is a
// terminal).
func (p *Progress) Active() bool { return p.on }

// SetTotal sets how many units the work has; 0 means unknown.
func (p *Progress) SetTotal(total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total = max(total, 0)
	p.refreshLocked()
}

// Add counts n more units done.
func (p *Progress) Add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	p.refreshLocked()
}

// Update sets the units done and a short detail shown after the rate
// ("3120 posts, 32 pages"); an empty detail shows none.
func (p *Progress) Update(done int64, detail string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.detail = done, detail
	p.refreshLocked()
}

// Done is the number of units counted so far.
func (p *Progress) Done() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Elapsed is the time since the progress started.
func (p *Progress) Elapsed() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.now().Sub(p.start)
}

// Line is the progress line as it would be drawn now, without the
// terminal's control characters.
func (p *Progress) Line() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lineLocked(p.now())
}

// Summary is "<done> <unit> in <elapsed> (<rate> <unit>/s)", for the
// one-line summary a command prints when it ends.
func (p *Progress) Summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	elapsed := p.now().Sub(p.start)
	s := fmt.Sprintf("%d %s in %s", p.done, p.unit, formatElapsed(elapsed))
	if r, ok := rate(p.done, elapsed); ok {
		s += " (" + r + " " + p.unit + "/s)"
	}
	return s
}

// Clear takes the line off the screen (it comes back at the next
// refresh), so that other output starts on a clean line.
func (p *Progress) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
}

// Finish takes the line off the screen for good; later updates draw
// nothing.
func (p *Progress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	p.finished = true
}

// Writer wraps w (stdout, on the same terminal) so that every write first
// takes the progress line off the screen: lines a command prints while it
// works never run into the progress line.
func (p *Progress) Writer(w io.Writer) io.Writer {
	if !p.on {
		return w
	}
	return clearingWriter{p: p, w: w}
}

type clearingWriter struct {
	p *Progress
	w io.Writer
}

func (c clearingWriter) Write(b []byte) (int, error) {
	c.p.Clear()
	return c.w.Write(b)
}

func (p *Progress) clearLocked() {
	if p.shown {
		io.WriteString(p.w, "\r\x1b[K")
		p.shown = false
	}
}

// refreshLocked draws the line unless it was drawn less than
// RefreshInterval ago.
func (p *Progress) refreshLocked() {
	if !p.on || p.finished {
		return
	}
	now := p.now()
	if !p.drawn.IsZero() && now.Sub(p.drawn) < RefreshInterval {
		return
	}
	p.drawn, p.shown = now, true
	io.WriteString(p.w, "\r"+p.lineLocked(now)+"\x1b[K")
}

func (p *Progress) lineLocked(now time.Time) string {
	var b strings.Builder
	elapsed := now.Sub(p.start)
	fmt.Fprintf(&b, "%s: %d", p.label, p.done)
	if p.total > 0 {
		fmt.Fprintf(&b, "/%d %s (%d%%)", p.total, p.unit, min(p.done*100/p.total, 100))
	} else {
		fmt.Fprintf(&b, " %s", p.unit)
	}
	if r, ok := rate(p.done, elapsed); ok {
		fmt.Fprintf(&b, ", %s %s/s", r, p.unit)
	}
	fmt.Fprintf(&b, ", %s", formatElapsed(elapsed))
	if p.detail != "" {
		b.WriteString(", " + p.detail)
	}
	return b.String()
}

// rate is done per second over elapsed; not ok before a tenth of a second
// has passed, when it would mean little.
func rate(done int64, elapsed time.Duration) (string, bool) {
	if elapsed < 100*time.Millisecond {
		return "", false
	}
	r := float64(done) / elapsed.Seconds()
	if r < 10 {
		return fmt.Sprintf("%.1f", r), true
	}
	return fmt.Sprintf("%.0f", r), true
}

// formatElapsed shows whole seconds ("42s", "3m5s"), tenths below ten
// seconds ("1.3s").
func formatElapsed(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}
