package replay

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// ErrUsage marks a mistake on the command line: an unknown or malformed
// flag, flags that exclude each other, a bad subject, duration or time. The
// app exits 2 for it and 1 for every other error.
var ErrUsage = errors.New("usage error")

type usageError struct{ cmd, msg string }

// Error is the mistake alone; the app adds which help to read.
func (e *usageError) Error() string { return e.cmd + ": " + e.msg }
func (e *usageError) Unwrap() error { return ErrUsage }

func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// Usage writes the help of `kefu replay` and `kefu events tail`.
func Usage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  kefu replay --stream S [--subject SUBJ]... [--since D|T | --from-seq N]
              [--republish PREFIX] [--follow] [--limit N]
  kefu events tail [--subject SUBJ]... [--stream S] [--json]

kefu replay reads a stream through an ephemeral ordered consumer (it never
touches the services' durable consumers) and prints one JSON line per event:
  {"stream","seq","subject","time","headers":{...},"data":<JSON body>}
(a body that is not JSON comes as "data_base64"), or republishes the events.

  --stream S          stream to read: KEFU_WECHAT, KEFU_KF, KEFU_TUCAO, KEFU_NOTIFY, KEFU_DLQ
  --subject SUBJ      only subjects matching SUBJ (wildcards * and >); repeatable
  --since D|T         start at a time: a duration back from now (90s, 30m, 2h)
                      or an RFC 3339 time (2026-11-25T10:00:00Z)
  --from-seq N        start at stream sequence N
  --republish PREFIX  publish each event again on PREFIX.<subject>, headers kept,
                      Nats-Msg-Id replay-<stream>-<seq>, the original id in
                      Kefu-Replay-Of (a prefix the stream itself captures is refused)
  --follow            after the stored events, keep reading new ones until Ctrl-C
  --limit N           stop after N events
Without --since and --from-seq the whole stream is read; without --follow it
stops at the last event stored when it started. Times are RFC 3339, with Z or
an offset (2026-11-25T18:00:00+08:00). When the events go to a file, a pipe or
--republish and stderr is a terminal, one progress line on stderr counts them;
the summary (how many, how fast) ends on stderr, so stdout holds events only.

kefu events tail shows new events, one line each (time, subject, summary).
  --subject SUBJ      subjects to watch (default kefu.>); repeatable
  --stream S          read what stream S stores (ordered consumer, new messages
                      only) instead of subscribing on core NATS
  --json              print JSON lines as kefu replay does
`)
}

// subjects is a repeatable --subject flag.
type subjects []string

func (s *subjects) String() string { return strings.Join(*s, ",") }
func (s *subjects) Set(v string) error {
	if err := checkSubject(v, true); err != nil {
		return err
	}
	*s = append(*s, v)
	return nil
}

// replayOptions is one parsed `kefu replay` command line.
type replayOptions struct {
	stream    string
	subjects  []string
	since     time.Time // zero: not given
	fromSeq   uint64    // zero: not given
	republish string
	follow    bool
	limit     int
}

// parseReplay reads the flags of `kefu replay`; now anchors --since durations.
func parseReplay(args []string, stdout io.Writer, now time.Time) (replayOptions, error) {
	const cmd = "replay"
	var (
		o                 replayOptions
		subj              subjects
		since, fromSeq    string
		sinceSet, seqSet  bool
		limit             string
		fs                = newFlagSet(cmd)
		republish, stream string
	)
	fs.StringVar(&stream, "stream", "", "")
	fs.Var(&subj, "subject", "")
	fs.Func("since", "", func(v string) error { since, sinceSet = v, true; return nil })
	fs.Func("from-seq", "", func(v string) error { fromSeq, seqSet = v, true; return nil })
	fs.StringVar(&republish, "republish", "", "")
	fs.BoolVar(&o.follow, "follow", false, "")
	fs.StringVar(&limit, "limit", "", "")
	if err := parseFlags(cmd, fs, args, stdout); err != nil {
		return o, err
	}
	o.stream, o.subjects, o.republish = stream, subj, republish
	if o.stream == "" {
		return o, usagef(cmd, "--stream is required")
	}
	if sinceSet && seqSet {
		return o, usagef(cmd, "--since and --from-seq cannot be used together")
	}
	if sinceSet {
		t, err := parseSince(since, now)
		if err != nil {
			return o, usagef(cmd, "--since %q: %v", since, err)
		}
		o.since = t
	}
	if seqSet {
		n, err := strconv.ParseUint(fromSeq, 10, 64)
		if err != nil || n == 0 {
			return o, usagef(cmd, "--from-seq %q: want a stream sequence, 1 or more", fromSeq)
		}
		o.fromSeq = n
	}
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil || n <= 0 {
			return o, usagef(cmd, "--limit %q: want a count, 1 or more", limit)
		}
		o.limit = n
	}
	if republish != "" {
		if err := checkSubject(republish, false); err != nil {
			return o, usagef(cmd, "--republish %q: %v", republish, err)
		}
	}
	return o, nil
}

// tailOptions is one parsed `kefu events tail` command line.
type tailOptions struct {
	stream   string
	subjects []string
	json     bool
}

func parseTail(args []string, stdout io.Writer) (tailOptions, error) {
	const cmd = "events tail"
	var (
		o    tailOptions
		subj subjects
		fs   = newFlagSet(cmd)
	)
	fs.StringVar(&o.stream, "stream", "", "")
	fs.Var(&subj, "subject", "")
	fs.BoolVar(&o.json, "json", false, "")
	if err := parseFlags(cmd, fs, args, stdout); err != nil {
		return o, err
	}
	o.subjects = subj
	return o, nil
}

func newFlagSet(cmd string) *flag.FlagSet {
	fs := flag.NewFlagSet("kefu "+cmd, flag.ContinueOnError)
	// The flag package prints its own messages; ours come back as one error.
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args; -h prints the help and returns flag.ErrHelp
// (which the app treats as success).
func parseFlags(cmd string, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			Usage(stdout)
			return err
		}
		return usagef(cmd, "%v", err)
	}
	if fs.NArg() > 0 {
		return usagef(cmd, "unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// parseSince reads a duration back from now or an RFC 3339 time.
func parseSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, errors.New("a duration back from now cannot be negative")
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("want a duration (90s, 30m, 2h) or an RFC 3339 time (2026-11-25T10:00:00Z)")
}

// checkSubject accepts a NATS subject: dot-separated non-empty tokens
// without white space; with wildcards, "*" may be any whole token and ">"
// the whole last token.
func checkSubject(s string, wildcards bool) error {
	if s == "" {
		return errors.New("empty subject")
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return errors.New("empty token (leading, trailing or double dot)")
		case strings.ContainsAny(t, " \t\r\n"):
			return errors.New("white space in a subject")
		case t == "*" || t == ">":
			if !wildcards {
				return errors.New("wildcards are not allowed here")
			}
			if t == ">" && i != len(tokens)-1 {
				return errors.New("\">\" must be the last token")
			}
		case strings.ContainsAny(t, "*>"):
			return fmt.Errorf("wildcard inside token %q", t)
		}
	}
	return nil
}
