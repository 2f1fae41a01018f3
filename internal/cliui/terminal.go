// Package cliui is how kefu's command-line tools talk to a person at a
// terminal without disturbing scripts: whether a stream is a terminal (and
// one that shows colour), and a progress line for long commands that is
// drawn only on a terminal.
package cliui

import (
	"io"
	"os"

	"github.com/mattn/go-isatty"
)

// Terminal says what a writer is connected to.
type Terminal struct {
	// Is reports a terminal: a person is probably reading.
	Is bool
	// Color reports a terminal that shows ANSI colours: not TERM=dumb,
	// and NO_COLOR (https://no-color.org) unset.
	Color bool
	// Redraw reports a terminal that can rewrite a line in place (ANSI
	// erase): every one but TERM=dumb.
	Redraw bool
}

// Detect tells what w is connected to; getenv reads TERM and NO_COLOR
// (os.Getenv in production). Only an *os.File can be a terminal.
func Detect(w io.Writer, getenv func(string) string) Terminal {
	f, ok := w.(*os.File)
	if !ok || f == nil {
		return Terminal{}
	}
	fd := f.Fd()
	if !isatty.IsTerminal(fd) && !isatty.IsCygwinTerminal(fd) {
		return Terminal{}
	}
	return Describe(true, getenv)
}

// Describe is the Terminal of a stream that is a terminal or not, with
// colour unless TERM or NO_COLOR rule it out.
func Describe(isTerminal bool, getenv func(string) string) Terminal {
	if !isTerminal {
		return Terminal{}
	}
	dumb := getenv("TERM") == "dumb"
	return Terminal{Is: true, Color: !dumb && getenv("NO_COLOR") == "", Redraw: !dumb}
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool { return Detect(w, os.Getenv).Is }

// CanRedraw reports whether w is a terminal that can rewrite a line in
// place: where a progress line may be drawn.
func CanRedraw(w io.Writer) bool { return Detect(w, os.Getenv).Redraw }
