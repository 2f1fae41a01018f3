package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/pkg/events"
)

var at = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func wechat(openid string, created time.Time) (events.Meta, events.WeChatSource) {
	return events.Meta{AppID: "wx2c2769f8efd9abc2", OccurredAt: created, ReceivedAt: created.Add(time.Second)},
		events.WeChatSource{OpenID: openid, ToUserName: "gh_10f6c3c3ac5a", CreateTime: created.Unix(), Raw: map[string]any{"FromUserName": openid}}
}

func created(openid, kf string, t time.Time) (events.Event, string) {
	meta, src := wechat(openid, t)
	return events.SessionCreated{Meta: meta, WeChatSource: src, KfAccount: kf},
		events.WeChatEventID(openid, t.Unix(), "kf_create_session", kf)
}

func switched(openid, from, to string, t time.Time) (events.Event, string) {
	meta, src := wechat(openid, t)
	return events.SessionSwitched{Meta: meta, WeChatSource: src, FromKfAccount: from, ToKfAccount: to},
		events.WeChatEventID(openid, t.Unix(), "kf_switch_session", from, to)
}

func closed(openid, kf string, t time.Time) (events.Event, string) {
	meta, src := wechat(openid, t)
	return events.SessionClosed{Meta: meta, WeChatSource: src, KfAccount: kf},
		events.WeChatEventID(openid, t.Unix(), "kf_close_session", kf)
}

// kefuBus is an embedded NATS server with the KEFU_WECHAT stream, as kefu's
// ingest creates it.
func kefuBus(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Connect(t, natstest.Run(t, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: events.StreamWeChat, Subjects: events.StreamSubjects[events.StreamWeChat], Duplicates: 2 * time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	return js
}

// publishRaw publishes a body with the contract's headers, as kefu does.
func publishRaw(t *testing.T, js jetstream.JetStream, subject, id string, body []byte) uint64 {
	t.Helper()
	msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	for k, v := range events.Headers(subject, id, "kefu/ingest/wx2c2769f8efd9abc2", at) {
		msg.Header[k] = []string{v}
	}
	ack, err := js.PublishMsg(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func publish(t *testing.T, js jetstream.JetStream, ev events.Event, id string) uint64 {
	t.Helper()
	body, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return publishRaw(t, js, ev.EventSubject(), id, body)
}

// syncBuffer is written by the consume loop while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) lines() []string {
	s := strings.TrimSuffix(b.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// running is one consume call in the background.
type running struct {
	out, errOut *syncBuffer
	cancel      context.CancelFunc
	done        chan error
}

func start(t *testing.T, js jetstream.JetStream, opts options) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{out: &syncBuffer{}, errOut: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- consume(ctx, js, opts, r.out, r.errOut) }()
	t.Cleanup(cancel)
	return r
}

// waitForLines waits until n lines were printed; the deadline only turns
// a hang into a failure.
func (r *running) waitForLines(t *testing.T, n int) []string {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() bool { return len(r.out.lines()) >= n },
		"%d lines, got %s", n, later(func() string {
			return fmt.Sprintf("%d:\n%s\nstderr:\n%s", len(r.out.lines()), r.out, r.errOut)
		}))
	return r.out.lines()
}

// stop cancels the loop and returns consume's error.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("consume did not return after its context was cancelled")
		return nil
	}
}

func consumerInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, events.StreamWeChat, name)
	if err != nil {
		t.Fatalf("the durable consumer must outlive the program: %v", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// waitSettled waits until the server has every delivered message settled.
func waitSettled(t *testing.T, js jetstream.JetStream, name string, seq uint64) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	natstest.Eventually(t, 10*time.Second, func() bool {
		info = consumerInfo(t, js, name)
		return info.NumAckPending == 0 && info.AckFloor.Stream >= seq
	}, "messages settled up to %d; last seen %s", seq, later(func() string {
		return fmt.Sprintf("ack pending %d, ack floor %d", info.NumAckPending, info.AckFloor.Stream)
	}))
	return info
}

// later formats as what its function returns when the message is written:
// a failure shows what was seen last, not what was there at the start.
type later func() string

func (f later) String() string { return f() }

func TestConsumePrintsOneLinePerSessionEvent(t *testing.T) {
	js := kefuBus(t)
	ev, id := created("o-1", "test1@test", at)
	publish(t, js, ev, id)
	msgBody, err := events.Encode(events.MessageReceived{MsgType: "text", MsgID: "6054768590064713728", Content: "你好"})
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, js, events.MessageSubject("text"), events.WeChatMessageID("6054768590064713728"), msgBody)
	ev, id = switched("o-1", "test1@test", "test2@test", at.Add(4*time.Minute))
	publish(t, js, ev, id)
	ev, id = closed("o-1", "test2@test", at.Add(9*time.Minute))
	last := publish(t, js, ev, id)

	r := start(t, js, options{Consumer: "example-sessions", Deliver: "all"})
	got := r.waitForLines(t, 3)
	if err := r.stop(t); err != nil {
		t.Fatalf("consume after cancel: %v", err)
	}
	want := []string{
		"2026-11-25T10:00:00Z created  openid=o-1 kf=test1@test id=wx-evt-o-1-1795600800-kf_create_session-test1@test",
		"2026-11-25T10:04:00Z switched openid=o-1 kf=test1@test->test2@test id=wx-evt-o-1-1795601040-kf_switch_session-test1@test-test2@test",
		"2026-11-25T10:09:00Z closed   openid=o-1 kf=test2@test id=wx-evt-o-1-1795601340-kf_close_session-test2@test",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("printed\n%s\nwant (the text message is outside the filter)\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	info := waitSettled(t, js, "example-sessions", last)
	if info.Config.FilterSubject != events.SubjectSessionAll || info.Config.AckPolicy != jetstream.AckExplicitPolicy {
		t.Errorf("consumer filter %q ack %v, want %q with explicit acks", info.Config.FilterSubject, info.Config.AckPolicy, events.SubjectSessionAll)
	}
	if info.NumPending != 0 || info.NumRedelivered != 0 {
		t.Errorf("pending %d, redelivered %d: every event must be acknowledged once", info.NumPending, info.NumRedelivered)
	}
}

func TestConsumeContinuesWhereThePreviousRunStopped(t *testing.T) {
	js := kefuBus(t)
	ev, id := created("o-2", "test1@test", at)
	publish(t, js, ev, id)
	opts := options{Consumer: "resume-test", Deliver: "all"}

	first := start(t, js, opts)
	first.waitForLines(t, 1)
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, js, opts.Consumer, 1)

	ev, id = closed("o-2", "test1@test", at.Add(time.Minute))
	publish(t, js, ev, id)
	second := start(t, js, opts)
	got := second.waitForLines(t, 1)
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !strings.Contains(got[0], "closed") {
		t.Errorf("the second run printed %q; it must print only the event published after the first run", got)
	}
}

func TestConsumeSettlesWhatItCannotPrint(t *testing.T) {
	js := kefuBus(t)
	publishRaw(t, js, events.SubjectSessionCreated, "bad-body", []byte(`{"openid":`))
	publishRaw(t, js, "kefu.wechat.kf.session.transferred", "future-subject", []byte(`{"openid":"o-3"}`))
	ev, id := closed("o-3", "test1@test", at)
	last := publish(t, js, ev, id)

	r := start(t, js, options{Consumer: "settle-test", Deliver: "all"})
	got := r.waitForLines(t, 1)
	info := waitSettled(t, js, "settle-test", last)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !strings.Contains(got[0], "closed") {
		t.Errorf("printed %q, want only the valid closed event", got)
	}
	if info.NumRedelivered != 0 {
		t.Errorf("%d messages redelivered: an undecodable body is terminated and an unknown subject acknowledged, never retried", info.NumRedelivered)
	}
	for _, want := range []string{"drop kefu.wechat.kf.session.created (bad-body)", "skip kefu.wechat.kf.session.transferred (future-subject)"} {
		if !strings.Contains(r.errOut.String(), want) {
			t.Errorf("stderr %q does not report %q", r.errOut, want)
		}
	}
}

func TestConsumeExplainsAMissingStream(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Run(t, nil))
	err := consume(context.Background(), js, options{Consumer: "x", Deliver: "all"}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, jetstream.ErrStreamNotFound) || !strings.Contains(err.Error(), "ingest creates it") {
		t.Errorf("got %v, want ErrStreamNotFound with a hint", err)
	}
}

func TestConsumerConfig(t *testing.T) {
	tests := []struct {
		name    string
		opts    options
		policy  jetstream.DeliverPolicy
		wantErr bool
	}{
		{"all starts at the oldest retained event", options{Consumer: "c", Deliver: "all"}, jetstream.DeliverAllPolicy, false},
		{"new starts with the next event", options{Consumer: "c", Deliver: "new"}, jetstream.DeliverNewPolicy, false},
		{"any other start is refused", options{Consumer: "c", Deliver: "yesterday"}, 0, true},
		{"a durable consumer needs a name", options{Deliver: "all"}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := consumerConfig(tt.opts)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %+v", cfg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.DeliverPolicy != tt.policy || cfg.Durable != tt.opts.Consumer || cfg.AckPolicy != jetstream.AckExplicitPolicy ||
				cfg.FilterSubject != events.SubjectSessionAll || cfg.MaxAckPending <= 0 {
				t.Errorf("config %+v", cfg)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	sc, _ := created("o-4", "a@test", at)
	ss, _ := switched("o-4", "a@test", "b@test", at)
	tests := []struct {
		name string
		ev   events.Event
		want string
	}{
		{"created names the serving agent", sc, "2026-11-25T10:00:00Z created  openid=o-4 kf=a@test id=ID"},
		{"switched names both agents in order", ss, "2026-11-25T10:00:00Z switched openid=o-4 kf=a@test->b@test id=ID"},
		{"times are printed in UTC", events.SessionClosed{Meta: events.Meta{OccurredAt: at.In(time.FixedZone("CST", 8*3600))}, WeChatSource: events.WeChatSource{OpenID: "o-4"}, KfAccount: "a@test"},
			"2026-11-25T10:00:00Z closed   openid=o-4 kf=a@test id=ID"},
		{"another event type is named by its type", events.QueueSnapshot{}, "events.QueueSnapshot id=ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describe(tt.ev, "ID"); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}
