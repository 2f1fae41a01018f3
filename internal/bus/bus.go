// Package bus is kefu's connection to NATS JetStream: it connects to an
// external cluster or starts an embedded server, creates the streams and KV
// buckets of the contract idempotently, publishes events with CloudEvents
// headers and a de-duplication id (waiting for JetStream's ack), and
// consumes through durable consumers it creates itself — never ones a
// library would delete on close — with manual ack, bounded in-flight
// messages, delayed redelivery and a dead-letter subject.
package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
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

// Bus is one NATS connection with JetStream.
type Bus struct {
	cfg      Config
	NC       *nats.Conn
	JS       jetstream.JetStream
	embedded *server.Server
	log      *zap.Logger
	draining atomic.Bool
	metrics  *metrics
	lag      *lagCollector
	// url and opts let subscribers open connections of their own:
	// watermill's subscriber drains its connection on close.
	url  string
	opts []nats.Option
}

// Open connects to cfg.URLs, or starts the embedded server and connects to it.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	cfg.setDefaults()
	auth, err := cfg.credentials()
	if err != nil {
		return nil, err
	}
	b := &Bus{cfg: cfg, log: cfg.Logger, metrics: newMetrics(cfg.Registerer)}
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
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("nats disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("nats reconnected", zap.String("url", nc.ConnectedUrlRedacted()))
		}),
	}
	opts = append(opts, auth.options...)
	b.url, b.opts = url, opts
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.shutdownEmbedded()
		return nil, fmt.Errorf("connect nats %s: %w", redactURL(url), err)
	}
	b.NC = nc
	if err := waitConnected(ctx, nc); err != nil {
		b.Close()
		return nil, fmt.Errorf("connect nats %s: %w", redactURL(url), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b.JS = js
	b.lag = newLagCollector(js)
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(b.lag)
	}
	return b, nil
}

func waitConnected(ctx context.Context, nc *nats.Conn) error {
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for !nc.IsConnected() {
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
	return redactURL(b.NC.ConnectedUrl())
}

// Embedded reports whether this process runs the NATS server itself.
func (b *Bus) Embedded() bool { return b.embedded != nil }

// Ready reports whether the connection is up and JetStream answers.
func (b *Bus) Ready(ctx context.Context) error {
	if b.draining.Load() {
		return errors.New("draining")
	}
	if !b.NC.IsConnected() {
		return fmt.Errorf("nats %s", b.NC.Status())
	}
	if _, err := b.JS.AccountInfo(ctx); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// Drain stops the subscriptions, flushes what was published and closes the
// connection; then stops the embedded server.
func (b *Bus) Drain() error {
	b.draining.Store(true)
	var err error
	if b.NC != nil && !b.NC.IsClosed() {
		closed := make(chan struct{})
		b.NC.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err = b.NC.Drain(); err == nil {
			select {
			case <-closed:
			case <-time.After(30 * time.Second):
				b.NC.Close()
			}
		} else {
			b.NC.Close()
		}
	}
	b.shutdownEmbedded()
	return err
}

// Close closes at once, without draining.
func (b *Bus) Close() {
	if b.NC != nil {
		b.NC.Close()
	}
	b.shutdownEmbedded()
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
