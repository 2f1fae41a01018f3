// Package bus is kefu's connection to NATS JetStream: it connects to an
// external cluster or starts an embedded server, creates the streams and KV
// buckets of the contract idempotently, publishes events with CloudEvents
// headers and a de-duplication id (waiting for JetStream's ack), and
// consumes through durable consumers it creates itself — never ones a
// library would delete on close — with manual ack, bounded in-flight
// messages, delayed redelivery and a dead-letter subject.
//
// Consumers are plain nats.go queue subscriptions to the deliver subject of
// a push consumer that Subscribe creates with the jetstream API, each on a
// connection of its own. kefu used watermill-nats for this at first; it was
// dropped because its subscriber cannot stop taking messages while a
// dependency is down without closing (so a store outage could only be
// ridden out by redelivering until MaxDeliver, then dead-lettering), and
// because the Router and middleware it brings were not used: the retry,
// back-off, pause and dead-letter rules live in subscribe.go, one place.
package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
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

// ErrListenInUse is returned when the embedded server's address is taken.
var ErrListenInUse = errors.New("address in use")

// Bus is one NATS connection with JetStream. When the server closes the
// connection for good, the bus dials a new one (see redial): JS always
// reaches the current connection, and Conn returns it.
type Bus struct {
	cfg Config
	// NC is the connection Open made. After a redial it is closed: code
	// that runs as long as the process uses Conn instead.
	NC *nats.Conn
	// JS is JetStream on the current connection, whichever it is.
	JS       jetstream.JetStream
	gen      atomic.Pointer[generation]
	embedded *server.Server
	log      *zap.Logger
	draining atomic.Bool
	metrics  *metrics
	lag      *lagCollector
	// url and opts let subscribers open connections of their own, so that
	// draining one consumer's connection on close leaves the others be.
	url  string
	opts []nats.Option

	// mu orders a redial against Drain and Close: once closing is set no
	// new connection is swapped in.
	mu        sync.Mutex
	closing   bool
	downSince time.Time // zero while the bus is usable
	onRedial  []func()
	tracked   map[*nats.Conn]struct{}
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
	b.NC = nc
	js, err := jetstream.New(nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b.gen.Store(&generation{nc: nc, js: js})
	b.JS = &liveJS{b: b}
	if err := waitConnected(ctx, nc); err != nil {
		b.Close()
		return nil, fmt.Errorf("connect nats %s: %w", redactURL(url), err)
	}
	b.lag = newLagCollector(b.JS)
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

// Conn is the current NATS connection (a new one after a redial).
func (b *Bus) Conn() *nats.Conn { return b.gen.Load().nc }

// OnRedial registers f to run after each redial, once the new connection
// is in place: what is bound to a connection (a subscription, a KV watcher)
// is re-opened there. f must not block.
func (b *Bus) OnRedial(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.onRedial = append(b.onRedial, f)
}

// Track counts nc — a connection of its own, such as a consumer's — in
// the bus's health: while it is not connected, Ready fails and
// UnusableSince runs, so that a consumer that cannot replace a connection
// the server closed for good ends in a restart instead of silence. untrack
// removes it (call it before closing nc on purpose, or once it has been
// replaced).
func (b *Bus) Track(nc *nats.Conn) (untrack func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tracked == nil {
		b.tracked = map[*nats.Conn]struct{}{}
	}
	b.tracked[nc] = struct{}{}
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.tracked, nc)
	}
}

// trackedDown returns the status of a tracked connection that is not
// connected, or "". b.mu must be held.
func (b *Bus) trackedDown() string {
	for nc := range b.tracked {
		if !nc.IsConnected() {
			return fmt.Sprintf("connection %s %s", nc.Opts.Name, nc.Status())
		}
	}
	return ""
}

// UnusableSince is when the bus stopped being usable — disconnected,
// closed, or between a close and the new connection; or a tracked
// connection down — or zero while it is connected. /healthz fails once
// this is older than KEFU_NATS_DOWN_LIMIT.
func (b *Bus) UnusableSince() time.Time {
	g := b.gen.Load()
	b.mu.Lock()
	defer b.mu.Unlock()
	if g != nil && g.nc.IsConnected() && !b.closing && b.trackedDown() == "" {
		b.downSince = time.Time{}
	} else if b.downSince.IsZero() {
		b.downSince = time.Now()
	}
	return b.downSince
}

// current reports whether nc is the bus's connection of the moment (the
// handlers are shared with subscribers' own connections and outlive a
// redial).
func (b *Bus) current(nc *nats.Conn) bool {
	g := b.gen.Load()
	return g != nil && g.nc == nc
}

func (b *Bus) markDown(nc *nats.Conn) {
	if !b.current(nc) {
		return
	}
	b.mu.Lock()
	if b.downSince.IsZero() {
		b.downSince = time.Now()
	}
	b.mu.Unlock()
}

func (b *Bus) markUp(nc *nats.Conn) {
	if !b.current(nc) || !nc.IsConnected() {
		return
	}
	b.mu.Lock()
	b.downSince = time.Time{}
	b.mu.Unlock()
}

// closed runs when a connection is closed for good. Unless the bus itself
// is closing, the current one is replaced.
func (b *Bus) closed(nc *nats.Conn) {
	if !b.current(nc) {
		return
	}
	b.mu.Lock()
	closing := b.closing
	if !closing && b.downSince.IsZero() {
		b.downSince = time.Now()
	}
	b.mu.Unlock()
	if closing {
		return
	}
	b.log.Error("nats connection closed by the server for good; dialing a new one", zap.Error(nc.LastError()))
	go b.redial(b.gen.Load())
}

// redial opens a new connection with the same options and swaps it in.
// nats.Connect with RetryOnFailedConnect returns at once and keeps trying
// in the background, so the loop only repeats when the options themselves
// fail (say, an unreadable credentials file).
func (b *Bus) redial(old *generation) {
	wait := 250 * time.Millisecond
	for {
		nc, err := nats.Connect(b.url, b.opts...)
		var js jetstream.JetStream
		if err == nil {
			if js, err = jetstream.New(nc); err != nil {
				nc.Close()
			}
		}
		if err == nil {
			b.mu.Lock()
			if b.closing {
				b.mu.Unlock()
				nc.Close()
				return
			}
			b.gen.Store(&generation{nc: nc, js: js, n: old.n + 1})
			b.redials.Add(1)
			hooks := append([]func(){}, b.onRedial...)
			b.mu.Unlock()
			b.markUp(nc)
			for _, f := range hooks {
				f()
			}
			return
		}
		b.log.Warn("nats redial failed; retrying", zap.Error(err), zap.Duration("in", wait))
		select {
		case <-b.stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func waitConnected(ctx context.Context, nc *nats.Conn) error {
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() {
		// A caller's shorter deadline is reported as such, not as 10 s.
		if err := ctx.Err(); err != nil {
			return withLastError(err, nc)
		}
		if time.Now().After(deadline) {
			return withLastError(errors.New("no server answered within 10s"), nc)
		}
		select {
		case <-ctx.Done():
			return withLastError(ctx.Err(), nc)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// credentials are how kefu authenticates: the client options, and what
// an embedded server requires.
type credentials struct {
	options []nats.Option
	users   []*server.User
	nkeys   []*server.NkeyUser
}

// credentials checks the configured credentials. Errors name the variable
// at fault and never quote a value.
func (c *Config) credentials() (credentials, error) {
	var cr credentials
	set := 0
	for _, v := range []string{c.CredsFile, c.User + c.Password, c.NKeySeed} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return cr, errors.New("set one of KEFU_NATS_CREDS, KEFU_NATS_USER (with KEFU_NATS_PASSWORD) and KEFU_NATS_NKEY_SEED, not several")
	}
	switch {
	case c.CredsFile != "":
		cr.options = append(cr.options, nats.UserCredentials(c.CredsFile))
	case c.User != "" || c.Password != "":
		if c.User == "" || c.Password == "" {
			return cr, errors.New("KEFU_NATS_USER and KEFU_NATS_PASSWORD go together: set both or neither")
		}
		cr.options = append(cr.options, nats.UserInfo(c.User, c.Password))
		// No Permissions: kefu's own user may do everything.
		cr.users = []*server.User{{Username: c.User, Password: c.Password}}
	case c.NKeySeed != "":
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(c.NKeySeed)))
		if err != nil {
			return cr, errors.New("KEFU_NATS_NKEY_SEED is not a valid nkey seed (want a user seed, SU…, e.g. from `nk -gen user`)")
		}
		pub, err := kp.PublicKey()
		if err != nil || !nkeys.IsValidPublicUserKey(pub) {
			return cr, errors.New("KEFU_NATS_NKEY_SEED is not the seed of a user nkey (want SU…, e.g. from `nk -gen user`)")
		}
		cr.options = append(cr.options, nats.Nkey(pub, kp.Sign))
		cr.nkeys = []*server.NkeyUser{{Nkey: pub}}
	}
	return cr, nil
}

// isLoopback reports whether host (of KEFU_NATS_LISTEN) is reachable only
// from this machine. "" and 0.0.0.0 are every interface.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// withLastError adds why the last connection attempt failed (a refused
// password reads "authorization violation", not just a timeout). The
// server's errors name no credentials.
func withLastError(err error, nc *nats.Conn) error {
	if last := nc.LastError(); last != nil {
		return fmt.Errorf("%w (last error: %w)", err, last)
	}
	return err
}

func startEmbedded(cfg Config, auth credentials) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("KEFU_NATS_LISTEN %q: %w", cfg.Listen, err)
	}
	var port int
	if _, err := fmt.Sscanf(portStr, "%d", &port); err != nil {
		return nil, fmt.Errorf("KEFU_NATS_LISTEN %q: bad port", cfg.Listen)
	}
	if port != 0 {
		// nats-server logs and exits on a busy port; ask first for a clear error.
		l, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS cannot listen on %s (KEFU_NATS_LISTEN): %w; another NATS server may be running there: set KEFU_NATS_URL=nats://%s to use it, or choose another KEFU_NATS_LISTEN", cfg.Listen, ErrListenInUse, cfg.Listen)
		}
		l.Close()
	} else {
		port = server.RANDOM_PORT
	}
	storeDir := filepath.Join(cfg.DataDir, "jetstream")
	if err := os.MkdirAll(storeDir, 0o750); err != nil {
		return nil, fmt.Errorf("create KEFU_DATA_DIR: %w", err)
	}
	if len(auth.users) == 0 && len(auth.nkeys) == 0 && !isLoopback(host) {
		cfg.Logger.Warn("embedded NATS listens beyond this machine without credentials: whoever reaches the port can read every event and the WeChat access token in kefu_token, and publish forged events; set KEFU_NATS_USER and KEFU_NATS_PASSWORD (or KEFU_NATS_NKEY_SEED), or listen on 127.0.0.1",
			zap.String("listen", cfg.Listen))
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "kefu-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
		NoLog:      true,
		// With credentials configured, every client must present them.
		Users: auth.users,
		Nkeys: auth.nkeys,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats on %s did not start", cfg.Listen)
	}
	return srv, nil
}

// ClientURL is the URL other processes (the nats CLI, other teams) use to reach this bus.
func (b *Bus) ClientURL() string {
	if b.embedded != nil {
		return b.embedded.ClientURL()
	}
	return redactURL(b.Conn().ConnectedUrl())
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
	down := b.trackedDown()
	b.mu.Unlock()
	if down != "" {
		return errors.New("nats " + down)
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
	return b.NC
}

func (b *Bus) shutdownEmbedded() {
	if b.embedded != nil {
		b.embedded.Shutdown()
		b.embedded.WaitForShutdown()
	}
}

// redactURL drops user:password from a NATS URL list for logs and errors.
func redactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "***" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// js is JetStream on the bus's current connection.
func (b *Bus) js() jetstream.JetStream { return b.JS }
