package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/pkg/events"
)

// DefaultTailSubject is what `kefu events tail` watches without --subject.
const DefaultTailSubject = "kefu.>"

// Tail runs `kefu events tail` (args are the words after "tail") until ctx
// ends, which is success. Command-line mistakes wrap [ErrUsage]; -h prints
// the help on stdout and returns flag.ErrHelp.
func Tail(ctx context.Context, args []string, stdout, stderr io.Writer, b *bus.Bus) error {
	o, err := parseTail(args, stdout)
	if err != nil {
		return err
	}
	out := newPrinter(stdout, !o.json)
	if o.stream != "" {
		err = tailStream(ctx, o, out, stderr, b)
	} else {
		err = tailCore(ctx, o, out, stderr, b)
	}
	if ferr := out.finish(); err == nil {
		err = ferr
	}
	return err
}

// tailStream shows what a stream stores from now on, through an ordered
// consumer that delivers new messages only.
func tailStream(ctx context.Context, o tailOptions, out sink, stderr io.Writer, b *bus.Bus) error {
	stream, err := lookupStream(ctx, b, o.stream)
	if err != nil {
		return err
	}
	rd, err := openReader(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: o.subjects,
		NamePrefix:     ephemeralName("tail"),
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return err
	}
	defer rd.close()
	what := o.stream
	if len(o.subjects) > 0 {
		what += " " + strings.Join(o.subjects, " ")
	}
	fmt.Fprintf(stderr, "kefu events tail: new events of %s; Ctrl-C to stop\n", what)
	_, err = copyEvents(ctx, rd, replayOptions{stream: o.stream, follow: true}, 0, out)
	return err
}

// tailCore subscribes on core NATS: it sees every message on the
// subjects, stored by a stream or not.
func tailCore(ctx context.Context, o tailOptions, out sink, stderr io.Writer, b *bus.Bus) error {
	subjects := o.subjects
	if len(subjects) == 0 {
		subjects = []string{DefaultTailSubject}
	}
	ch := make(chan *nats.Msg, pullBatch)
	// Once the server has the subscriptions, nothing published later is missed.
	fctx, cancel := context.WithTimeout(ctx, requestTimeout)
	stop, err := b.Listen(fctx, subjects, func(m *nats.Msg) {
		select {
		case ch <- m:
		default: // as a channel subscription: a reader this far behind drops
		}
	})
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer stop()
	fmt.Fprintf(stderr, "kefu events tail: new events on %s; Ctrl-C to stop\n", strings.Join(subjects, " "))
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-ch:
			rec := record{Subject: msg.Subject, Time: time.Now(), Header: msg.Header, Data: msg.Data}
			if err := out.put(&rec, len(ch) == 0); err != nil {
				return err
			}
		}
	}
}

// appendHuman appends one line for a person: local time, subject and a
// summary of the event.
func appendHuman(dst []byte, r *record) []byte {
	dst = r.Time.Local().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	dst = append(dst, ' ')
	if r.Stream != "" {
		dst = append(dst, '#')
		dst = strconv.AppendUint(dst, r.Seq, 10)
		dst = append(dst, ' ')
	}
	dst = append(dst, r.Subject...)
	dst = append(dst, ' ', ' ')
	dst = append(dst, summary(r)...)
	return append(dst, '\n')
}

// summary says in a few words what an event is about.
func summary(r *record) string {
	ev, err := events.DecodeSubject(r.Subject, r.Data)
	if err != nil {
		s := strconv.Itoa(len(r.Data)) + " bytes"
		if t := r.Header.Get(events.HeaderType); t != "" {
			s = "type=" + t + " " + s
		}
		if !errors.Is(err, events.ErrUnknownSubject) {
			s = "undecodable body, " + s
		}
		return s
	}
	switch e := ev.(type) {
	case events.SessionCreated:
		return "openid=" + e.OpenID + " kf=" + e.KfAccount
	case events.SessionSwitched:
		return "openid=" + e.OpenID + " from=" + e.FromKfAccount + " to=" + e.ToKfAccount
	case events.SessionClosed:
		return "openid=" + e.OpenID + " kf=" + e.KfAccount
	case events.MessageReceived:
		s := "openid=" + e.OpenID + " msg_id=" + e.MsgID
		switch {
		case e.Content != "":
			s += " content=" + quoteShort(e.Content)
		case e.Title != "":
			s += " title=" + quoteShort(e.Title)
		case e.Recognition != "":
			s += " recognition=" + quoteShort(e.Recognition)
		}
		return s
	case events.EventReceived:
		s := "openid=" + e.OpenID + " event=" + e.Event
		if e.EventKey != "" {
			s += " key=" + quoteShort(e.EventKey)
		}
		return s
	case events.QueueSnapshot:
		return fmt.Sprintf("waiting=%d agents=%d", e.WaitingCount, len(e.Agents))
	case events.WaitEstimated:
		return fmt.Sprintf("openid=%s position=%d wait=%ds p90=%ds model=%s", e.OpenID, e.Position, e.WaitSeconds, e.WaitP90Seconds, e.Model)
	case events.SessionAbandoned:
		return fmt.Sprintf("openid=%s waited=%ds reason=%s", e.OpenID, e.WaitedSeconds, e.Reason)
	case events.FeedbackPost:
		return fmt.Sprintf("post=%s openid=%s replies=%d content=%s", e.ID, e.OpenID, e.ReplyCount, quoteShort(e.Content))
	case events.Notification:
		s := "openid=" + e.OpenID + " kind=" + e.Kind + " outcome=" + e.Outcome
		if e.ErrCode != 0 {
			s += " errcode=" + strconv.Itoa(e.ErrCode)
		}
		return s
	}
	return strconv.Itoa(len(r.Data)) + " bytes"
}

// quoteShort quotes free text cut to a line's worth, so a customer's
// message can neither flood the terminal nor break the line.
func quoteShort(s string) string {
	const max = 60
	if utf8.RuneCountInString(s) > max {
		runes := []rune(s)
		s = string(runes[:max]) + "…"
	}
	return strconv.Quote(s)
}
