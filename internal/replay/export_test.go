package replay

import (
	"io"
	"testing"
	"time"
)

// SetTerminal makes the tests decide which writers are terminals and what
// the progress line's clock says, until the test ends.
func SetTerminal(t testing.TB, terminal func(io.Writer) bool, clock func() time.Time) {
	oldTerminal, oldRedraw, oldNow := isTerminal, canRedraw, now
	isTerminal, canRedraw, now = terminal, terminal, clock
	t.Cleanup(func() { isTerminal, canRedraw, now = oldTerminal, oldRedraw, oldNow })
}
