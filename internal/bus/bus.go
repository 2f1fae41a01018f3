package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Config says where the bus is.
type Config struct {
	// URLs are external NATS servers (comma-separated in KEFU_NATS_URL).
	// Empty: start an embedded server.
	URLs []string
	// Listen is the embedded server's client address ("127.0.0.1:4222").
	// Port 0 picks a free port.
	Listen string
	// CredsFile is a NATS credentials file (external servers).
	CredsFile string
	// User and Password, or NKeySeed (a user seed, "SU…"), are the
	// credentials kefu connects with; at most one of these and CredsFile.
	// With no URLs the embedded server requires the same credentials of
	// every client, so that nobody who merely reaches its port can read the
	// events or the WeChat access token in kefu_token. They never appear in
	// a log line or an error.
	User     string
	Password string
	NKeySeed string
	// DataDir holds the embedded server's JetStream store (DataDir/jetstream).
	DataDir string
	// Replicas of streams and KV buckets: 1 embedded, 3 in a cluster.
	// Zero: 1 for the embedded server, else 1 unless set.
	Replicas int
	// StreamMaxAge is the retention of the event streams (replay window).
	StreamMaxAge time.Duration
	// RetryMaxBackoff caps the delay between two tries of a message whose
	// handler failed transiently, for consumers that set no MaxBackoff of
	// their own (KEFU_RETRY_MAX_BACKOFF; zero: 2 minutes).
	RetryMaxBackoff time.Duration
	// DuplicateWindow is JetStream's de-duplication window (at least 2 minutes).
	DuplicateWindow time.Duration
	// Name identifies this process in NATS connection lists.
	Name   string
	Logger *zap.Logger
	// Registerer receives the bus metrics; nil: not registered.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:4222"
	}
	if c.DataDir == "" {
		c.DataDir = "./kefu-data"
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.StreamMaxAge <= 0 {
		c.StreamMaxAge = 720 * time.Hour
	}
	if c.DuplicateWindow < 2*time.Minute {
		c.DuplicateWindow = 2 * time.Minute
	}
	if c.Name == "" {
		c.Name = "kefu"
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Bus is one NATS connection with JetStream. When the server closes the
// connection for good, the bus dials a new one (see redial): every method
// reaches the current connection. It lends out neither (doc.go).
type Bus struct {
	cfg Config
	// opened is the connection Open made; after a redial it is closed,
	// and conn is the current one.
	opened *nats.Conn
	// live is JetStream on the current connection, whichever it is.
	live     jetstream.JetStream
	gen      atomic.Pointer[generation]
	embedded *server.Server
	log      *zap.Logger
	draining atomic.Bool
	metrics  *metrics
	lag      *lagCollector
	// url and opts dial a new connection when the server closed the
	// current one for good (redial).
	url  string
	opts []nats.Option

	// mu orders a redial against Drain and Close: once closing is set no
	// new connection is swapped in.
	mu        sync.Mutex
	closing   bool
	downSince time.Time // zero while the bus is usable
	onRedial  []*func()
	stalled   map[string]error // durable → why its Consume is down
	redials   atomic.Int64
	stop      chan struct{} // closed by Drain and Close: ends a redial loop
}

// Open connects to cfg.URLs, or starts the embedded server and connects to it.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	cfg.setDefaults()
	auth, err := cfg.credentials()
	if err != nil {
		return nil, err
	}
	b := &Bus{cfg: cfg, log: cfg.Logger, metrics: newMetrics(cfg.Registerer), stop: make(chan struct{})}
	url := strings.Join(cfg.URLs, ",")
	if len(cfg.URLs) == 0 {
		srv, err := startEmbedded(cfg, auth)
		if err != nil {
			return nil, err
		}
		b.embedded = srv
		url = srv.ClientURL()
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		// A refused password (credentials rotated on the server before
		// here) is retried like any other failure instead of closing the
		// connection after the second refusal.
		nats.IgnoreAuthErrorAbort(),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			b.markDown(nc)
			if err != nil {
				b.log.Warn("nats disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.markUp(nc)
			b.log.Info("nats reconnected", zap.String("url", nc.ConnectedUrlRedacted()))
		}),
		nats.ConnectHandler(func(nc *nats.Conn) { b.markUp(nc) }),
		// nats.go's default prints asynchronous errors (the server's -ERR,
		// a slow consumer) to stderr, outside kefu's log.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			b.log.Warn("nats error", zap.Error(err))
		}),
		// nats.go gives up on a connection for good when the server sends
		// an error it does not treat as transient (say "maximum control
		// line exceeded" after a bad request): the bus then dials anew.
		nats.ClosedHandler(func(nc *nats.Conn) { b.closed(nc) }),
	}
	opts = append(opts, auth.options...)
	b.url, b.opts = url, opts
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.shutdownEmbedded()
		return nil, fmt.Errorf("connect nats %s: %w", redactURL(url), err)
	}
	b.opened = nc
	js, err := jetstream.New(nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b.gen.Store(&generation{nc: nc, js: js})
	b.live = &liveJS{b: b}
	if err := waitConnected(ctx, nc); err != nil {
		b.Close()
		return nil, fmt.Errorf("connect nats %s: %w", redactURL(url), err)
	}
	b.lag = newLagCollector(b.live)
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(b.lag,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "kefu_nats_unusable_seconds",
				Help: "How long the NATS connection has been unusable (disconnected, closed or being redialed); 0 while it is up.",
			}, func() float64 {
				if since := b.UnusableSince(); !since.IsZero() {
					return time.Since(since).Seconds()
				}
				return 0
			}),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "kefu_nats_redials_total",
				Help: "New connections dialed after the server closed the previous one for good.",
			}, func() float64 { return float64(b.redials.Load()) }))
	}
	return b, nil
}

// conn is the current NATS connection (a new one after a redial).
func (b *Bus) conn() *nats.Conn { return b.gen.Load().nc }

// ClientURL is the URL other processes (the nats CLI, other teams) use to reach this bus.
func (b *Bus) ClientURL() string {
	if b.embedded != nil {
		return b.embedded.ClientURL()
	}
	return redactURL(b.conn().ConnectedUrl())
}

// Embedded reports whether this process runs the NATS server itself.
func (b *Bus) Embedded() bool { return b.embedded != nil }

// Ready reports whether the connection is up and JetStream answers.
func (b *Bus) Ready(ctx context.Context) error {
	if b.draining.Load() {
		return errors.New("draining")
	}
	g := b.gen.Load()
	if !g.nc.IsConnected() {
		return fmt.Errorf("nats %s", g.nc.Status())
	}
	b.mu.Lock()
	down := b.stalledDown()
	b.mu.Unlock()
	if down != "" {
		return errors.New(down)
	}
	if _, err := g.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// Drain stops the subscriptions, flushes what was published and closes the
// connection; then stops the embedded server. It takes at most 30 s.
func (b *Bus) Drain() error { return b.DrainWithin(30 * time.Second) }

// DrainWithin is Drain bounded by d (the share of the shutdown grace left
// for it): what has not drained by then is closed.
func (b *Bus) DrainWithin(d time.Duration) error {
	b.draining.Store(true)
	nc := b.beginClose()
	var err error
	if nc != nil && !nc.IsClosed() {
		closed := make(chan struct{})
		nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err = nc.Drain(); err == nil {
			select {
			case <-closed:
			case <-time.After(d):
				nc.Close()
			}
		} else {
			nc.Close()
		}
	}
	b.shutdownEmbedded()
	return err
}

// Close closes at once, without draining.
func (b *Bus) Close() {
	if nc := b.beginClose(); nc != nil {
		nc.Close()
	}
	b.shutdownEmbedded()
}

// beginClose stops redialing and returns the connection to close.
func (b *Bus) beginClose() *nats.Conn {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closing {
		b.closing = true
		if b.stop != nil {
			close(b.stop)
		}
	}
	if g := b.gen.Load(); g != nil {
		return g.nc
	}
	return b.opened
}

func (b *Bus) shutdownEmbedded() {
	if b.embedded != nil {
		b.embedded.Shutdown()
		b.embedded.WaitForShutdown()
	}
}

// js is JetStream on the bus's current connection.
func (b *Bus) js() jetstream.JetStream { return b.live }
