package estimator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/estimator"
	"github.com/kefu-io/kefu/services/notifier"
)

// stamped gathers the messages published on subject with the time each
// arrived.
type stamped struct {
	mu  sync.Mutex
	got []stampedMsg
}

type stampedMsg struct {
	msg *nats.Msg
	at  time.Time
}

func (h *harness) stamp(subject string) *stamped {
	h.t.Helper()
	s := &stamped{}
	nc, _ := natstest.ConnectURL(h.t, h.bus.ClientURL())
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		s.mu.Lock()
		s.got = append(s.got, stampedMsg{m, time.Now()})
		s.mu.Unlock()
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { sub.Unsubscribe() })
	return s
}

func (s *stamped) all() []stampedMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]stampedMsg(nil), s.got...)
}

// join does what ingest does when it answers a customer's message with
// transfer_customer_service: WeChat queues the customer, and
// kefu.wechat.kf.queue.joined is published.
func (h *harness) join(openid string) time.Time {
	h.t.Helper()
	if err := h.fake.TransferToQueue(openid, ""); err != nil {
		h.t.Fatal(err)
	}
	now := time.Now()
	ev := events.QueueJoined{Meta: events.Meta{AppID: appID, OccurredAt: now.UTC(), ReceivedAt: now.UTC()}, OpenID: openid}
	if _, err := h.bus.Publish(context.Background(), ev, bus.Envelope{ID: "kf-joined-" + openid, Source: "test"}); err != nil {
		h.t.Fatal(err)
	}
	return now
}

// 150 customers join a queue whose agents are all busy: every one of them
// gets an estimate within a second of their join — the 101st to 150th
// too, whom getwaitcase never lists — with their place in the queue, and
// a message saying it; the next poll refines the places without losing
// anyone.
func TestEveryJoiningCustomerIsEstimatedAndToldAtOnce(t *testing.T) {
	h := newHarness(t)
	for i := range 2 {
		a := fmt.Sprintf("a%d@test", i)
		h.fake.AddAgent(a, fmt.Sprint("客服", i))
		h.fake.SetAutoAccept(a, 1)
		h.fake.SetAgentStatus(a, wechattest.StatusPC)
		h.fake.TransferToQueue(fmt.Sprint("busy-", i), "") // served at once
	}
	estimates := h.stamp(events.SubjectWaitEstimated)
	snapshots := h.collect(events.SubjectQueueSnapshot)
	s := h.service("a")
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(ctx)
	if err := s.PollOnce(ctx); err != nil { // the lease, and the snapshot joins are placed against
		t.Fatal(err)
	}
	n, err := notifier.New(notifier.Config{Instance: "n1", Concurrency: 4, AckWait: 3 * time.Second, SendTimeout: 1500 * time.Millisecond,
		RecordTimeout: time.Second, Backoff: []time.Duration{50 * time.Millisecond}, RateLimit: -1}, notifier.Deps{Bus: h.bus, Sender: h.api})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer n.Stop(ctx)

	const customers = 150
	joined := make([]time.Time, customers)
	for i := range customers {
		joined[i] = h.join(fmt.Sprintf("o-%03d", i))
	}
	first := map[string]events.WaitEstimated{}
	natstest.Eventually(t, 15*time.Second, func() bool {
		for _, m := range estimates.all() {
			ev, err := events.Decode[events.WaitEstimated](m.msg.Data)
			if err != nil {
				t.Fatal(err)
			}
			if _, seen := first[ev.OpenID]; seen {
				continue
			}
			first[ev.OpenID] = ev
			var i int
			fmt.Sscanf(ev.OpenID, "o-%d", &i)
			if lag := m.at.Sub(joined[i]); lag > time.Second {
				t.Errorf("%s: first estimate %v after the join, want within 1s", ev.OpenID, lag)
			}
		}
		return len(first) == customers
	}, "a first estimate for every customer")
	for i := range customers {
		ev := first[fmt.Sprintf("o-%03d", i)]
		if ev.Position != i+1 || !ev.PositionInferred || ev.WaitSeconds <= 0 || ev.WaitP90Seconds < ev.WaitSeconds {
			t.Fatalf("o-%03d: first estimate %+v, want place %d, inferred, with a wait", i, ev, i+1)
		}
		if i > 0 && ev.WaitSeconds < first[fmt.Sprintf("o-%03d", i-1)].WaitSeconds {
			t.Fatalf("o-%03d waits less than the customer ahead", i)
		}
	}

	// Every customer is told their place: 150 messages, each stating the
	// number of customers ahead in queue order.
	var sent []wechattest.SentMessage
	natstest.Eventually(t, 15*time.Second, func() bool {
		sent = sent[:0]
		for _, m := range h.fake.Sent() {
			if strings.HasPrefix(m.OpenID, "o-") {
				sent = append(sent, m)
			}
		}
		return len(sent) >= customers
	}, "a message to every customer")
	told := map[string]string{}
	for _, m := range sent {
		if _, dup := told[m.OpenID]; dup {
			t.Fatalf("%s told twice", m.OpenID)
		}
		told[m.OpenID] = m.Content
	}
	for i := range customers {
		text := told[fmt.Sprintf("o-%03d", i)]
		want := fmt.Sprintf("您前面还有 %d 位", i)
		if i == 0 {
			want = "您是下一位"
		}
		if !strings.Contains(text, want) {
			t.Fatalf("o-%03d was told %q, want %q", i, text, want)
		}
	}

	// The next poll lists the 100 earliest and keeps the 50 behind them.
	if err := s.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	all := snapshots()
	snap, err := events.Decode[events.QueueSnapshot](all[len(all)-1].Data)
	if err != nil || snap.WaitingCount != customers || len(snap.Waiting) != 100 {
		t.Fatalf("snapshot: count %d, %d listed (%v)", snap.WaitingCount, len(snap.Waiting), err)
	}
	view := h.queueView(s)
	if len(view.Waiting) != customers || view.Waiting[100].OpenID != "o-100" || !view.Waiting[100].Inferred ||
		view.Waiting[100].Position != 101 || view.Waiting[99].Inferred || view.Waiting[100].Since.IsZero() {
		t.Fatalf("queue view after the poll: %d waiting, 101st %+v", len(view.Waiting), view.Waiting[min(100, len(view.Waiting)-1)])
	}
}

func (h *harness) queueView(s *estimator.Service) estimator.QueueView {
	h.t.Helper()
	mux := http.NewServeMux()
	s.Routes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/kf/queue")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var v estimator.QueueView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		h.t.Fatal(err)
	}
	return v
}
