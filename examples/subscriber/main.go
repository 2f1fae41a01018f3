// Command subscriber shows another team how to read kefu's events: it
// creates its own durable pull consumer on the KEFU_WECHAT stream, filtered
// to the 多客服 session events (kefu.wechat.kf.session.>), decodes each
// message with pkg/events and prints one line per event, acknowledging
// each one explicitly. Stop it with Ctrl-C; the consumer stays on the
// server and the next run continues where this one stopped.
//
//	go run ./examples/subscriber -nats-url nats://127.0.0.1:4222 -consumer myteam-sessions
//
// Output, one line per event:
//
//	2026-11-25T10:00:00Z created  openid=oyORnuP8q7ou2gfYjqLzSIWZf0rs kf=test1@test id=wx-evt-…
//	2026-11-25T10:04:10Z switched openid=oyORnuP8q7ou2gfYjqLzSIWZf0rs kf=test1@test->test2@test id=wx-evt-…
//	2026-11-25T10:09:30Z closed   openid=oyORnuP8q7ou2gfYjqLzSIWZf0rs kf=test2@test id=wx-evt-…
//
// The event contract is described in docs/events.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/pkg/events"
)

// options are the command-line settings.
type options struct {
	// URL of the NATS server kefu publishes to.
	URL string
	// Consumer is the durable consumer's name. Pick one per team and
	// purpose; two programs with the same name share (split) the messages.
	Consumer string
	// Deliver is where a new consumer starts: "all" (the oldest retained
	// event) or "new" (only events published from now on). JetStream
	// cannot change this for an existing consumer.
	Deliver string
}

func main() {
	opts := options{}
	flag.StringVar(&opts.URL, "nats-url", envOr("NATS_URL", nats.DefaultURL), "NATS server URL (env NATS_URL)")
	flag.StringVar(&opts.Consumer, "consumer", "example-sessions", "name of your durable consumer on KEFU_WECHAT")
	flag.StringVar(&opts.Deliver, "deliver", "all", `where a new consumer starts: "all" or "new"`)
	flag.Parse()

	// SIGINT/SIGTERM cancel ctx; the consume loop then returns and the
	// message being printed has been acknowledged or will be redelivered.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "subscriber:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, opts options, out, errOut io.Writer) error {
	nc, err := nats.Connect(opts.URL, nats.Name("kefu-example-subscriber"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect %s: %w", opts.URL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return consume(ctx, js, opts, out, errOut)
}

// consumerConfig is the durable consumer this example creates: explicit
// acks, a bounded number of messages in flight, and an ack wait longer
// than it takes to handle one message.
func consumerConfig(opts options) (jetstream.ConsumerConfig, error) {
	var policy jetstream.DeliverPolicy
	switch opts.Deliver {
	case "all", "":
		policy = jetstream.DeliverAllPolicy
	case "new":
		policy = jetstream.DeliverNewPolicy
	default:
		return jetstream.ConsumerConfig{}, fmt.Errorf("deliver %q: want all or new", opts.Deliver)
	}
	if opts.Consumer == "" {
		return jetstream.ConsumerConfig{}, errors.New("a consumer name is required")
	}
	return jetstream.ConsumerConfig{
		Durable:       opts.Consumer,
		Description:   "kefu example subscriber: 多客服 session events",
		FilterSubject: events.SubjectSessionAll,
		DeliverPolicy: policy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    5,
		MaxAckPending: 64,
	}, nil
}

// consume creates (or updates) the durable consumer and prints the session
// events until ctx ends. The consumer is never deleted: it is the
// bookmark that lets the next run continue where this one stopped.
func consume(ctx context.Context, js jetstream.JetStream, opts options, out, errOut io.Writer) error {
	cfg, err := consumerConfig(opts)
	if err != nil {
		return err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamWeChat, cfg)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("create consumer %s: stream %s does not exist yet; kefu's ingest creates it when it starts: %w",
			cfg.Durable, events.StreamWeChat, err)
	}
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", cfg.Durable, err)
	}
	// A missed heartbeat (a server restart, a network blip) must not end
	// the loop: the iterator re-issues its pull requests by itself.
	msgs, err := cons.Messages(jetstream.WithMessagesErrOnMissingHeartbeat(false))
	if err != nil {
		return fmt.Errorf("consume %s: %w", cfg.Durable, err)
	}
	defer msgs.Stop()
	for {
		msg, err := msgs.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("next message of %s: %w", cfg.Durable, err)
		}
		handle(msg, out, errOut)
	}
}

// handle prints one event and settles the message: Ack when done (or when
// the subject is unknown), Term when the body cannot be decoded, because
// redelivering it would fail the same way each time.
func handle(msg jetstream.Msg, out, errOut io.Writer) {
	id := msg.Headers().Get(events.HeaderID)
	ev, err := events.DecodeSubject(msg.Subject(), msg.Data())
	switch {
	case errors.Is(err, events.ErrUnknownSubject):
		// A newer kefu may publish a session subject this build does not
		// know yet; skipping it keeps the consumer moving.
		fmt.Fprintf(errOut, "skip %s (%s): unknown subject\n", msg.Subject(), id)
		settle(msg.Ack(), msg, errOut)
	case err != nil:
		fmt.Fprintf(errOut, "drop %s (%s): %v\n", msg.Subject(), id, err)
		settle(msg.Term(), msg, errOut)
	default:
		fmt.Fprintln(out, describe(ev, id))
		settle(msg.Ack(), msg, errOut)
	}
}

// settle reports a failed acknowledgement. The message then comes back
// after the ack wait, so a real consumer must be idempotent by ce-id.
func settle(err error, msg jetstream.Msg, errOut io.Writer) {
	if err != nil {
		fmt.Fprintf(errOut, "acknowledge %s: %v\n", msg.Subject(), err)
	}
}

// describe renders a session event as one line: the time it happened,
// what happened, the customer, the agent(s) and the event's id (ce-id).
// openid is personal data; a real consumer should not log it in clear.
func describe(ev events.Event, id string) string {
	switch ev := ev.(type) {
	case events.SessionCreated:
		return line(ev.OccurredAt, "created ", ev.OpenID, ev.KfAccount, id)
	case events.SessionSwitched:
		return line(ev.OccurredAt, "switched", ev.OpenID, ev.FromKfAccount+"->"+ev.ToKfAccount, id)
	case events.SessionClosed:
		return line(ev.OccurredAt, "closed  ", ev.OpenID, ev.KfAccount, id)
	}
	return fmt.Sprintf("%T id=%s", ev, id)
}

func line(at time.Time, what, openid, kf, id string) string {
	return fmt.Sprintf("%s %s openid=%s kf=%s id=%s", at.UTC().Format(time.RFC3339), what, openid, kf, id)
}
