package bus_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/pkg/events"
)

// The server closes a connection for good when a client sends a control
// line over its limit (what a subject built from a stranger's input once
// did): nats.go then stops reconnecting. The bus must dial anew, and what
// other packages hold — streams from Bus.Stream, KV handles from Bus.KeyValue — must work
// on the new connection without a restart.
func TestBusRedialsAfterServerClosedTheConnection(t *testing.T) {
	ctx := context.Background()
	b := openBus(t)
	kv, err := b.KeyValue(ctx, bus.BucketCursors)
	if err != nil {
		t.Fatal(err)
	}
	redialed := make(chan struct{}, 1)
	b.OnRedial(func() { redialed <- struct{}{} })

	first := bus.Conn(b)
	// Over the default 4 KB max_control_line: the server answers
	// "-ERR 'Maximum Control Line Exceeded'" and drops the client.
	if err := first.Publish(strings.Repeat("x", 5000), nil); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, first.IsClosed, "first connection closed")
	if first.LastError() == nil || !strings.Contains(strings.ToLower(first.LastError().Error()), "maximum control line") {
		t.Fatalf("connection closed for another reason: %v", first.LastError())
	}
	select {
	case <-redialed:
	case <-time.After(10 * time.Second):
		t.Fatal("no redial after the server closed the connection")
	}
	if bus.Conn(b) == first {
		t.Fatal("Conn still returns the closed connection")
	}
	natstest.Eventually(t, 10*time.Second, func() bool { return b.Ready(ctx) == nil }, "bus ready again")
	if since := b.UnusableSince(); !since.IsZero() {
		t.Fatalf("UnusableSince = %v on a connected bus", since)
	}

	publish(t, b, "o-after-redial")
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("KV handle taken before the redial: %v", err)
	}
	e, err := kv.Get(ctx, "k")
	if err != nil || string(e.Value()) != "v" {
		t.Fatalf("KV get after redial: %v %v", e, err)
	}
	if _, err := bus.JetStream(b).Stream(ctx, events.StreamWeChat); err != nil {
		t.Fatalf("JS after redial: %v", err)
	}
}

// Readiness follows the connection at once; UnusableSince says since when
// it has been down (what /healthz compares with KEFU_NATS_DOWN_LIMIT), and
// is cleared when the server is back.
func TestBusUnusableSinceFollowsTheServer(t *testing.T) {
	opts := natstest.Options(t)
	srv := natstest.Run(t, opts)
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Config{URLs: []string{srv.ClientURL()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if !b.UnusableSince().IsZero() || b.Ready(ctx) != nil {
		t.Fatal("a connected bus must be usable and ready")
	}

	before := time.Now()
	port := srv.Addr().(*net.TCPAddr).Port
	srv.Shutdown()
	srv.WaitForShutdown()
	natstest.Eventually(t, 5*time.Second, func() bool { return b.Ready(ctx) != nil }, "readiness fails")
	since := b.UnusableSince()
	if since.IsZero() || since.Before(before) {
		t.Fatalf("UnusableSince = %v, want after %v", since, before)
	}
	if again := b.UnusableSince(); !again.Equal(since) {
		t.Fatalf("UnusableSince moved from %v to %v while still down", since, again)
	}

	// Same port and store: the client's reconnect loop finds it.
	o2 := *opts
	o2.Port = port
	natstest.Run(t, &o2)
	natstest.Eventually(t, 10*time.Second, func() bool { return b.UnusableSince().IsZero() && b.Ready(ctx) == nil }, "usable again")
}
