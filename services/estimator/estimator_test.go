package estimator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/estimator"
)

const appID = "wxestimatortest0001"

type harness struct {
	t    *testing.T
	bus  *bus.Bus
	fake *wechattest.Server
	api  *wechat.Client
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	srv := natstest.Run(t, nil)
	b, err := bus.Open(context.Background(), bus.Config{URLs: []string{srv.ClientURL()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	fake, err := wechattest.New(wechattest.Config{AppID: appID, AppSecret: "secret", Token: "tok", IgnoreTransferReplies: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(fake)
	t.Cleanup(func() { hs.Close(); fake.Close() })
	tokens, _ := wechat.NewMemoryTokenSource(&wechat.StableTokenFetcher{BaseURL: hs.URL, AppID: appID, Secret: "secret"}, wechat.TokenOptions{})
	api, err := wechat.NewClient(wechat.ClientConfig{BaseURL: hs.URL, AppID: appID, Secret: "secret", Tokens: tokens, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, bus: b, fake: fake, api: api}
}

func (h *harness) service(holder string) *estimator.Service {
	h.t.Helper()
	s, err := estimator.New(estimator.Config{AppID: appID, PollInterval: time.Hour, Holder: holder}, estimator.Deps{Bus: h.bus, API: h.api})
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// collect gathers the messages published on subject.
func (h *harness) collect(subject string) func() []*nats.Msg {
	var mu sync.Mutex
	var got []*nats.Msg
	nc, _ := natstest.ConnectURL(h.t, h.bus.ClientURL())
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) { mu.Lock(); got = append(got, m); mu.Unlock() })
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { sub.Unsubscribe() })
	return func() []*nats.Msg {
		nc.Flush()
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return append([]*nats.Msg(nil), got...)
	}
}

func TestWaitingCustomersGetEstimatesAndTheQueueIsServed(t *testing.T) {
	h := newHarness(t)
	h.fake.AddAgent("a1@test", "一号")
	h.fake.SetAutoAccept("a1@test", 1)
	h.fake.SetAgentStatus("a1@test", wechattest.StatusPC)
	for i := 0; i < 4; i++ { // the first is served at once, three wait
		if err := h.fake.TransferToQueue(fmt.Sprintf("o-%d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	estimates := h.collect(events.SubjectWaitEstimated)
	snapshots := h.collect(events.SubjectQueueSnapshot)

	s := h.service("a")
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	mux := http.NewServeMux()
	s.Routes(mux)
	api := httptest.NewServer(mux)
	defer api.Close()

	natstest.Eventually(t, 15*time.Second, func() bool { return len(estimates()) == 3 }, "three estimates")
	positions := map[string]int{}
	for _, m := range estimates() {
		ev, err := events.Decode[events.WaitEstimated](m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if ev.WaitSeconds <= 0 || ev.WaitP90Seconds < ev.WaitSeconds || ev.AppID != appID || ev.Model == "" {
			t.Errorf("estimate %+v", ev)
		}
		positions[ev.OpenID] = ev.Position
	}
	if positions["o-1"] != 1 || positions["o-2"] != 2 || positions["o-3"] != 3 {
		t.Errorf("positions %v", positions)
	}
	snap, err := events.Decode[events.QueueSnapshot](snapshots()[0].Data)
	if err != nil || snap.WaitingCount != 3 || len(snap.Agents) != 1 || snap.Agents[0].AcceptedCase != 1 || len(snap.Agents[0].Sessions) != 1 {
		t.Fatalf("snapshot %+v %v", snap, err)
	}

	resp, err := http.Get(api.URL + "/api/kf/queue")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var view estimator.QueueView
	if err := json.NewDecoder(resp.Body).Decode(&view); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || view.WaitingCount != 3 || len(view.Waiting) != 3 || view.Waiting[2].OpenID != "o-3" || view.Waiting[2].WaitSeconds <= view.Waiting[0].WaitSeconds {
		t.Fatalf("queue view %d %+v", resp.StatusCode, view)
	}

	// Nothing changed: a second poll publishes no new estimate.
	if err := s.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(estimates()); n != 3 {
		t.Errorf("an unchanged queue published %d estimates, want still 3", n)
	}
}

func TestPollingSurvivesAPIErrors(t *testing.T) {
	h := newHarness(t)
	h.fake.AddAgent("a1@test", "一号")
	h.fake.SetAgentStatus("a1@test", wechattest.StatusPC)
	h.fake.SetAutoAccept("a1@test", 1)
	h.fake.TransferToQueue("o-1", "")
	h.fake.TransferToQueue("o-2", "")
	s := h.service("a")
	// Subscribe first and wait for the snapshot of the poll Start makes, so
	// that it cannot be counted with the polls below (PollInterval is an
	// hour: no other automatic poll happens).
	snapshots := h.collect(events.SubjectQueueSnapshot)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	natstest.Eventually(t, 15*time.Second, func() bool { return len(snapshots()) == 1 }, "the snapshot of the first poll")
	h.fake.InjectErrors(wechattest.MethodWaitCase, -1, 1)
	if err := s.PollOnce(context.Background()); err == nil {
		t.Fatal("a failed getwaitcase must fail the poll")
	}
	if err := s.PollOnce(context.Background()); err != nil {
		t.Fatalf("the next poll must work: %v", err)
	}
	// Both polls have returned, so whatever they published reached the
	// server before this marker: once the marker is collected, a snapshot
	// of the failed poll would have been collected too.
	if err := h.bus.PublishCore(&nats.Msg{Subject: events.SubjectQueueSnapshot, Data: []byte("marker")}); err != nil {
		t.Fatal(err)
	}
	var got []*nats.Msg
	natstest.Eventually(t, 15*time.Second, func() bool {
		got = snapshots()
		return len(got) > 0 && string(got[len(got)-1].Data) == "marker"
	}, "the marker after the polls")
	if n := len(got) - 1; n != 2 {
		t.Fatalf("%d snapshots after the first poll, one failed and one good poll, want 2", n)
	}
}

func TestOnlyOneReplicaPolls(t *testing.T) {
	h := newHarness(t)
	a, b := h.service("a"), h.service("b")
	for _, s := range []*estimator.Service{a, b} {
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, 15*time.Second, func() bool { return h.fake.CallCount(wechattest.MethodWaitCase) >= 1 }, "a first getwaitcase")
	time.Sleep(200 * time.Millisecond)
	before := h.fake.CallCount(wechattest.MethodWaitCase)
	a.PollOnce(context.Background())
	b.PollOnce(context.Background())
	if got := h.fake.CallCount(wechattest.MethodWaitCase) - before; got != 1 {
		t.Fatalf("two replicas made %d polls, want 1", got)
	}
	a.Stop(context.Background())
	b.Stop(context.Background())
}

func TestCustomersWhoLeftAreNotEstimated(t *testing.T) {
	h := newHarness(t)
	h.fake.AddAgent("a1@test", "一号")
	h.fake.SetAutoAccept("a1@test", 1)
	h.fake.SetAgentStatus("a1@test", wechattest.StatusPC)
	for i := 0; i < 4; i++ {
		h.fake.TransferToQueue(fmt.Sprintf("o-%d", i), "")
	}
	estimates := h.collect(events.SubjectWaitEstimated)
	s, err := estimator.New(estimator.Config{AppID: appID, PollInterval: time.Hour, Holder: "a"}, estimator.Deps{Bus: h.bus, API: h.api,
		Left: func(_ context.Context, openid string) bool { return openid == "o-2" }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	natstest.Eventually(t, 15*time.Second, func() bool { return len(estimates()) == 2 }, "two estimates")
	positions := map[string]int{}
	for _, m := range estimates() {
		ev, _ := events.Decode[events.WaitEstimated](m.Data)
		positions[ev.OpenID] = ev.Position
	}
	if len(positions) != 2 || positions["o-1"] != 1 || positions["o-3"] != 2 {
		t.Fatalf("positions %v; the customer who left must not count", positions)
	}
}
