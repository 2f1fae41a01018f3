package bustest_test

import (
	"context"
	"testing"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/pkg/events"
)

func TestOpenGivesAnOpenBusWithTheAskedStreams(t *testing.T) {
	var named string
	var urls []string
	b, srv := bustest.Open(t, bustest.Streams(events.StreamWeChat, events.StreamKF),
		bustest.Config(func(c *bus.Config) { c.Name = "bustest"; named = c.Name; urls = c.URLs }))
	if named != "bustest" {
		t.Fatal("Config's edit was not applied")
	}
	if !srv.Running() {
		t.Fatal("server not running")
	}
	if len(urls) != 1 || urls[0] != srv.ClientURL() {
		t.Fatalf("Config's edit saw URLs %q, want the server's %q", urls, srv.ClientURL())
	}
	names, err := b.StreamNames(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{events.StreamWeChat: true, events.StreamKF: true}
	for _, n := range names {
		delete(want, n)
	}
	if len(want) > 0 {
		t.Fatalf("streams %v, missing %v", names, want)
	}
}

func TestOpenUsesTheGivenServer(t *testing.T) {
	srv := natstest.Run(t, nil)
	_, got := bustest.Open(t, bustest.Server(srv))
	if got != srv {
		t.Fatal("Open started its own server instead of using the given one")
	}
	if n := srv.NumClients(); n != 1 {
		t.Fatalf("%d clients on the given server, want the bus's 1", n)
	}
}

// A Config edit given before Server still sees that server's URL, and may
// replace the whole configuration, as a test of kefu's own bus settings
// does, without losing it.
func TestConfigEditsSeeTheServerWhateverTheOrder(t *testing.T) {
	srv := natstest.Run(t, nil)
	var seen []string
	b, _ := bustest.Open(t,
		bustest.Config(func(c *bus.Config) { seen = c.URLs; *c = bus.Config{URLs: c.URLs, Name: "replaced"} }),
		bustest.Server(srv))
	if len(seen) != 1 || seen[0] != srv.ClientURL() {
		t.Fatalf("the edit saw URLs %q, want %q", seen, srv.ClientURL())
	}
	if b.ClientURL() != srv.ClientURL() {
		t.Fatalf("bus on %q, want the given server %q", b.ClientURL(), srv.ClientURL())
	}
}
