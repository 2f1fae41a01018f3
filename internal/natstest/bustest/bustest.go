// Package bustest opens a kefu bus on an embedded JetStream server for a
// test, the start-up nearly every service test needs. It lives apart from
// natstest because it imports internal/bus, whose own tests use natstest.
package bustest

import (
	"context"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
)

// Option changes how Open starts the server or opens the bus.
type Option func(*setup)

type setup struct {
	srv     *server.Server
	edits   []func(*bus.Config)
	streams []string
}

// Server opens the bus on s, a server the test started itself (with
// leaf-node or account options, say), instead of a fresh one.
func Server(s *server.Server) Option { return func(o *setup) { o.srv = s } }

// Config edits the bus configuration before the bus is opened; URLs is
// already set to the server's client URL, whether Server comes before or
// after. Several edits apply in their order.
func Config(edit func(*bus.Config)) Option {
	return func(o *setup) { o.edits = append(o.edits, edit) }
}

// Streams are created (bus.EnsureStreams) once the bus is open, as the
// publishers of those streams would at start-up.
func Streams(names ...string) Option {
	return func(o *setup) { o.streams = append(o.streams, names...) }
}

// Open starts an embedded JetStream server (natstest.Run) unless Server
// gives one, opens a bus on it and returns both; the bus is closed, then
// the server shut down, when the test ends.
func Open(t testing.TB, opts ...Option) (*bus.Bus, *server.Server) {
	t.Helper()
	var o setup
	for _, opt := range opts {
		opt(&o)
	}
	if o.srv == nil {
		o.srv = natstest.Run(t, nil)
	}
	cfg := bus.Config{URLs: []string{o.srv.ClientURL()}}
	for _, edit := range o.edits {
		edit(&cfg)
	}
	ctx := context.Background()
	b, err := bus.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open bus: %v", err)
	}
	t.Cleanup(b.Close)
	if len(o.streams) > 0 {
		if err := b.EnsureStreams(ctx, o.streams...); err != nil {
			t.Fatalf("ensure streams %v: %v", o.streams, err)
		}
	}
	return b, o.srv
}
