package replay

import (
	"io"
	"time"
)

// CheckReplay parses a `kefu replay` command line without running it, so
// that a mistake is reported (wrapping ErrUsage; flag.ErrHelp for -h)
// before anything connects to NATS. Replay parses it again.
func CheckReplay(args []string) error {
	_, err := parseReplay(args, io.Discard, time.Now())
	return err
}

// CheckTail is CheckReplay for `kefu events tail`.
func CheckTail(args []string) error {
	_, err := parseTail(args, io.Discard)
	return err
}
