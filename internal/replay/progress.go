package replay

import (
	"io"
	"time"

	"github.com/kefu-io/kefu/internal/cliui"
)

// isTerminal, canRedraw and now are seams for the tests: whether a writer
// is a terminal, one that can redraw a line, and the progress line's
// clock.
var (
	isTerminal = cliui.IsTerminal
	canRedraw  = cliui.CanRedraw
	now        = time.Now
)

// newProgress is the progress line of a replay that reads total events
// (0: unknown). It is drawn on stderr when stderr is a terminal and the
// events do not go to a terminal themselves: when they go to a file, a
// pipe or another subject. Lines of events on the screen are progress
// enough.
func newProgress(o replayOptions, stdout, stderr io.Writer, total uint64) *cliui.Progress {
	show := canRedraw(stderr) && (o.republish != "" || !isTerminal(stdout))
	p := cliui.NewProgress(stderr, "kefu replay "+o.stream, "events", cliui.WithTerminal(show), cliui.WithClock(now))
	p.SetTotal(int64(total))
	return p
}

// countingSink counts on a progress line the events it hands on.
type countingSink struct {
	sink
	progress *cliui.Progress
}

func (c countingSink) put(r *record, caughtUp bool) error {
	if err := c.sink.put(r, caughtUp); err != nil {
		return err
	}
	c.progress.Add(1)
	return nil
}
