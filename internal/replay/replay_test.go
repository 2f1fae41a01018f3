package replay_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/replay"
	"github.com/kefu-io/kefu/pkg/events"
)

func TestReplayPrintsExactlyTheSelectedEventsInOrder(t *testing.T) {
	b, _ := openBus(t)
	publishFixtures(t, b, wechatFixtures)
	stored := storedMessages(t, b, events.StreamWeChat)
	if len(stored) != len(wechatFixtures) {
		t.Fatalf("stream holds %d messages, want %d", len(stored), len(wechatFixtures))
	}
	// Stored times are what --since compares; expected sets come from them.
	sinceAt := stored[3].Time
	var sinceSeqs []uint64
	for _, m := range stored {
		if !m.Time.Before(sinceAt) {
			sinceSeqs = append(sinceSeqs, m.Sequence)
		}
	}
	tests := []struct {
		name string
		args []string
		want []uint64
	}{
		{"without a start every stored event is printed", []string{"--stream", "KEFU_WECHAT"}, []uint64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"a subject filter keeps only its subjects and ends before the stream's end", []string{"--stream", "KEFU_WECHAT", "--subject", "kefu.wechat.kf.>"}, []uint64{1, 3, 6}},
		{"repeated subject filters are combined", []string{"--stream", "KEFU_WECHAT", "--subject", "kefu.wechat.message.*", "--subject", "kefu.wechat.event.click"}, []uint64{2, 5, 7, 8}},
		{"--from-seq starts at that sequence", []string{"--stream", "KEFU_WECHAT", "--from-seq", "6"}, []uint64{6, 7, 8}},
		{"--from-seq with a filter starts at the first match from there", []string{"--stream", "KEFU_WECHAT", "--from-seq", "2", "--subject", "kefu.wechat.kf.>"}, []uint64{3, 6}},
		{"--since a time starts at the first event stored then", []string{"--stream", "KEFU_WECHAT", "--since", sinceAt.Format(time.RFC3339Nano)}, sinceSeqs},
		{"--since a duration counts back from now", []string{"--stream", "KEFU_WECHAT", "--since", "1h"}, []uint64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"--since after the last event prints nothing", []string{"--stream", "KEFU_WECHAT", "--since", time.Now().Add(time.Hour).Format(time.RFC3339)}, nil},
		{"--from-seq past the end prints nothing", []string{"--stream", "KEFU_WECHAT", "--from-seq", "99"}, nil},
		{"a filter nothing matches prints nothing", []string{"--stream", "KEFU_WECHAT", "--subject", "kefu.wechat.nothing.>"}, nil},
		{"--limit stops after that many events", []string{"--stream", "KEFU_WECHAT", "--limit", "2", "--subject", "kefu.wechat.message.>"}, []uint64{2, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := replay.Replay(ctx, tt.args, &stdout, &stderr, b); err != nil {
				t.Fatalf("replay: %v", err)
			}
			lines := parseLines(t, stdout.String())
			var got []uint64
			for _, l := range lines {
				got = append(got, l.Seq)
			}
			if !equalSeqs(got, tt.want) {
				t.Fatalf("printed sequences %v; want %v\n%s", got, tt.want, stdout.String())
			}
			for _, l := range lines {
				checkLine(t, l, events.StreamWeChat, stored[l.Seq-1])
			}
		})
	}
}

func TestReplayWithoutFollowEndsWhilePublishersKeepPublishing(t *testing.T) {
	b, _ := openBus(t)
	publishFixtures(t, b, wechatFixtures)
	stop := make(chan struct{})
	publisherDone := make(chan struct{})
	go func() {
		defer close(publisherDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			msg := &nats.Msg{Subject: "kefu.wechat.message.text", Data: []byte(`{"n":` + strconv.Itoa(i) + `}`)}
			if _, err := b.PublishMsg(context.Background(), msg); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-publisherDone }()
	natstest.Eventually(t, 10*time.Second, func() bool { return len(storedMessages(t, b, events.StreamWeChat)) > len(wechatFixtures) }, "the publisher to be running")

	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := replay.Replay(ctx, []string{"--stream", "KEFU_WECHAT"}, &stdout, &stderr, b); err != nil {
		t.Fatalf("replay did not end at the sequence it started with: %v", err)
	}
	lines := parseLines(t, stdout.String())
	if len(lines) <= len(wechatFixtures) {
		t.Fatalf("printed %d events; want all %d stored before the start and the publisher's first ones", len(lines), len(wechatFixtures))
	}
	for i, l := range lines {
		if l.Seq != uint64(i+1) {
			t.Fatalf("line %d has seq %d; want the sequences without a gap", i, l.Seq)
		}
	}
}

func TestReplayOfAnEmptyStreamEnds(t *testing.T) {
	b, _ := openBus(t)
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := replay.Replay(ctx, []string{"--stream", "KEFU_KF"}, &stdout, &stderr, b); err != nil {
		t.Fatal(err)
	}
	if stdout.Len() != 0 {
		t.Fatalf("printed %q for an empty stream", stdout.String())
	}
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReplayLeavesTheServicesDurableConsumersUntouched(t *testing.T) {
	b, srv := openBus(t)
	_, js := natstest.Connect(t, srv)
	ctx := context.Background()
	publishFixtures(t, b, wechatFixtures)
	// A service's durable consumer with some messages delivered, some acked.
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamWeChat, jetstream.ConsumerConfig{
		Durable: "notifier", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "kefu.wechat.>",
		AckWait: time.Minute, MaxAckPending: 64,
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(3, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for msg := range batch.Messages() {
		if n < 2 {
			if err := msg.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
		n++
	}
	if n != 3 {
		t.Fatalf("fetched %d messages, want 3", n)
	}
	before, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.AckFloor.Stream != 2 || before.Delivered.Stream != 3 {
		t.Fatalf("setup: ack floor %d, delivered %d; want 2, 3", before.AckFloor.Stream, before.Delivered.Stream)
	}

	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "TEAM_REPLAY", Subjects: []string{"team.>"}}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--stream", "KEFU_WECHAT"},
		{"--stream", "KEFU_WECHAT", "--subject", "kefu.wechat.kf.>", "--from-seq", "2"},
		{"--stream", "KEFU_WECHAT", "--republish", "team"},
	} {
		var stdout, stderr bytes.Buffer
		if err := replay.Replay(ctx, args, &stdout, &stderr, b); err != nil {
			t.Fatalf("replay %v: %v", args, err)
		}
	}

	after, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Delivered.Stream != before.Delivered.Stream || after.Delivered.Consumer != before.Delivered.Consumer ||
		after.AckFloor.Stream != before.AckFloor.Stream || after.AckFloor.Consumer != before.AckFloor.Consumer ||
		after.NumAckPending != before.NumAckPending || after.NumRedelivered != before.NumRedelivered ||
		after.NumPending != before.NumPending {
		t.Fatalf("durable consumer changed by replay:\nbefore delivered %+v ack floor %+v ack pending %d pending %d\nafter  delivered %+v ack floor %+v ack pending %d pending %d",
			before.Delivered, before.AckFloor, before.NumAckPending, before.NumPending,
			after.Delivered, after.AckFloor, after.NumAckPending, after.NumPending)
	}
	stream, err := b.Stream(ctx, events.StreamWeChat)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range stream.ConsumerNames(ctx).Name() {
		names = append(names, name)
	}
	if len(names) != 1 || names[0] != "notifier" {
		t.Fatalf("consumers on the stream after replay: %v; want only the service's durable notifier", names)
	}
}

func TestReplayRepublishesUnderThePrefix(t *testing.T) {
	b, srv := openBus(t)
	_, js := natstest.Connect(t, srv)
	ctx := context.Background()
	// The last one carries a JetStream publish directive that the stored
	// message keeps; applied to the copy it would fail it.
	closed := fixture{events.SubjectSessionClosed, `{"openid":"o3","kf_account":"bob@test"}`,
		ceHeader(events.SubjectSessionClosed, "wx-evt-o3-6-kf_close_session-bob@test", "Nats-Expected-Stream", events.StreamWeChat)}
	publishFixtures(t, b, append(wechatFixtures, closed))
	source := storedMessages(t, b, events.StreamWeChat)
	if source[8].Header.Get("Nats-Expected-Stream") == "" {
		t.Fatal("setup: the stored message lost its Nats-Expected-Stream header")
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "TEAM_REPLAY", Subjects: []string{"replay.>"}, Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	args := []string{"--stream", "KEFU_WECHAT", "--subject", "kefu.wechat.kf.>", "--republish", "replay"}
	for run := 1; run <= 2; run++ {
		var stdout, stderr bytes.Buffer
		if err := replay.Replay(ctx, args, &stdout, &stderr, b); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if stdout.Len() != 0 {
			t.Fatalf("run %d: republishing printed %q", run, stdout.String())
		}
		want := "4 stored, 0 dropped"
		if run == 2 {
			want = "0 stored, 4 dropped as duplicates"
		}
		if !strings.Contains(stderr.String(), want) {
			t.Fatalf("run %d: stderr %q; want it to say %q", run, stderr.String(), want)
		}
	}

	copies := storedMessages(t, b, "TEAM_REPLAY")
	wantSeqs := []uint64{1, 3, 6, 9}
	if len(copies) != len(wantSeqs) {
		t.Fatalf("TEAM_REPLAY holds %d messages after two runs within the duplicate window; want %d", len(copies), len(wantSeqs))
	}
	for i, c := range copies {
		orig := source[wantSeqs[i]-1]
		if c.Subject != "replay."+orig.Subject {
			t.Errorf("copy %d subject %q; want %q", i, c.Subject, "replay."+orig.Subject)
		}
		if !bytes.Equal(c.Data, orig.Data) {
			t.Errorf("copy %d body %q; want %q", i, c.Data, orig.Data)
		}
		if got, want := c.Header.Get("Nats-Msg-Id"), "replay-KEFU_WECHAT-"+strconv.FormatUint(orig.Sequence, 10); got != want {
			t.Errorf("copy %d Nats-Msg-Id %q; want %q", i, got, want)
		}
		if got, want := c.Header.Get(replay.HeaderReplayOf), orig.Header.Get("Nats-Msg-Id"); got != want || want == "" {
			t.Errorf("copy %d %s %q; want the original id %q", i, replay.HeaderReplayOf, got, want)
		}
		for k, vs := range orig.Header {
			if strings.HasPrefix(k, "Nats-") {
				if k != "Nats-Msg-Id" && c.Header.Get(k) != "" {
					t.Errorf("copy %d kept the publish directive %s", i, k)
				}
				continue
			}
			if got := c.Header.Values(k); strings.Join(got, "|") != strings.Join(vs, "|") {
				t.Errorf("copy %d header %s = %q; want %q", i, k, got, vs)
			}
		}
	}
}

func TestReplayRepublishesOnCoreNATSWhenNoStreamCapturesThePrefix(t *testing.T) {
	b, srv := openBus(t)
	publishFixtures(t, b, wechatFixtures)
	nc := natsConnect(t, srv.ClientURL())
	sub, err := nc.SubscribeSync("live.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := replay.Replay(context.Background(), []string{"--stream", "KEFU_WECHAT", "--republish", "live", "--from-seq", "7"}, &stdout, &stderr, b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "core NATS") {
		t.Fatalf("stderr %q; want a note that only live subscribers receive the events", stderr.String())
	}
	for _, want := range []string{"live.kefu.wechat.message.text", "live.kefu.wechat.event.click"} {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		if msg.Subject != want {
			t.Fatalf("received %s; want %s", msg.Subject, want)
		}
	}
	if msg, err := sub.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("received an extra message %s", msg.Subject)
	}
}

func natsConnect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestReplayFollowPrintsEventsPublishedAfterItStarted(t *testing.T) {
	b, _ := openBus(t)
	publishFixtures(t, b, wechatFixtures[:2])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- replay.Replay(ctx, []string{"--stream", "KEFU_WECHAT", "--follow"}, &stdout, &stderr, b)
	}()
	natstest.Eventually(t, 10*time.Second, func() bool { return strings.Count(stdout.String(), "\n") == 2 }, "the stored events")
	publishFixtures(t, b, wechatFixtures[2:3])
	natstest.Eventually(t, 10*time.Second, func() bool { return strings.Count(stdout.String(), "\n") == 3 }, "the new event")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("--follow ended by an interrupt returned %v; want success", err)
	}
	lines := parseLines(t, stdout.String())
	stored := storedMessages(t, b, events.StreamWeChat)
	for i, l := range lines {
		checkLine(t, l, events.StreamWeChat, stored[i])
	}
}

func TestReplayRejectsBadCommandLines(t *testing.T) {
	b, _ := openBus(t)
	publishFixtures(t, b, wechatFixtures[:1])
	tests := []struct {
		name  string
		args  []string
		usage bool
		says  []string
	}{
		{"an unknown stream is named with the streams there are", []string{"--stream", "KEFU_NOPE"}, false, []string{`unknown stream "KEFU_NOPE"`, "KEFU_KF, KEFU_WECHAT"}},
		{"a stream name with a dot is an unknown stream", []string{"--stream", "KEFU.WECHAT"}, false, []string{"unknown stream", "KEFU_KF, KEFU_WECHAT"}},
		{"--stream is required", []string{"--subject", "kefu.>"}, true, []string{"--stream"}},
		{"--since and --from-seq exclude each other", []string{"--stream", "KEFU_WECHAT", "--since", "2h", "--from-seq", "3"}, true, []string{"--since", "--from-seq"}},
		{"a bad --since duration names the flag", []string{"--stream", "KEFU_WECHAT", "--since", "2 hours"}, true, []string{"--since"}},
		{"a negative --since duration names the flag", []string{"--stream", "KEFU_WECHAT", "--since", "-2h"}, true, []string{"--since"}},
		{"a --since time without a zone names the flag", []string{"--stream", "KEFU_WECHAT", "--since", "2026-11-25T10:00:00"}, true, []string{"--since"}},
		{"--from-seq must be a positive sequence", []string{"--stream", "KEFU_WECHAT", "--from-seq", "0"}, true, []string{"--from-seq"}},
		{"--from-seq must be a number", []string{"--stream", "KEFU_WECHAT", "--from-seq", "abc"}, true, []string{"--from-seq"}},
		{"--limit must be positive", []string{"--stream", "KEFU_WECHAT", "--limit", "0"}, true, []string{"--limit"}},
		{"a malformed subject filter", []string{"--stream", "KEFU_WECHAT", "--subject", "kefu..wechat"}, true, []string{"subject"}},
		{"> is only the last token", []string{"--stream", "KEFU_WECHAT", "--subject", "kefu.>.x"}, true, []string{"subject"}},
		{"a prefix with a wildcard", []string{"--stream", "KEFU_WECHAT", "--republish", "team.*"}, true, []string{"--republish"}},
		{"a prefix the stream itself captures would loop", []string{"--stream", "KEFU_WECHAT", "--republish", "kefu.wechat"}, true, []string{"loop", "KEFU_WECHAT"}},
		{"a prefix above the stream's subjects would loop too", []string{"--stream", "KEFU_WECHAT", "--republish", "kefu"}, true, []string{"loop"}},
		{"an unknown flag", []string{"--stream", "KEFU_WECHAT", "--from", "3"}, true, []string{"-from"}},
		{"a stray argument", []string{"--stream", "KEFU_WECHAT", "extra"}, true, []string{`"extra"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := replay.Replay(context.Background(), tt.args, &stdout, &stderr, b)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, replay.ErrUsage) != tt.usage {
				t.Fatalf("%v: usage error %v; want %v", err, errors.Is(err, replay.ErrUsage), tt.usage)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			for _, s := range tt.says {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("error %q does not say %q", err, s)
				}
			}
			if stdout.Len() != 0 {
				t.Fatalf("printed %q on a failed command", stdout.String())
			}
		})
	}
	// The refused loop published nothing.
	if n := len(storedMessages(t, b, events.StreamWeChat)); n != 1 {
		t.Fatalf("KEFU_WECHAT holds %d messages after the refused republish; want 1", n)
	}
}

func TestHelpIsPrintedAndIsNotAnError(t *testing.T) {
	for _, run := range []struct {
		name string
		f    func(context.Context, []string, *bytes.Buffer, *bytes.Buffer) error
	}{
		{"replay", func(ctx context.Context, a []string, o, e *bytes.Buffer) error {
			return replay.Replay(ctx, a, o, e, nil)
		}},
		{"tail", func(ctx context.Context, a []string, o, e *bytes.Buffer) error { return replay.Tail(ctx, a, o, e, nil) }},
	} {
		t.Run(run.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run.f(context.Background(), []string{"-h"}, &stdout, &stderr)
			if !errors.Is(err, flag.ErrHelp) || errors.Is(err, replay.ErrUsage) {
				t.Fatalf("-h returned %v; want flag.ErrHelp", err)
			}
			if !strings.Contains(stdout.String(), "kefu replay --stream") || !strings.Contains(stdout.String(), "kefu events tail") {
				t.Fatalf("help on stdout is %q", stdout.String())
			}
		})
	}
}
