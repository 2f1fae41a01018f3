package bus_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/pkg/events"
)

func freeLeafPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// hubWithLeafPort is a hub bus whose server accepts leaf nodes; it
// returns the leaf URL too.
func hubWithLeafPort(t *testing.T) (*bus.Bus, *url.URL) {
	t.Helper()
	opts := natstest.Options(t)
	opts.LeafNode.Host = "127.0.0.1"
	opts.LeafNode.Port = freeLeafPort(t)
	srv := natstest.Run(t, opts)
	b, err := bus.Open(context.Background(), bus.Config{URLs: []string{srv.ClientURL()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if err := b.EnsureStreams(context.Background(), events.StreamWeChat); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(fmt.Sprintf("nats-leaf://127.0.0.1:%d", opts.LeafNode.Port))
	return b, u
}

func openLeaf(t *testing.T, hub *bus.Bus, u *url.URL, maxBytes int64) *bus.Leaf {
	t.Helper()
	l, err := bus.OpenLeaf(context.Background(), hub, bus.LeafConfig{HubURLs: []*url.URL{u}, Domain: "leaf-test", DataDir: t.TempDir(),
		MaxBytes: maxBytes, Stream: events.StreamWeChat, TrimEvery: 100 * time.Millisecond, ReconnectEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func hasSpoolSource(cfg jetstream.StreamConfig) bool {
	for _, s := range cfg.Sources {
		if s.Name == bus.SpoolStream && s.External != nil && s.External.APIPrefix == "$JS.leaf-test.API" {
			return true
		}
	}
	return false
}

// An event published to the leaf lands in the hub's stream on its own
// subject with its headers, and a roles' EnsureStreams, which applies the
// contract's configuration, keeps the spool's source.
func TestLeafForwardsToTheHubAndEnsureStreamsKeepsTheSource(t *testing.T) {
	hub, u := hubWithLeafPort(t)
	leaf := openLeaf(t, hub, u, 1<<20)
	ctx := context.Background()
	env := bus.Envelope{ID: events.WeChatEventID("o1", 1399197672, "kf_create_session", "test1@test"), Source: "kefu/test"}
	if _, err := leaf.Publish(ctx, created("o1"), env); err != nil {
		t.Fatal(err)
	}
	s, err := bus.JetStream(hub).Stream(ctx, events.StreamWeChat)
	if err != nil {
		t.Fatal(err)
	}
	var m *jetstream.RawStreamMsg
	// Seconds normally; the hub's retry of a failed source setup can take
	// longer under load.
	deadline := time.Now().Add(45 * time.Second)
	for {
		m, err = s.GetLastMsgForSubject(ctx, "kefu.wechat.>")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			if info, ierr := s.Info(ctx); ierr == nil {
				for _, si := range info.Sources {
					t.Logf("source %s active %s lag %d err %v", si.Name, si.Active, si.Lag, si.Error)
				}
			}
			st, _ := leaf.State(ctx)
			t.Fatalf("never forwarded: %v; spool %+v", err, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m.Subject != created("o1").EventSubject() || m.Header.Get(events.HeaderMsgID) != env.ID || m.Header.Get(events.HeaderType) != events.TypeOf(m.Subject) {
		t.Fatalf("forwarded as %s with headers %v", m.Subject, m.Header)
	}

	if err := hub.EnsureStreams(ctx, events.StreamWeChat); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !hasSpoolSource(info.Config) {
		t.Fatalf("EnsureStreams dropped the spool's source: %+v", info.Config.Sources)
	}
}

// With the hub unreachable the spool fills up to its limit and then
// refuses new events with ErrSpoolFull; a retry of a stored event is
// still recognised as a duplicate.
func TestFullSpoolRefusesNewEvents(t *testing.T) {
	hub := openBus(t)
	// Nobody listens there: the leaf never reaches a hub.
	u, _ := url.Parse(fmt.Sprintf("nats-leaf://127.0.0.1:%d", freeLeafPort(t)))
	leaf := openLeaf(t, hub, u, 8<<10)
	ctx := context.Background()
	var first bus.Envelope
	for i := 0; ; i++ {
		env := bus.Envelope{ID: fmt.Sprintf("evt-%d", i), Source: "kefu/test"}
		if i == 0 {
			first = env
		}
		_, err := leaf.Publish(ctx, created(fmt.Sprintf("o%d", i)), env)
		if errors.Is(err, bus.ErrSpoolFull) {
			if i == 0 {
				t.Fatal("full before the first event")
			}
			break
		}
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if i > 1000 {
			t.Fatal("the spool never filled up")
		}
	}
	p, err := leaf.Publish(ctx, created("o0"), first)
	if err != nil || !p.Duplicate {
		t.Fatalf("retry of a stored event on a full spool: %+v, %v", p, err)
	}
	st, err := leaf.State(ctx)
	if err != nil || st.Connected || st.Bytes > 8<<10 {
		t.Fatalf("state %+v, %v", st, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(leaf.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	if got["kefu_ingest_spool_messages"] != float64(st.Msgs) || got["kefu_ingest_spool_bytes"] != float64(st.Bytes) || got["kefu_ingest_spool_hub_connected"] != 0 {
		t.Fatalf("metrics %v for %+v", got, st)
	}
}

func TestLeafURLsFollowTheClientURLs(t *testing.T) {
	got, err := bus.LeafURLs([]string{"nats://u:p@nats-0.nats:4222", "tls://nats-1.nats:4222", "nats-2:4222"}, bus.DefaultLeafPort)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"nats-leaf://u:p@nats-0.nats:7422", "tls://nats-1.nats:7422", "nats-leaf://nats-2:7422"}
	for i, u := range got {
		if u.String() != want[i] {
			t.Errorf("%d: %s, want %s", i, u, want[i])
		}
	}
	if _, err := bus.LeafURLs(nil, bus.DefaultLeafPort); err == nil {
		t.Error("no URL accepted")
	}
	if d := bus.DomainFromHost("kefu-ingest-", "ingest-0.ingest.kefu"); d != "kefu-ingest-ingest-0_ingest_kefu" {
		t.Errorf("domain %q", d)
	}
}
