package replay_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/replay"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/nats-io/nats.go"
)

func sessionCreated(openid, kf string) events.SessionCreated {
	return events.SessionCreated{
		Meta:         events.Meta{AppID: "wx1", OccurredAt: time.Unix(1764064800, 0), ReceivedAt: time.Now()},
		WeChatSource: events.WeChatSource{OpenID: openid, CreateTime: 1764064800},
		KfAccount:    kf,
	}
}

func publishEvent(t *testing.T, b *bus.Bus, ev events.Event, id string) {
	t.Helper()
	if _, err := b.Publish(context.Background(), ev, bus.Envelope{ID: id, Source: "kefu/test"}); err != nil {
		t.Fatal(err)
	}
}

func TestTailWithoutStreamShowsEveryNewMessageOnCoreNATS(t *testing.T) {
	b, srv := openBus(t)
	publishEvent(t, b, sessionCreated("o-before", "alice@test"), "before")
	subs := srv.NumSubscriptions()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- replay.Tail(ctx, nil, &stdout, &stderr, b) }()
	natstest.Eventually(t, 10*time.Second, func() bool { return srv.NumSubscriptions() > subs }, "tail's subscription")

	publishEvent(t, b, sessionCreated("o9", "alice@test"), "after")
	// A subject no stream stores still reaches a core subscriber.
	if err := b.PublishCore(&nats.Msg{Subject: "kefu.custom.ping", Data: []byte("xyz")}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool { return strings.Count(stdout.String(), "\n") == 2 }, "two lines")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("tail ended by an interrupt returned %v; want success", err)
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	wantEnds := []string{
		" kefu.wechat.kf.session.created  openid=o9 kf=alice@test",
		" kefu.custom.ping  3 bytes",
	}
	for i, want := range wantEnds {
		if !strings.HasSuffix(lines[i], want) {
			t.Errorf("line %d = %q; want it to end with %q", i, lines[i], want)
		}
		stamp, _, _ := strings.Cut(lines[i], " ")
		if _, err := time.Parse("2006-01-02T15:04:05.000Z07:00", stamp); err != nil {
			t.Errorf("line %d does not start with a time: %q", i, lines[i])
		}
	}
	if strings.Contains(stdout.String(), "o-before") {
		t.Error("tail showed an event published before it started")
	}
}

func TestTailOfAStreamPrintsNewStoredEventsAsJSON(t *testing.T) {
	b, _ := openBus(t)
	publishFixtures(t, b, wechatFixtures[:1]) // seq 1, before tail: not shown
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	args := []string{"--stream", "KEFU_WECHAT", "--subject", "kefu.wechat.kf.>", "--json"}
	go func() { done <- replay.Tail(ctx, args, &stdout, &stderr, b) }()
	natstest.Eventually(t, 10*time.Second, func() bool { return consumerCount(t, b, events.StreamWeChat) == 1 }, "tail's consumer")

	publishFixtures(t, b, wechatFixtures[1:3]) // seq 2 message.text (filtered out), seq 3 session.switched
	natstest.Eventually(t, 10*time.Second, func() bool { return strings.Count(stdout.String(), "\n") == 1 }, "one line")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("tail ended by an interrupt returned %v; want success", err)
	}
	lines := parseLines(t, stdout.String())
	if len(lines) != 1 || lines[0].Seq != 3 {
		t.Fatalf("printed %v; want only the new session.switched event (seq 3)", stdout.String())
	}
	checkLine(t, lines[0], events.StreamWeChat, storedMessages(t, b, events.StreamWeChat)[2])
	if n := consumerCount(t, b, events.StreamWeChat); n != 0 {
		t.Fatalf("%d consumers left on the stream after tail ended; want 0", n)
	}
}

func TestTailRejectsBadCommandLines(t *testing.T) {
	b, _ := openBus(t)
	tests := []struct {
		name  string
		args  []string
		usage bool
		says  string
	}{
		{"an unknown stream is named with the streams there are", []string{"--stream", "NOPE"}, false, "KEFU_KF, KEFU_WECHAT"},
		{"a malformed subject", []string{"--subject", "kefu."}, true, "subject"},
		{"a stray argument", []string{"now"}, true, `"now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			err := replay.Tail(context.Background(), tt.args, &stdout, &stderr, b)
			if err == nil || errors.Is(err, replay.ErrUsage) != tt.usage || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("got %v; want an error saying %q (usage %v)", err, tt.says, tt.usage)
			}
		})
	}
}
