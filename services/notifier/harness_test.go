package notifier_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/notifier"
)

const (
	appID     = "wx2c2769f8efd9abc2"
	appSecret = "fake-app-secret"
	cbToken   = "spamtest"
	wang      = "wang@gh_test"
	li        = "li@gh_test"
)

// patience is how long a test waits for the notifier to get somewhere
// (natstest.Eventually) before it fails.
const patience = 20 * time.Second

// harness is one embedded NATS server, one fake WeChat and any number of
// notifier processes (each with its own bus connection, client and
// metrics registry), all in the test process.
type harness struct {
	t     testing.TB
	nats  *server.Server
	wx    *wechattest.Server
	wxURL string
	pub   *bus.Bus // the publisher's connection (another process)
	clock *wechattest.FakeClock
	log   *zap.Logger
	// netFaults breaks the dials of h.transport, which every client of
	// h.client uses.
	netFaults *wechattest.NetFaults
	transport *http.Transport
	// suppress becomes Deps.Suppress of the processes started after it is set.
	suppress func(ctx context.Context, kind, openid string) (bool, error)
}

type harnessOptions struct {
	fakeClock bool
	wx        func(*wechattest.Config)
	// tls serves the fake over HTTPS, reached through h.netFaults.
	tls bool
}

func newHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	h := &harness{t: t, nats: natstest.Run(t, nil), log: zap.NewNop()}
	if tt, ok := t.(*testing.T); ok {
		h.log = zaptest.NewLogger(tt, zaptest.Level(zap.WarnLevel))
	}
	wxCfg := wechattest.Config{AppID: appID, AppSecret: appSecret, Token: cbToken, HistoryLimit: 1 << 20}
	if o.fakeClock {
		h.clock = wechattest.NewFakeClock(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
		wxCfg.Clock = h.clock
	}
	if o.wx != nil {
		o.wx(&wxCfg)
	}
	wx, err := wechattest.New(wxCfg)
	if err != nil {
		t.Fatal(err)
	}
	h.netFaults = &wechattest.NetFaults{}
	// As many idle connections as the notifier has concurrent sends: the
	// default two per host would open a connection per message.
	base := &http.Transport{MaxIdleConnsPerHost: 128}
	var hs *httptest.Server
	if o.tls {
		hs = httptest.NewTLSServer(wx)
		base = hs.Client().Transport.(*http.Transport).Clone()
		base.MaxIdleConnsPerHost = 128
	} else {
		hs = httptest.NewServer(wx)
	}
	t.Cleanup(func() { hs.Close(); wx.Close() })
	h.wx, h.wxURL, h.transport = wx, hs.URL, h.netFaults.Transport(base)
	for account, nick := range map[string]string{wang: "小王", li: "小李"} {
		if err := wx.AddAgent(account, nick); err != nil {
			t.Fatal(err)
		}
	}
	h.pub = h.openBus(bustest.Streams(events.StreamWeChat, events.StreamKF, events.StreamNotify, events.StreamDLQ))
	return h
}

// openBus opens a connection of another process to the harness's server.
func (h *harness) openBus(opts ...bustest.Option) *bus.Bus {
	h.t.Helper()
	opts = append(opts, bustest.Server(h.nats), bustest.Config(func(c *bus.Config) { c.Logger = h.log }))
	b, _ := bustest.Open(h.t, opts...)
	return b
}

func (h *harness) now() time.Time {
	if h.clock != nil {
		return h.clock.Now()
	}
	return time.Now()
}

// testConfig is a notifier configuration with short timeouts, so that
// redeliveries happen within a test.
func testConfig(instance string) notifier.Config {
	return notifier.Config{
		Instance:      instance,
		Concurrency:   4,
		AckWait:       3 * time.Second,
		SendTimeout:   1500 * time.Millisecond,
		RecordTimeout: time.Second,
		MaxDeliver:    5,
		Backoff:       []time.Duration{50 * time.Millisecond},
		RateLimit:     -1,
	}
}

// process is one running notifier.
type process struct {
	svc *notifier.Service
	reg *prometheus.Registry
	bus *bus.Bus
}

// start runs a notifier process with its own bus connection and a real
// WeChat client pointed at the fake.
func (h *harness) start(cfg notifier.Config) *process {
	h.t.Helper()
	return h.startWith(cfg, nil)
}

func (h *harness) startWith(cfg notifier.Config, sender notifier.Sender) *process {
	h.t.Helper()
	return h.startWithRegistry(cfg, sender, prometheus.NewRegistry())
}

// startWithRegistry is startWith with the process's metrics registry,
// which the sender may share.
func (h *harness) startWithRegistry(cfg notifier.Config, sender notifier.Sender, reg *prometheus.Registry) *process {
	h.t.Helper()
	b := h.openBus()
	if sender == nil {
		sender = h.client()
	}
	deps := notifier.Deps{Bus: b, Sender: sender, Logger: h.log.With(zap.String("instance", cfg.Instance)), Registerer: reg, Suppress: h.suppress}
	if h.clock != nil {
		deps.Now = h.clock.Now
	}
	svc, err := notifier.New(cfg, deps)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		svc.Stop(ctx)
	})
	return &process{svc: svc, reg: reg, bus: b}
}

func (h *harness) client() *wechat.Client {
	h.t.Helper()
	// Tests reject tokens right after fetching them; production keeps
	// WeChat's 30 s between forced refreshes.
	tokens, err := wechat.NewMemoryTokenSource(&wechat.StableTokenFetcher{BaseURL: h.wxURL, AppID: appID, Secret: appSecret},
		wechat.TokenOptions{MinForceRefresh: time.Nanosecond})
	if err != nil {
		h.t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: h.transport}
	c, err := wechat.NewClient(wechat.ClientConfig{BaseURL: h.wxURL, Tokens: tokens, HTTPClient: hc,
		Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// customer opens the customer's 48-hour window: they wrote to us.
func (h *harness) customer(openids ...string) {
	h.t.Helper()
	for _, o := range openids {
		if _, err := h.wx.CustomerMessage(context.Background(), o, "你好"); err != nil {
			h.t.Fatal(err)
		}
	}
}

// Event constructors, with the dedup id ingest would give them.
func (h *harness) created(openid, account string) (events.Event, string) {
	at := h.now()
	return events.SessionCreated{Meta: h.meta(at), WeChatSource: source(openid, at), KfAccount: account},
		events.WeChatEventID(openid, at.Unix(), "kf_create_session", account)
}

func (h *harness) switched(openid, from, to string) (events.Event, string) {
	at := h.now()
	return events.SessionSwitched{Meta: h.meta(at), WeChatSource: source(openid, at), FromKfAccount: from, ToKfAccount: to},
		events.WeChatEventID(openid, at.Unix(), "kf_switch_session", from, to)
}

func (h *harness) closed(openid, account string) (events.Event, string) {
	at := h.now()
	return events.SessionClosed{Meta: h.meta(at), WeChatSource: source(openid, at), KfAccount: account},
		events.WeChatEventID(openid, at.Unix(), "kf_close_session", account)
}

func (h *harness) wait(openid string, position int, seconds int64) (events.Event, string) {
	at := h.now()
	return events.WaitEstimated{Meta: h.meta(at), OpenID: openid, Position: position, WaitSeconds: seconds,
		WaitP90Seconds: seconds * 2, Model: "test"}, fmt.Sprintf("wait-%s-%d", openid, at.UnixNano())
}

func (h *harness) meta(at time.Time) events.Meta {
	return events.Meta{AppID: appID, OccurredAt: at.Truncate(time.Second), ReceivedAt: at}
}

func source(openid string, at time.Time) events.WeChatSource {
	return events.WeChatSource{OpenID: openid, ToUserName: "gh_test", CreateTime: at.Unix(), Raw: map[string]any{"FromUserName": openid}}
}

func busEnvelope(id string) bus.Envelope { return bus.Envelope{ID: id, Source: "kefu/test"} }

func (h *harness) publish(ev events.Event, id string) {
	h.t.Helper()
	if _, err := h.pub.Publish(context.Background(), ev, busEnvelope(id)); err != nil {
		h.t.Fatal(err)
	}
}

// replay publishes ev again with ce-id id but a fresh Nats-Msg-Id, as a
// replay or a duplicate outside JetStream's de-duplication window arrives.
func (h *harness) replay(ev events.Event, id string, n int) {
	h.t.Helper()
	data, err := events.Encode(ev)
	if err != nil {
		h.t.Fatal(err)
	}
	msg := &nats.Msg{Subject: ev.EventSubject(), Data: data, Header: nats.Header{}}
	for k, v := range events.Headers(ev.EventSubject(), id, "kefu/replay", time.Now()) {
		msg.Header.Set(k, v)
	}
	msg.Header.Set(events.HeaderMsgID, fmt.Sprintf("replay-%d-%s", n, id))
	if _, err := h.pub.PublishMsg(context.Background(), msg); err != nil {
		h.t.Fatal(err)
	}
}

// sent returns the messages the fake accepted, by openid.
func (h *harness) sent() map[string][]wechattest.SentMessage {
	out := map[string][]wechattest.SentMessage{}
	for _, m := range h.wx.Sent() {
		out[m.OpenID] = append(out[m.OpenID], m)
	}
	return out
}

// outcomes reads every event of KEFU_NOTIFY, with its ce-id.
func (h *harness) outcomes() []outcome {
	h.t.Helper()
	ctx := context.Background()
	stream, err := h.pub.Stream(ctx, events.StreamNotify)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []outcome
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		n, err := events.Decode[events.Notification](m.Data)
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, outcome{Notification: n, subject: m.Subject, id: m.Header.Get(events.HeaderID)})
	}
	return out
}

type outcome struct {
	events.Notification
	subject, id string
}

func (h *harness) outcomesByCause() map[string][]outcome {
	out := map[string][]outcome{}
	for _, o := range h.outcomes() {
		out[o.CauseEventID] = append(out[o.CauseEventID], o)
	}
	return out
}

// counted returns kefu_notify_messages_total by "kind/outcome".
func (p *process) counted() map[string]float64 {
	out := map[string]float64{}
	families, _ := p.reg.Gather()
	for _, f := range families {
		if f.GetName() != "kefu_notify_messages_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			var kind, oc string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "kind":
					kind = l.GetValue()
				case "outcome":
					oc = l.GetValue()
				}
			}
			out[kind+"/"+oc] += m.GetCounter().GetValue()
		}
	}
	return out
}

// gauge returns the value of the counter or gauge name with labels (0 when
// absent).
func (p *process) gauge(name string, labels map[string]string) float64 {
	families, _ := p.reg.Gather()
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// handled is how many events reached a final outcome (retries excluded).
func handled(ps ...*process) int {
	n := 0
	for _, p := range ps {
		for k, v := range p.counted() {
			if !strings.HasSuffix(k, "/retry") {
				n += int(v)
			}
		}
	}
	return n
}

// drained reports whether a consumer has nothing left to deliver or to be
// acknowledged.
func (h *harness) drained(stream, durable string) bool {
	info, err := h.pub.ConsumerInfo(context.Background(), stream, durable)
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}
