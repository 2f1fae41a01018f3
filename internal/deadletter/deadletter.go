// Package deadletter is `kefu dlq`: it lists the dead letters of a role
// (the messages its consumers gave up on, on kefu.dlq.<role> in the
// KEFU_DLQ stream), shows one with its headers and body, and redrives
// them: each is published again on its original subject, for the consumer
// that dead-lettered it, and then removed from the dead-letter stream.
//
// A redrive is idempotent. The redriven message's Nats-Msg-Id is derived
// from the dead letter (redrive-<dead-letter sequence>-<original id>), so
// two redrives of the same dead letter — run twice, or run again after one
// stopped between publishing and removing — store one message: JetStream
// drops the second as a duplicate within its de-duplication window, and
// after the first redrive the dead letter is gone. The original
// Nats-Msg-Id is not reused on purpose: a message dead-lettered at once
// (a poison message) is redriven within the original's de-duplication
// window, where JetStream would silently drop it. The ce-id stays the
// original's, so handlers de-duplicating by it still do.
//
// The redriven message carries Kefu-Redrive-Consumer, the durable consumer
// that dead-lettered it (Kefu-Dlq-Consumer); the bus's other consumers of
// the same subject acknowledge it without handling it, so a redrive for
// the feedback role does not notify a customer a second time.
package deadletter

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/cliui"
	"github.com/kefu-io/kefu/pkg/events"
)

// ErrUsage marks a mistake on the command line; the app exits 2 for it.
var ErrUsage = errors.New("usage error")

type usageError struct{ msg string }

// Error is the mistake alone; the app adds which help to read.
func (e *usageError) Error() string { return "dlq: " + e.msg }
func (e *usageError) Unwrap() error { return ErrUsage }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// Usage writes the help of `kefu dlq`.
func Usage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  kefu dlq list    --role R [--subject SUBJ]
  kefu dlq show    --role R --seq N
  kefu dlq redrive --role R [--subject SUBJ | --seq N] [--keep]

Dead letters are the messages a role's consumers gave up on: a payload that
cannot be decoded, data the store refuses, a handler panic. (A dependency
that is down — database, WeChat, NATS — never dead-letters: those messages
are retried until it is back.) They are kept on kefu.dlq.<role> in the
KEFU_DLQ stream with the original headers, body and Kefu-Dlq-* headers.

  list     one line per dead letter: its sequence in KEFU_DLQ, when it was
           dead-lettered (RFC 3339, UTC), its original subject, the
           consumer, how often it was delivered, and the cause
  show     one dead letter: every header and the body
  redrive  publish dead letters again on their original subject, for the
           consumer that dead-lettered them, then remove them; idempotent;
           on a terminal one progress line on stderr counts them

  --role R        feedback, notifier, queuecare, estimator, …
  --subject SUBJ  only dead letters whose original subject matches SUBJ
                  (wildcards * and >)
  --seq N         the dead letter at KEFU_DLQ sequence N (from list)
  --keep          redrive without removing the dead letters
`)
}

// Options are the parsed command line.
type Options struct {
	Cmd     string // list, show, redrive
	Role    string
	Subject string // original-subject filter; "" for all
	Seq     uint64 // 0: every dead letter that matches
	Keep    bool
}

// Parse reads the command line (the words after "dlq"). -h returns
// flag.ErrHelp after printing the help on stdout.
func Parse(args []string, stdout io.Writer) (Options, error) {
	var o Options
	if len(args) == 0 {
		return o, usagef("a subcommand is required: list, show or redrive")
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		Usage(stdout)
		return o, flag.ErrHelp
	case "list", "show", "redrive":
		o.Cmd = args[0]
	default:
		return o, usagef("unknown subcommand %q: list, show or redrive", args[0])
	}
	fs := flag.NewFlagSet("dlq "+o.Cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.Role, "role", "", "")
	fs.StringVar(&o.Subject, "subject", "", "")
	seq := fs.String("seq", "", "")
	fs.BoolVar(&o.Keep, "keep", false, "")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			Usage(stdout)
			return o, flag.ErrHelp
		}
		return o, usagef("%v", err)
	}
	switch {
	case fs.NArg() > 0:
		return o, usagef("unexpected argument %q", fs.Arg(0))
	case o.Role == "":
		return o, usagef("--role is required")
	case events.Token(o.Role) != o.Role || strings.ContainsAny(o.Role, ".*> "):
		return o, usagef("--role %q is not a role name", o.Role)
	}
	if *seq != "" {
		n, err := strconv.ParseUint(*seq, 10, 64)
		if err != nil || n == 0 {
			return o, usagef("--seq %q is not a positive sequence number", *seq)
		}
		o.Seq = n
	}
	if o.Subject != "" && !validPattern(o.Subject) {
		return o, usagef("--subject %q is not a subject (tokens separated by dots, * for one token, > at the end)", o.Subject)
	}
	switch o.Cmd {
	case "show":
		if o.Seq == 0 {
			return o, usagef("show needs --seq N (the sequence kefu dlq list prints)")
		}
		if o.Subject != "" || o.Keep {
			return o, usagef("show takes only --role and --seq")
		}
	case "list":
		if o.Seq != 0 || o.Keep {
			return o, usagef("list takes only --role and --subject")
		}
	case "redrive":
		if o.Seq != 0 && o.Subject != "" {
			return o, usagef("--seq and --subject exclude each other")
		}
	}
	return o, nil
}

// isTerminal and now are seams for the tests: whether a writer is a
// terminal that can redraw a line, and the progress line's clock.
var (
	isTerminal = cliui.CanRedraw
	now        = time.Now
)

// Letter is one dead letter.
type Letter struct {
	Seq    uint64 // in KEFU_DLQ
	Time   time.Time
	Header nats.Header
	Data   []byte
}

// Subject is the subject the message was first published on.
func (l *Letter) Subject() string { return l.Header.Get(bus.HeaderDLQSubject) }

// Run runs a parsed command against the bus. A redrive draws a progress
// line on stderr when it is a terminal.
func Run(ctx context.Context, o Options, b *bus.Bus, stdout, stderr io.Writer) error {
	stream, err := b.Stream(ctx, events.StreamDLQ)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if o.Cmd == "show" {
			return fmt.Errorf("dlq: no dead letter %d for role %s: stream %s does not exist", o.Seq, o.Role, events.StreamDLQ)
		}
		fmt.Fprintf(stdout, "no dead letters for role %s\n", o.Role)
		return nil
	}
	if err != nil {
		return fmt.Errorf("dlq: %w", err)
	}
	var letters []*Letter
	if o.Seq != 0 {
		l, err := get(ctx, stream, o.Role, o.Seq)
		if err != nil {
			return err
		}
		letters = []*Letter{l}
	} else if letters, err = read(ctx, stream, o.Role, o.Subject); err != nil {
		return err
	}
	switch o.Cmd {
	case "list":
		return list(stdout, o.Role, letters)
	case "show":
		return show(stdout, letters[0])
	default:
		return redrive(ctx, b, stream, o, letters, stdout, stderr)
	}
}

// get reads the dead letter at seq, which must be one of role's.
func get(ctx context.Context, stream jetstream.Stream, role string, seq uint64) (*Letter, error) {
	m, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("dlq: no dead letter %d in %s (removed, or never there)", seq, events.StreamDLQ)
	}
	if err != nil {
		return nil, fmt.Errorf("dlq: read %d: %w", seq, err)
	}
	if m.Subject != events.DLQSubject(role) {
		return nil, fmt.Errorf("dlq: dead letter %d is on %s, not role %s's %s", seq, m.Subject, role, events.DLQSubject(role))
	}
	return &Letter{Seq: m.Sequence, Time: m.Time, Header: m.Header, Data: m.Data}, nil
}

// read returns role's dead letters whose original subject matches subject.
func read(ctx context.Context, stream jetstream.Stream, role, subject string) ([]*Letter, error) {
	filter := events.DLQSubject(role)
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("dlq: %w", err)
	}
	total := info.State.Subjects[filter]
	if total == 0 {
		return nil, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, fmt.Errorf("dlq: %w", err)
	}
	// The count from Info bounds the read: Fetch returns as soon as it
	// has that many, instead of waiting out its MaxWait for more.
	var out []*Letter
	seen := uint64(0)
	for seen < total {
		batch, err := cons.Fetch(int(min(total-seen, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("dlq: read %s: %w", filter, err)
		}
		got := 0
		pending := uint64(1)
		for m := range batch.Messages() {
			got++
			seen++
			meta, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("dlq: %w", err)
			}
			pending = meta.NumPending
			l := &Letter{Seq: meta.Sequence.Stream, Time: meta.Timestamp, Header: m.Headers(), Data: m.Data()}
			if subject == "" || matches(subject, l.Subject()) {
				out = append(out, l)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("dlq: read %s: %w", filter, err)
		}
		if pending == 0 || got == 0 {
			break // some were removed meanwhile
		}
	}
	return out, nil
}

func list(w io.Writer, role string, letters []*Letter) error {
	if len(letters) == 0 {
		fmt.Fprintf(w, "no dead letters for role %s\n", role)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD-LETTERED\tSUBJECT\tCONSUMER\tSTREAM-SEQ\tDELIVERED\tCAUSE")
	for _, l := range letters {
		h := l.Header
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Seq, l.Time.UTC().Format(time.RFC3339), orDash(l.Subject()),
			orDash(h.Get(bus.HeaderDLQConsumer)), orDash(h.Get(bus.HeaderDLQStream)+":"+h.Get(bus.HeaderDLQStreamSeq)),
			orDash(h.Get(bus.HeaderDLQDelivered)), oneLine(h.Get(bus.HeaderDLQReason)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d dead letters for role %s\n", len(letters), role)
	return nil
}

func show(w io.Writer, l *Letter) error {
	fmt.Fprintf(w, "seq: %d\ndead-lettered: %s\nsubject: %s\n\n", l.Seq, l.Time.UTC().Format(time.RFC3339Nano), l.Subject())
	keys := make([]string, 0, len(l.Header))
	for k := range l.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range l.Header[k] {
			fmt.Fprintf(w, "%s: %s\n", k, v)
		}
	}
	fmt.Fprintln(w)
	_, err := w.Write(l.Data)
	if err == nil && (len(l.Data) == 0 || l.Data[len(l.Data)-1] != '\n') {
		_, err = fmt.Fprintln(w)
	}
	return err
}

// redrive publishes each letter on its original subject and removes it.
func redrive(ctx context.Context, b *bus.Bus, stream jetstream.Stream, o Options, letters []*Letter, stdout, stderr io.Writer) error {
	if len(letters) == 0 {
		fmt.Fprintf(stdout, "no dead letters for role %s to redrive\n", o.Role)
		return nil
	}
	progress := cliui.NewProgress(stderr, "kefu dlq redrive "+o.Role, "messages", cliui.WithTerminal(isTerminal(stderr)), cliui.WithClock(now))
	progress.SetTotal(int64(len(letters)))
	// The line of each letter takes the progress line off the screen first.
	w := progress.Writer(stdout)
	var errs []error
	published, duplicates := 0, 0
	for i, l := range letters {
		progress.Update(int64(i), "")
		msg, err := Redriven(l)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ack, err := b.PublishMsg(ctx, msg)
		if err != nil {
			errs = append(errs, fmt.Errorf("dlq: redrive %d to %s: %w", l.Seq, msg.Subject, err))
			continue
		}
		state := "redriven"
		if ack.Duplicate {
			state = "already redriven (duplicate dropped)"
			duplicates++
		} else {
			published++
		}
		if !o.Keep {
			if err := stream.DeleteMsg(ctx, l.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				errs = append(errs, fmt.Errorf("dlq: redriven %d but not removed (a second redrive is a duplicate): %w", l.Seq, err))
				continue
			}
			state += ", removed"
		}
		fmt.Fprintf(w, "%d\t%s\t%s as %s:%d\n", l.Seq, msg.Subject, state, ack.Stream, ack.Sequence)
	}
	progress.Update(int64(len(letters)), "")
	progress.Finish()
	fmt.Fprintf(stdout, "role %s: %d redriven, %d already redriven, %d failed\n", o.Role, published, duplicates, len(errs))
	return errors.Join(errs...)
}

// HeaderRedriveConsumer names the durable consumer a redriven message is
// for; bus consumers with another name acknowledge it without handling.
const HeaderRedriveConsumer = bus.HeaderRedriveConsumer

// Redriven is the message a redrive of l publishes: the original subject,
// headers and body, without the Kefu-Dlq-* headers, with a Nats-Msg-Id
// derived from the dead letter and Kefu-Redrive-Consumer.
func Redriven(l *Letter) (*nats.Msg, error) {
	subject := l.Subject()
	if subject == "" {
		return nil, fmt.Errorf("dlq: dead letter %d has no %s header: its original subject is unknown", l.Seq, bus.HeaderDLQSubject)
	}
	msg := &nats.Msg{Subject: subject, Data: l.Data, Header: nats.Header{}}
	for k, v := range l.Header {
		if strings.HasPrefix(k, "Kefu-Dlq-") || strings.HasPrefix(k, "Nats-") {
			continue
		}
		msg.Header[k] = v
	}
	orig := l.Header.Get(bus.HeaderDLQMsgID)
	if orig == "" {
		orig = l.Header.Get(events.HeaderID) // a dead letter of an older kefu; the ce-id is its Nats-Msg-Id
	}
	msg.Header.Set(events.HeaderMsgID, "redrive-"+strconv.FormatUint(l.Seq, 10)+"-"+orig)
	if c := l.Header.Get(bus.HeaderDLQConsumer); c != "" {
		msg.Header.Set(HeaderRedriveConsumer, c)
	}
	return msg, nil
}

func orDash(s string) string {
	if s == "" || s == ":" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "\t", " ") }

// validPattern reports whether p is a NATS subject or wildcard pattern.
func validPattern(p string) bool {
	toks := strings.Split(p, ".")
	for i, t := range toks {
		switch {
		case t == "" || strings.ContainsAny(t, " \t\r\n"):
			return false
		case t == ">" && i != len(toks)-1:
			return false
		case t != "*" && t != ">" && strings.ContainsAny(t, "*>"):
			return false
		}
	}
	return true
}

// matches reports whether subject matches the NATS pattern p.
func matches(p, subject string) bool {
	pt, st := strings.Split(p, "."), strings.Split(subject, ".")
	for i, t := range pt {
		if t == ">" {
			return len(st) > i
		}
		if i >= len(st) || (t != "*" && t != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}
