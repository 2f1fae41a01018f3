package sendonce_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/internal/sendonce"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// sender records the messages it is asked to send and answers with the
// errors queued in errs (nil once they run out).
type sender struct {
	mu    sync.Mutex
	sent  []string // openid: text
	errs  []error
	delay time.Duration
}

func (s *sender) SendText(_ context.Context, openid, content, _ string) error {
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, openid+": "+content)
	if len(s.errs) > 0 {
		err := s.errs[0]
		s.errs = s.errs[1:]
		return err
	}
	return nil
}

func (s *sender) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
}

// rig is one NATS server; each process opens its own bus on it.
type rig struct {
	t   *testing.T
	srv *server.Server
	js  jetstream.JetStream // the test's own view of the streams
	kv  jetstream.KeyValue
}

func newRig(t *testing.T) *rig {
	t.Helper()
	srv := natstest.Run(t, nil)
	_, js := natstest.Connect(t, srv)
	r := &rig{t: t, srv: srv, js: js}
	b := r.open()
	kv, err := b.KeyValue(context.Background(), bus.BucketNotified)
	if err != nil {
		t.Fatal(err)
	}
	r.kv = kv
	return r
}

func (r *rig) open() *bus.Bus {
	r.t.Helper()
	b, _ := bustest.Open(r.t, bustest.Server(r.srv), bustest.Streams(events.StreamNotify))
	return b
}

// process is a ledger on a connection of its own, as another kefu process
// has; kv, when not nil, stands between it and the bucket.
func (r *rig) process(owner string, s sendonce.Sender, now func() time.Time, kv func(jetstream.KeyValue) jetstream.KeyValue) *sendonce.Ledger {
	r.t.Helper()
	b := r.open()
	bucket, err := b.KeyValue(context.Background(), bus.BucketNotified)
	if err != nil {
		r.t.Fatal(err)
	}
	if kv != nil {
		bucket = kv(bucket)
	}
	l, err := sendonce.New(sendonce.Config{Bus: b, KV: bucket, Sender: s, Source: "kefu/test", Owner: owner, Now: now,
		RecordTimeout: 2 * time.Second, StaleAfter: time.Minute})
	if err != nil {
		r.t.Fatal(err)
	}
	return l
}

func (r *rig) record(key string) (sendonce.Record, bool) {
	r.t.Helper()
	e, err := r.kv.Get(context.Background(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return sendonce.Record{}, false
	}
	if err != nil {
		r.t.Fatal(err)
	}
	rec, err := sendonce.Decode(e.Value())
	if err != nil {
		r.t.Fatal(err)
	}
	return rec, true
}

// outcomes are the outcome events on KEFU_NOTIFY.
func (r *rig) outcomes() []events.Notification {
	r.t.Helper()
	ctx := context.Background()
	stream, err := r.js.Stream(ctx, events.StreamNotify)
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []events.Notification
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			r.t.Fatal(err)
		}
		if m.Header.Get(events.HeaderMsgID) == "" {
			r.t.Fatalf("outcome %d without Nats-Msg-Id", seq)
		}
		n, err := events.Decode[events.Notification](m.Data)
		if err != nil {
			r.t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func message(cause, text string) sendonce.Message {
	return sendonce.Message{Key: "test." + cause, Kind: events.NotifyLeftQueue, Cause: cause, AppID: "wx1", OpenID: "o-1",
		Content: sendonce.Content{Text: text}}
}

// Two processes, each with deliveries of the same message in parallel:
// the customer gets it once, one outcome event is published, and every
// other delivery either waits (an error: try later) or finds it done.
func TestClaimRaceBetweenTwoProcessesSendsOnce(t *testing.T) {
	r := newRig(t)
	s := &sender{delay: 20 * time.Millisecond}
	ledgers := []*sendonce.Ledger{r.process("p1", s, nil, nil), r.process("p2", s, nil, nil)}
	const tries = 8
	var wg sync.WaitGroup
	var sent, waiting, duplicate atomic.Int32
	for i := range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := ledgers[i%2].Send(context.Background(), message("race", "你好"))
			switch {
			case errors.Is(err, sendonce.ErrInFlight), errors.Is(err, sendonce.ErrClaimed):
				waiting.Add(1)
			case err != nil:
				t.Errorf("Send: %v", err)
			case res.Outcome == events.OutcomeSent:
				sent.Add(1)
			case res.Outcome == sendonce.OutcomeDuplicate:
				duplicate.Add(1)
			default:
				t.Errorf("outcome %q", res.Outcome)
			}
		}()
	}
	wg.Wait()
	if s.calls() != 1 || sent.Load() != 1 || waiting.Load()+duplicate.Load() != tries-1 {
		t.Fatalf("%d sends, %d sent, %d waiting, %d duplicate; want one send", s.calls(), sent.Load(), waiting.Load(), duplicate.Load())
	}
	for _, l := range ledgers {
		if res, err := l.Send(context.Background(), message("race", "你好")); err != nil || res.Outcome != sendonce.OutcomeDuplicate {
			t.Fatalf("after the race: %+v, %v; want duplicate", res, err)
		}
	}
	if o := r.outcomes(); len(o) != 1 || o[0].Outcome != events.OutcomeSent || o[0].Text != "你好" {
		t.Fatalf("outcomes %+v, want one sent", o)
	}
	if rec, _ := r.record("test.race"); rec.State != sendonce.StateSent || rec.Seq != 1 {
		t.Fatalf("record %+v, want sent with the outcome's sequence", rec)
	}
}

// A claim left by a process that died between claim and record is not
// sent again: while it may be alive the delivery waits; once the claim is
// stale the message is recorded as failed, outcome unknown.
func TestCrashBetweenClaimAndRecordIsNeverResent(t *testing.T) {
	r := newRig(t)
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	marker, err := sendonce.Encode(sendonce.Record{State: sendonce.StateSending, Cause: "crash", Kind: events.NotifyLeftQueue,
		Owner: "dead", At: now.Add(-30 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.kv.Create(context.Background(), "test.crash", marker); err != nil {
		t.Fatal(err)
	}
	s := &sender{}
	l := r.process("survivor", s, clock, nil)

	if _, err := l.Send(context.Background(), message("crash", "你好")); !errors.Is(err, sendonce.ErrClaimed) {
		t.Fatalf("a fresh claim: %v, want ErrClaimed", err)
	}
	now = now.Add(time.Minute)
	res, err := l.Send(context.Background(), message("crash", "你好"))
	if err != nil || res.Outcome != events.OutcomeFailed {
		t.Fatalf("a stale claim: %+v, %v; want failed", res, err)
	}
	if s.calls() != 0 {
		t.Fatalf("sent %d times, want never", s.calls())
	}
	if rec, _ := r.record("test.crash"); rec.State != sendonce.StateFailed || rec.ErrMsg != sendonce.CrashedErrMsg || rec.Owner != "survivor" {
		t.Fatalf("record %+v", rec)
	}
	if o := r.outcomes(); len(o) != 1 || o[0].Outcome != events.OutcomeFailed || o[0].ErrMsg != sendonce.CrashedErrMsg {
		t.Fatalf("outcomes %+v", o)
	}
}

// A process that died after publishing the outcome but before recording
// it had sent the message: the recovery records what it published.
func TestCrashAfterPublishingRecordsThePublishedOutcome(t *testing.T) {
	r := newRig(t)
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	marker, _ := sendonce.Encode(sendonce.Record{State: sendonce.StateSending, Cause: "crash", Kind: events.NotifyLeftQueue,
		Owner: "dead", At: now.Add(-time.Hour)})
	if _, err := r.kv.Create(context.Background(), "test.crash", marker); err != nil {
		t.Fatal(err)
	}
	b := r.open()
	published := events.Notification{Meta: events.Meta{AppID: "wx1", OccurredAt: now}, OpenID: "o-1", Kind: events.NotifyLeftQueue,
		CauseEventID: "crash", Outcome: events.OutcomeSent, Text: "你好"}
	if _, err := b.Publish(context.Background(), published, bus.Envelope{ID: sendonce.OutcomeID("crash"), Source: "kefu/test"}); err != nil {
		t.Fatal(err)
	}
	s := &sender{}
	l := r.process("survivor", s, func() time.Time { return now }, nil)
	res, err := l.Send(context.Background(), message("crash", "你好"))
	if err != nil || res.Outcome != events.OutcomeSent || s.calls() != 0 {
		t.Fatalf("%+v, %v, %d sends; want sent, not sent again", res, err, s.calls())
	}
	if rec, _ := r.record("test.crash"); rec.State != sendonce.StateSent || rec.Seq != 1 {
		t.Fatalf("record %+v, want the published outcome", rec)
	}
	if o := r.outcomes(); len(o) != 1 {
		t.Fatalf("outcomes %+v, want the dead process's only", o)
	}
}

// Each class of wechat.Classify: what is recorded, what is published,
// and whether the next delivery sends again.
func TestErrorClasses(t *testing.T) {
	dial := &url.Error{Op: "Post", URL: "https://api.weixin.qq.com", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}
	api := func(code int, msg string) error {
		return fmt.Errorf("send: %w", &wechat.APIError{Method: "custom_send", ErrCode: code, ErrMsg: msg})
	}
	tests := []struct {
		name        string
		err         error
		retried     bool // nothing recorded, the next Send sends
		state       string
		code        int
		errmsg      string // prefix
		unknownSent bool
	}{
		{name: "accepted", state: sendonce.StateSent},
		{name: "dial refused", err: dial, retried: true},
		{name: "not sent by the client", err: &wechat.NotSentError{Err: errors.New("access token: nats: timeout")}, retried: true},
		{name: "HTTP 429", err: &wechat.HTTPStatusError{Method: "custom_send", StatusCode: 429}, retried: true},
		{name: "-1 system busy", err: api(-1, "system error"), retried: true},
		{name: "45011 frequency limit", err: api(45011, "api freq out of limit"), retried: true},
		{name: "40001 token rejected", err: api(40001, "invalid credential"), retried: true},
		{name: "timeout after the request", err: fmt.Errorf("send: %w", context.DeadlineExceeded), state: sendonce.StateFailed,
			errmsg: "unknown outcome: " + wechat.UnknownTimeout + ": "},
		{name: "gateway 502", err: &wechat.HTTPStatusError{Method: "custom_send", StatusCode: 502}, state: sendonce.StateFailed,
			errmsg: "unknown outcome: " + wechat.UnknownHTTPStatus + ": "},
		{name: "45015 refused", err: api(45015, " response out of time limit rid: 1 "), state: sendonce.StateFailed,
			code: 45015, errmsg: "response out of time limit rid: 1"},
		{name: "invalid request refused", err: wechat.ErrInvalidRequest, state: sendonce.StateFailed, errmsg: wechat.ErrInvalidRequest.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			s := &sender{errs: []error{tt.err}}
			var hooked []string
			l, err := sendonce.New(sendonce.Config{Bus: r.open(), KV: r.kv, Sender: s, Source: "kefu/test", Owner: "p1",
				StaleAfter: time.Minute, Sent: func(m *sendonce.Message, _ time.Time) { hooked = append(hooked, m.Cause) }})
			if err != nil {
				t.Fatal(err)
			}
			res, err := l.Send(context.Background(), message("c1", "你好"))
			if tt.retried {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Send: %+v, %v; want the error to retry", res, err)
				}
				if rec, ok := r.record("test.c1"); ok {
					t.Fatalf("record %+v left; want the claim given back", rec)
				}
				if o := r.outcomes(); len(o) != 0 {
					t.Fatalf("outcomes %+v, want none", o)
				}
				res, err = l.Send(context.Background(), message("c1", "你好"))
				if err != nil || res.Outcome != events.OutcomeSent || s.calls() != 2 || len(hooked) != 1 {
					t.Fatalf("the retry: %+v, %v after %d sends; want sent", res, err, s.calls())
				}
				return
			}
			if err != nil || res.Outcome != tt.state {
				t.Fatalf("Send: %+v, %v; want %s", res, err, tt.state)
			}
			rec, _ := r.record("test.c1")
			o := r.outcomes()
			if rec.State != tt.state || rec.ErrCode != tt.code || !strings.HasPrefix(rec.ErrMsg, tt.errmsg) {
				t.Fatalf("record %+v, want %s %d %q", rec, tt.state, tt.code, tt.errmsg)
			}
			if len(o) != 1 || o[0].Outcome != tt.state || o[0].ErrCode != tt.code || o[0].ErrMsg != rec.ErrMsg || o[0].CauseEventID != "c1" {
				t.Fatalf("outcomes %+v", o)
			}
			if (tt.state == sendonce.StateSent) != (len(hooked) == 1) {
				t.Fatalf("Sent hook called for %v", hooked)
			}
			if res, err := l.Send(context.Background(), message("c1", "你好")); err != nil || res.Outcome != sendonce.OutcomeDuplicate || s.calls() != 1 {
				t.Fatalf("again: %+v, %v after %d sends; want duplicate", res, err, s.calls())
			}
		})
	}
}

// Prepare runs under the claim: a skip is recorded and nothing sent, an
// error gives the claim back, and Release undoes a reservation of a
// message that was certainly not sent.
func TestPrepare(t *testing.T) {
	r := newRig(t)
	s := &sender{errs: []error{&wechat.HTTPStatusError{Method: "custom_send", StatusCode: 429}}}
	l := r.process("p1", s, nil, nil)

	m := message("skip", "")
	m.Prepare = func(context.Context) (sendonce.Content, error) { return sendonce.Content{Skip: "too_soon"}, nil }
	if res, err := l.Send(context.Background(), m); err != nil || res.Outcome != sendonce.StateSkipped || res.Reason != "too_soon" {
		t.Fatalf("skip: %+v, %v", res, err)
	}
	if rec, _ := r.record(m.Key); rec.State != sendonce.StateSkipped || rec.ErrMsg != "too_soon" {
		t.Fatalf("skip record %+v", rec)
	}

	m = message("fail", "")
	errRender := errors.New("customer record unreadable")
	m.Prepare = func(context.Context) (sendonce.Content, error) { return sendonce.Content{}, errRender }
	if _, err := l.Send(context.Background(), m); !errors.Is(err, errRender) {
		t.Fatalf("prepare error: %v", err)
	}
	if rec, ok := r.record(m.Key); ok {
		t.Fatalf("record %+v after a prepare error; want the claim given back", rec)
	}

	m = message("release", "")
	var released atomic.Int32
	m.Prepare = func(context.Context) (sendonce.Content, error) {
		return sendonce.Content{Text: "您前面还有 1 位", Release: func(context.Context) { released.Add(1) }}, nil
	}
	if _, err := l.Send(context.Background(), m); err == nil || released.Load() != 1 {
		t.Fatalf("429: %v, released %d times; want an error and one release", err, released.Load())
	}
	if res, err := l.Send(context.Background(), m); err != nil || res.Outcome != events.OutcomeSent || released.Load() != 1 {
		t.Fatalf("retry: %+v, %v, released %d", res, err, released.Load())
	}
	if n := s.calls(); n != 2 {
		t.Fatalf("%d sends, want the refused one and the retry", n)
	}
}

// faultyKV fails the next deletes or updates, as during a NATS blip.
type faultyKV struct {
	jetstream.KeyValue
	deletes, updates atomic.Int32
}

var errBlip = errors.New("nats: timeout")

func (k *faultyKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	if k.deletes.Add(-1) >= 0 {
		return errBlip
	}
	return k.KeyValue.Delete(ctx, key, opts...)
}

func (k *faultyKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if k.updates.Add(-1) >= 0 {
		return 0, errBlip
	}
	return k.KeyValue.Update(ctx, key, value, rev)
}

// A claim that could not be given back after a send that never reached
// WeChat is taken over by this process's next try, not left to turn
// stale (and be given up as failed).
func TestClaimNotGivenBackIsTakenOverByTheSameProcess(t *testing.T) {
	r := newRig(t)
	s := &sender{errs: []error{&wechat.NotSentError{Err: errors.New("dial: refused")}}}
	faulty := &faultyKV{}
	faulty.deletes.Store(1)
	l := r.process("p1", s, nil, func(kv jetstream.KeyValue) jetstream.KeyValue { faulty.KeyValue = kv; return faulty })
	other := r.process("p2", s, nil, nil)
	if _, err := l.Send(context.Background(), message("c1", "你好")); err == nil {
		t.Fatal("want the not-sent error")
	}
	if rec, _ := r.record("test.c1"); rec.State != sendonce.StateSending {
		t.Fatalf("record %+v, want the claim still there", rec)
	}
	if _, err := other.Send(context.Background(), message("c1", "你好")); !errors.Is(err, sendonce.ErrClaimed) {
		t.Fatalf("another process: %v, want ErrClaimed", err)
	}
	if res, err := l.Send(context.Background(), message("c1", "你好")); err != nil || res.Outcome != events.OutcomeSent || s.calls() != 2 {
		t.Fatalf("the retry: %+v, %v after %d sends; want sent", res, err, s.calls())
	}
}

// A message sent whose outcome could not be recorded is finished by the
// next try, without a second send.
func TestOutcomeNotRecordedIsFinishedWithoutResending(t *testing.T) {
	r := newRig(t)
	s := &sender{}
	faulty := &faultyKV{}
	faulty.updates.Store(1)
	l := r.process("p1", s, nil, func(kv jetstream.KeyValue) jetstream.KeyValue { faulty.KeyValue = kv; return faulty })
	if _, err := l.Send(context.Background(), message("c1", "你好")); !errors.Is(err, errBlip) {
		t.Fatalf("Send: %v, want the record's error", err)
	}
	res, err := l.Send(context.Background(), message("c1", "你好"))
	if err != nil || res.Outcome != events.OutcomeSent || s.calls() != 1 {
		t.Fatalf("the retry: %+v, %v after %d sends; want sent once", res, err, s.calls())
	}
	if rec, _ := r.record("test.c1"); rec.State != sendonce.StateSent {
		t.Fatalf("record %+v", rec)
	}
	if o := r.outcomes(); len(o) != 1 {
		t.Fatalf("outcomes %+v, want one (the second publish de-duplicated)", o)
	}
}

func TestNewRequiresItsCollaborators(t *testing.T) {
	if _, err := sendonce.New(sendonce.Config{StaleAfter: time.Minute}); err == nil || !strings.Contains(err.Error(), "required") {
		t.Fatalf("New without a bus: %v", err)
	}
}
