package bus

import (
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream and Conn give the bus's own tests the handles it lends to
// nobody else: its JetStream context and current connection.
func JetStream(b *Bus) jetstream.JetStream { return b.js() }

// Conn is b's current connection.
func Conn(b *Bus) *nats.Conn { return b.conn() }

// RedialHooks is how many OnRedial hooks b keeps.
func RedialHooks(b *Bus) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.onRedial)
}
