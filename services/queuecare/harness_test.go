package queuecare_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/internal/httpapi"
	"github.com/kefu-io/kefu/internal/httpapi/httpapitest"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/ingest"
	"github.com/kefu-io/kefu/services/queuecare"
)

const (
	appID     = "wx2c2769f8efd9abc2"
	appSecret = "fake-app-secret"
	cbToken   = "spamtest"
	wang      = "wang@gh_test"
)

var start = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// patience is how long a test waits for the pipeline to get somewhere
// (natstest.Eventually) before it fails.
const patience = 20 * time.Second

// harness is the pipeline in one test process: an embedded NATS server,
// the fake WeChat (fake clock) posting signed callbacks to ingest, and one
// queue-care process with a real WeChat client pointed at the fake.
type harness struct {
	t     *testing.T
	ctx   context.Context
	nats  *server.Server
	clock *wechattest.FakeClock
	wx    *wechattest.Server
	wxURL string // the fake's base URL, for more replicas
	pub   *bus.Bus
	web   *httptest.Server // ingest and queue care routes
	svc   *queuecare.Service
	reg   *prometheus.Registry
	log   *zap.Logger
}

// harnessOptions vary the pipeline: ingest transferring customer
// messages to 多客服 (as deployed: leave phrases held back, joins
// published) and the fake's answer of getsession for a waiting customer.
type harnessOptions struct {
	transfer       bool
	getSessionZero bool
}

type option func(*harnessOptions)

func withTransfer() option       { return func(o *harnessOptions) { o.transfer = true } }
func withGetSessionZero() option { return func(o *harnessOptions) { o.getSessionZero = true } }

// gate holds a waiting customer's leave phrase back from the queue, as
// the application's does.
type gate struct{ h *harness }

func (g gate) HoldTransfer(ctx context.Context, openid, content string) bool {
	if g.h.svc == nil || !g.h.svc.LeaveDetector().IsLeave(content) {
		return false
	}
	served, err := g.h.svc.States().Served(ctx, openid)
	return err == nil && !served
}

func newHarness(t *testing.T, cfg queuecare.Config, opts ...option) *harness {
	t.Helper()
	var o harnessOptions
	for _, f := range opts {
		f(&o)
	}
	h := &harness{t: t, ctx: context.Background(), nats: natstest.Run(t, nil),
		clock: wechattest.NewFakeClock(start), reg: prometheus.NewRegistry(),
		log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}
	h.pub = h.openBus(bustest.Streams(events.StreamWeChat, events.StreamKF, events.StreamNotify, events.StreamDLQ))

	in, err := ingest.New(ingest.Config{AppID: appID, Token: cbToken, PublishTimeout: 2 * time.Second, Transfer: o.transfer},
		ingest.Deps{Publisher: h.pub, Logger: h.log, Now: h.clock.Now, Gate: gate{h}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	in.Routes(mux)
	// As in kefu, a path or method no route takes is answered a problem.
	h.web = httptest.NewServer(httpapi.Routes(mux))
	t.Cleanup(h.web.Close)

	wx, err := wechattest.New(wechattest.Config{AppID: appID, AppSecret: appSecret, Token: cbToken,
		CallbackURL: h.web.URL + "/wechat/callback", Clock: h.clock, HistoryLimit: 1 << 20, GetSessionWaitingZero: o.getSessionZero})
	if err != nil {
		t.Fatal(err)
	}
	wxs := httptest.NewServer(wx)
	t.Cleanup(func() { wxs.Close(); wx.Close() })
	h.wx, h.wxURL = wx, wxs.URL
	if err := wx.AddAgent(wang, "小王"); err != nil {
		t.Fatal(err)
	}

	cfg.AppID = appID
	cfg.Holder = "queuecare-test"
	if cfg.Tick == 0 {
		cfg.Tick = time.Hour // tests drive SweepOnce and ReconcileOnce themselves
	}
	if cfg.Backoff == nil {
		cfg.Backoff = []time.Duration{50 * time.Millisecond}
	}
	svc, err := queuecare.New(cfg, queuecare.Deps{
		Bus: h.openBus(), API: h.client(wxs.URL), Logger: h.log, Registerer: h.reg, Now: h.clock.Now,
		FeedbackLink: func(openid string) string { return "https://kefu.example/feedback/" + openid },
	})
	if err != nil {
		t.Fatal(err)
	}
	svc.Routes(mux)
	if err := svc.Start(h.ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	h.svc = svc
	return h
}

// openBus opens a connection of another process to the harness's server.
func (h *harness) openBus(opts ...bustest.Option) *bus.Bus {
	h.t.Helper()
	opts = append(opts, bustest.Server(h.nats), bustest.Config(func(c *bus.Config) { c.Logger = h.log }))
	b, _ := bustest.Open(h.t, opts...)
	return b
}

func (h *harness) client(base string) *wechat.Client {
	h.t.Helper()
	tokens, err := wechat.NewMemoryTokenSource(&wechat.StableTokenFetcher{BaseURL: base, AppID: appID, Secret: appSecret},
		wechat.TokenOptions{MinForceRefresh: time.Nanosecond})
	if err != nil {
		h.t.Fatal(err)
	}
	c, err := wechat.NewClient(wechat.ClientConfig{BaseURL: base, Tokens: tokens,
		HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}},
		Backoff:    5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// say sends a customer's text message through the fake: a signed callback
// to ingest, which stores it on KEFU_WECHAT before answering.
func (h *harness) say(openid, text string) {
	h.t.Helper()
	d, err := h.wx.CustomerMessage(h.ctx, openid, text)
	if err != nil || d.Status != wechattest.DeliveryDelivered {
		h.t.Fatalf("message from %s: %v (%s %s)", openid, err, d.Status, d.Error)
	}
}

// queue puts a customer in the 多客服 queue, as a transfer reply does.
func (h *harness) queue(openid string) {
	h.t.Helper()
	if err := h.wx.TransferToQueue(openid, ""); err != nil {
		h.t.Fatal(err)
	}
}

// agentTakes brings wang online for n sessions; waiting customers are
// assigned at once and their kf_create_session callbacks go out.
func (h *harness) agentTakes(n int) {
	h.t.Helper()
	if err := h.wx.SetAutoAccept(wang, n); err != nil {
		h.t.Fatal(err)
	}
	if err := h.wx.SetAgentStatus(wang, wechattest.StatusPC); err != nil {
		h.t.Fatal(err)
	}
	h.callbacks()
}

// callbacks waits until the fake has delivered every callback to ingest.
func (h *harness) callbacks() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
	defer cancel()
	if err := h.wx.WaitCallbacks(ctx); err != nil {
		h.t.Fatal(err)
	}
}

// estimate publishes what the estimator's poll would: a wait estimate.
func (h *harness) estimate(openid string, position int, wait int64) {
	h.t.Helper()
	now := h.clock.Now()
	ev := events.WaitEstimated{Meta: events.Meta{AppID: appID, OccurredAt: now, ReceivedAt: now},
		OpenID: openid, Position: position, WaitSeconds: wait, WaitP90Seconds: 2 * wait, Model: "test"}
	if _, err := h.pub.Publish(h.ctx, ev, bus.Envelope{ID: fmt.Sprintf("kf-wait-%s-%d", openid, now.UnixNano())}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) state(openid string) customers.State {
	h.t.Helper()
	st, err := h.svc.States().Get(h.ctx, openid)
	if err != nil && err != customers.ErrUnknownCustomer {
		h.t.Fatal(err)
	}
	return st
}

// waitState waits until the customer's state satisfies cond.
func (h *harness) waitState(openid, what string, cond func(customers.State) bool) customers.State {
	h.t.Helper()
	var st customers.State
	natstest.Eventually(h.t, patience, func() bool { st = h.state(openid); return cond(st) }, "%s %s", openid, what)
	return st
}

func is(s customers.Status) func(customers.State) bool {
	return func(st customers.State) bool { return st.Status == s }
}

// drain waits until both consumers have handled everything published.
func (h *harness) drain() {
	h.t.Helper()
	natstest.Eventually(h.t, patience, func() bool {
		for _, c := range []struct{ stream, durable string }{{events.StreamWeChat, "queuecare-wechat"}, {events.StreamKF, "queuecare-kf"}} {
			info, err := h.pub.ConsumerInfo(h.ctx, c.stream, c.durable)
			if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
				return false
			}
		}
		return true
	}, "consumers drained")
}

// sentTo returns the messages custom/send accepted for openid.
func (h *harness) sentTo(openid string) []wechattest.SentMessage {
	var out []wechattest.SentMessage
	for _, m := range h.wx.Sent() {
		if m.OpenID == openid {
			out = append(out, m)
		}
	}
	return out
}

type stored struct {
	subject, id string
	data        []byte
}

// stream returns the messages of a stream on subject.
func (h *harness) stream(name, subject string) []stored {
	h.t.Helper()
	s, err := h.pub.Stream(h.ctx, name)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []stored
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(h.ctx, seq)
		if err != nil || m.Subject != subject {
			continue
		}
		out = append(out, stored{subject: m.Subject, id: m.Header.Get(events.HeaderID), data: m.Data})
	}
	return out
}

func (h *harness) abandoned() []events.SessionAbandoned {
	var out []events.SessionAbandoned
	for _, m := range h.stream(events.StreamKF, events.SubjectSessionAbandoned) {
		ev, err := events.Decode[events.SessionAbandoned](m.data)
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func (h *harness) notifications(kind string) []events.Notification {
	var out []events.Notification
	for _, m := range h.stream(events.StreamNotify, events.SubjectNotifySent) {
		n, err := events.Decode[events.Notification](m.data)
		if err != nil {
			h.t.Fatal(err)
		}
		if n.Kind == kind {
			out = append(out, n)
		}
	}
	return out
}

// metric sums a counter or gauge of the service's registry whose labels
// include the given ones.
func (h *harness) metric(name string, labels map[string]string) float64 {
	families, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.GetCounter() != nil {
				sum += m.GetCounter().GetValue()
			} else if m.GetGauge() != nil {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// get fetches a JSON endpoint of the service.
func (h *harness) get(path string, out any) int {
	h.t.Helper()
	resp, err := http.Get(h.web.URL + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		httpapitest.CheckProblem(h.t, resp.StatusCode, resp.Header, body)
	} else {
		httpapitest.CheckNoZeroTime(h.t, body)
		if m := zonedOrFractional.Find(body); m != nil {
			h.t.Errorf("GET %s: time %s is not UTC with whole seconds", path, m)
		}
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, out); err != nil {
			h.t.Fatalf("GET %s: %v: %s", path, err, body)
		}
	}
	return resp.StatusCode
}

// zonedOrFractional finds a time not written as kefu's answers write them.
var zonedOrFractional = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+|[+-]\d\d:\d\d)"`)
