package notifier

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
)

// crashRig is a notifier next to the marker a crashed process would have
// left in kefu_notified.
type crashRig struct {
	t     *testing.T
	clock *wechattest.FakeClock
	wx    *wechattest.Server
	bus   *bus.Bus
	kv    jetstream.KeyValue
	svc   *Service
	reg   *prometheus.Registry
}

func newCrashRig(t *testing.T) *crashRig {
	t.Helper()
	ctx := context.Background()
	clock := wechattest.NewFakeClock(t0)
	wx, err := wechattest.New(wechattest.Config{AppID: "wx1", AppSecret: "secret", Token: "token", Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(wx)
	t.Cleanup(func() { hs.Close(); wx.Close() })
	client, err := wechat.NewClient(wechat.ClientConfig{BaseURL: hs.URL, AppID: "wx1", Secret: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := bustest.Open(t, bustest.Streams(events.StreamWeChat, events.StreamKF, events.StreamNotify, events.StreamDLQ))
	kv, err := b.KeyValue(ctx, bus.BucketNotified)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	svc, err := New(Config{Instance: "survivor", AckWait: 3 * time.Second, SendTimeout: time.Second, RecordTimeout: time.Second,
		MaxDeliver: 50, Backoff: []time.Duration{20 * time.Millisecond}, RateLimit: -1},
		Deps{Bus: b, Sender: client, Registerer: reg, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop(context.Background()) })
	if _, err := wx.CustomerMessage(ctx, "o-1", "你好"); err != nil {
		t.Fatal(err)
	}
	return &crashRig{t: t, clock: clock, wx: wx, bus: b, kv: kv, svc: svc, reg: reg}
}

const crashCause = "wx-evt-o-1-1772445600-kf_create_session-wang@gh"

// leaveMarker writes the "sending" marker of a process that died age ago.
func (r *crashRig) leaveMarker(age time.Duration) {
	r.t.Helper()
	data, _ := encodeRecord(causeRecord{State: stateSending, Cause: crashCause, Kind: events.NotifySessionCreated,
		Owner: "crashed", At: r.clock.Now().Add(-age)})
	if _, err := r.kv.Create(context.Background(), causeKey(crashCause), data); err != nil {
		r.t.Fatal(err)
	}
}

func (r *crashRig) publishCause() {
	r.t.Helper()
	now := r.clock.Now()
	ev := events.SessionCreated{Meta: events.Meta{AppID: "wx1", OccurredAt: now, ReceivedAt: now},
		WeChatSource: events.WeChatSource{OpenID: "o-1"}, KfAccount: "wang@gh"}
	if _, err := r.bus.Publish(context.Background(), ev, bus.Envelope{ID: crashCause, Source: "kefu/test"}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *crashRig) outcomes() []events.Notification {
	r.t.Helper()
	stream, err := r.bus.Stream(context.Background(), events.StreamNotify)
	if err != nil {
		r.t.Fatal(err)
	}
	info, _ := stream.Info(context.Background())
	var out []events.Notification
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(context.Background(), seq)
		if err != nil {
			continue
		}
		n, _ := events.Decode[events.Notification](m.Data)
		out = append(out, n)
	}
	return out
}

func (r *crashRig) record() causeRecord {
	r.t.Helper()
	e, err := r.kv.Get(context.Background(), causeKey(crashCause))
	if err != nil {
		r.t.Fatal(err)
	}
	rec, err := decodeRecord(e.Value())
	if err != nil {
		r.t.Fatal(err)
	}
	return rec
}

func (r *crashRig) counted(outcome string) float64 {
	families, _ := r.reg.Gather()
	for _, f := range families {
		if f.GetName() != "kefu_notify_messages_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == events.NotifySessionCreated && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestCrashBetweenClaimAndRecordIsSettledAtMostOnce(t *testing.T) {
	t.Run("a stale marker is recorded as failed with an unknown outcome, never resent", func(t *testing.T) {
		r := newCrashRig(t)
		r.leaveMarker(time.Hour)
		r.publishCause()
		// The outcome is published before the record is written: wait
		// for both.
		natstest.Eventually(t, 15*time.Second, func() bool { return len(r.outcomes()) == 1 && r.record().Final() }, "the outcome and the record")
		o := r.outcomes()[0]
		if o.Outcome != events.OutcomeFailed || o.ErrMsg != unknownOutcome || o.CauseEventID != crashCause || o.OpenID != "o-1" {
			t.Errorf("outcome %+v", o)
		}
		if rec := r.record(); rec.State != stateFailed || rec.ErrMsg != unknownOutcome || rec.Owner != "survivor" {
			t.Errorf("record %+v", rec)
		}
		if n := len(r.wx.Sent()); n != 0 {
			t.Errorf("%d messages sent again", n)
		}
	})

	t.Run("a fresh marker may belong to a live process: wait until it is stale", func(t *testing.T) {
		r := newCrashRig(t)
		r.leaveMarker(0)
		r.publishCause()
		natstest.Eventually(t, 15*time.Second, func() bool { return r.counted(outcomeRetry) >= 3 }, "a few retries")
		if n := len(r.outcomes()); n != 0 || r.record().State != stateSending {
			t.Fatalf("a possibly live claim was settled: %d outcomes, record %+v", n, r.record())
		}
		r.clock.Advance(r.svc.cfg.staleAfter())
		natstest.Eventually(t, 15*time.Second, func() bool { return len(r.outcomes()) == 1 }, "the outcome")
		if o := r.outcomes()[0]; o.Outcome != events.OutcomeFailed || o.ErrMsg != unknownOutcome {
			t.Errorf("outcome %+v", o)
		}
		if n := len(r.wx.Sent()); n != 0 {
			t.Errorf("%d messages sent again", n)
		}
	})

	t.Run("an outcome published before the crash is kept, not contradicted", func(t *testing.T) {
		r := newCrashRig(t)
		r.leaveMarker(time.Hour)
		// The crashed process had sent the message and published its
		// outcome, but died before recording it.
		sent := events.Notification{Meta: events.Meta{AppID: "wx1", OccurredAt: t0, ReceivedAt: t0}, OpenID: "o-1",
			Kind: events.NotifySessionCreated, CauseEventID: crashCause, Outcome: events.OutcomeSent, Text: "客服 小王 正在为您服务"}
		if _, err := r.bus.Publish(context.Background(), sent, bus.Envelope{ID: OutcomeID(crashCause), Source: "kefu/notifier"}); err != nil {
			t.Fatal(err)
		}
		r.publishCause()
		natstest.Eventually(t, 15*time.Second, func() bool { return r.record().Final() }, "the record")
		if rec := r.record(); rec.State != stateSent || rec.Seq != 1 {
			t.Errorf("record %+v, want sent at seq 1", rec)
		}
		if out := r.outcomes(); len(out) != 1 || out[0].Outcome != events.OutcomeSent {
			t.Errorf("outcomes %+v", out)
		}
		if r.counted(outcomeSent) != 1 || len(r.wx.Sent()) != 0 {
			t.Errorf("counted %v sent, %d messages", r.counted(outcomeSent), len(r.wx.Sent()))
		}
	})
}
