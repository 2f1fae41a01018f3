package replay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
)

const (
	// outputBuffer is large because replay output goes to files and pipes
	// at tens of thousands of lines a second.
	outputBuffer = 256 << 10
	// pullBatch is how many messages the ordered consumer asks for at a
	// time; the default (500) leaves replay waiting on round trips.
	pullBatch = 16384
	// pullBytes bounds the same buffer in bytes (Tucao posts with their
	// replies can be large); it stays well above the 1 MiB largest message.
	pullBytes = 32 << 20
	// requestTimeout bounds short requests to the server: removing the
	// ephemeral consumer at the end (also after an interrupt; the server would
	// remove it anyway) and confirming a subscription.
	requestTimeout = 3 * time.Second
)

// Replay runs `kefu replay` (args are the words after "replay"). It prints
// the selected events of a stream as JSON lines on stdout, or republishes
// them under a prefix. Command-line mistakes wrap [ErrUsage]; -h prints
// the help on stdout and returns flag.ErrHelp.
func Replay(ctx context.Context, args []string, stdout, stderr io.Writer, b *bus.Bus) error {
	o, err := parseReplay(args, stdout, time.Now())
	if err != nil {
		return err
	}
	stream, err := lookupStream(ctx, b, o.stream)
	if err != nil {
		return err
	}
	// The end of a replay without --follow: what the stream held before
	// the consumer existed, so that events published meanwhile are not
	// mistaken for history and the command always ends.
	last := stream.CachedInfo().State.LastSeq

	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: o.subjects,
		NamePrefix:     ephemeralName("replay"),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
	switch {
	case o.fromSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, o.fromSeq
	case !o.since.IsZero():
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &o.since
	}
	rd, err := openReader(ctx, stream, cfg)
	if err != nil {
		return err
	}
	defer rd.close()

	var out sink = newPrinter(stdout, false)
	if o.republish != "" {
		if out, err = newRepublisher(ctx, b, o.republish, o.stream, stderr); err != nil {
			return err
		}
	}
	if o.follow {
		// No end, no progress: --follow runs until Ctrl-C.
		_, err = copyEvents(ctx, rd, o, last, out)
		if ferr := out.finish(); err == nil {
			err = ferr
		}
		return err
	}
	total := rd.pendingAtStart()
	if last == 0 {
		total = 0
	}
	if o.limit > 0 {
		total = min(total, uint64(o.limit))
	}
	progress := newProgress(o, stdout, stderr, total)
	_, err = copyEvents(ctx, rd, o, last, countingSink{sink: out, progress: progress})
	progress.Finish()
	if ferr := out.finish(); err == nil {
		err = ferr
	}
	// The events went to a file or a pipe: say on stderr how many. (A
	// republish says what became of them itself.)
	if err == nil && o.republish == "" && !isTerminal(stdout) {
		fmt.Fprintf(stderr, "kefu replay %s: %s\n", o.stream, progress.Summary())
	}
	return err
}

// copyEvents hands the selected events to out and returns how many.
func copyEvents(ctx context.Context, rd *reader, o replayOptions, last uint64, out sink) (int, error) {
	if !o.follow && (last == 0 || rd.pendingAtStart() == 0) {
		return 0, nil
	}
	count := 0
	for {
		msg, meta, err := rd.next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				return count, err
			}
			if o.follow {
				return count, nil // Ctrl-C is how --follow ends
			}
			return count, fmt.Errorf("replay %s interrupted after %d events: %w", o.stream, count, ctx.Err())
		}
		seq := meta.Sequence.Stream
		if !o.follow && seq > last {
			return count, nil
		}
		rec := record{Stream: meta.Stream, Seq: seq, Subject: msg.Subject(), Time: meta.Timestamp, Header: msg.Headers(), Data: msg.Data()}
		if err := out.put(&rec, meta.NumPending == 0); err != nil {
			return count, err
		}
		count++
		if (o.limit > 0 && count >= o.limit) || (!o.follow && (seq >= last || meta.NumPending == 0)) {
			return count, nil
		}
	}
}

// sink receives the events read: printed or republished.
type sink interface {
	// put takes one event; caughtUp says no more are waiting right now.
	put(r *record, caughtUp bool) error
	// finish flushes what put left pending.
	finish() error
}

// printer writes events as JSON lines or, for tail, human lines.
type printer struct {
	out   *bufio.Writer
	enc   lineEncoder
	line  []byte
	human bool
}

func newPrinter(w io.Writer, human bool) *printer {
	return &printer{out: bufio.NewWriterSize(w, outputBuffer), human: human}
}

func (p *printer) put(r *record, caughtUp bool) error {
	if p.human {
		p.line = appendHuman(p.line[:0], r)
	} else {
		p.line = p.enc.appendLine(p.line[:0], r)
	}
	if _, err := p.out.Write(p.line); err != nil {
		return fmt.Errorf("write events: %w", err)
	}
	// Caught up: show what there is now rather than when the buffer fills.
	if caughtUp {
		return p.finish()
	}
	return nil
}

func (p *printer) finish() error {
	if err := p.out.Flush(); err != nil {
		return fmt.Errorf("write events: %w", err)
	}
	return nil
}

// lookupStream finds a stream; for an unknown name the error lists the
// streams there are.
func lookupStream(ctx context.Context, b *bus.Bus, name string) (jetstream.Stream, error) {
	stream, err := b.Stream(ctx, name)
	if err == nil {
		return stream, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, jetstream.ErrInvalidStreamName) {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	names, _ := b.StreamNames(ctx, "") // the list is a hint: what it got
	slices.Sort(names)
	list := strings.Join(names, ", ")
	if list == "" {
		list = "none"
	}
	return nil, fmt.Errorf("unknown stream %q (streams: %s)", name, list)
}

// ephemeralName gives this process's ordered consumers a recognisable,
// unique name prefix: two replays running at once must not share one.
func ephemeralName(kind string) string {
	return "kefu_" + kind + "_" + nats.NewInbox()[len(nats.InboxPrefix):]
}

// reader reads a stream through one ordered consumer.
type reader struct {
	st     jetstream.Stream
	stream string
	cons   jetstream.Consumer
	msgs   jetstream.MessagesContext
}

func openReader(ctx context.Context, stream jetstream.Stream, cfg jetstream.OrderedConsumerConfig) (*reader, error) {
	name := stream.CachedInfo().Config.Name
	cons, err := stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ordered consumer on %s: %w", name, err)
	}
	// Messages creates the consumer on the server; a filter the stream
	// does not capture fails here.
	msgs, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(pullBatch, pullBytes))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return &reader{st: stream, stream: name, cons: cons, msgs: msgs}, nil
}

// pendingAtStart is how many messages matched when the consumer was created.
func (r *reader) pendingAtStart() uint64 {
	if info := r.cons.CachedInfo(); info != nil {
		return info.NumPending
	}
	return 1 // unknown: read and let the sequences decide
}

func (r *reader) next(ctx context.Context) (jetstream.Msg, *jetstream.MsgMetadata, error) {
	msg, err := r.msgs.Next(jetstream.NextContext(ctx))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", r.stream, err)
	}
	meta, err := msg.Metadata()
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", r.stream, err)
	}
	return msg, meta, nil
}

// close stops reading and removes the consumer from the server at once
// rather than leaving it to the inactivity threshold.
func (r *reader) close() {
	r.msgs.Stop()
	info := r.cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	_ = r.st.DeleteConsumer(ctx, info.Name)
}
