// Package ingest receives WeChat callbacks, verifies and decrypts them,
// and publishes every message and event to JetStream, answering WeChat
// only after JetStream has stored the event: a callback answered "success"
// is never lost, and one that could not be stored gets a 503 so WeChat
// retries it. Retries of a stored callback are dropped by JetStream's
// de-duplication (Nats-Msg-Id) and answered "success" again.
//
// A customer message answered with transfer_customer_service is followed
// by kefu.wechat.kf.queue.joined (events.QueueJoined, ce-id
// kf-joined-<MsgId>), stored before the answer as well: the estimator and
// queue care learn who joined the 多客服 queue when, beyond the 100
// customers getwaitcase lists, without a WeChat API call.
//
// # What a callback must prove
//
// The callback URL faces the internet, and anyone who once saw one (proxy
// access logs keep query strings) holds a valid signature. So:
//
//   - With an EncodingAESKey (Config.AESKey, KEFU_WECHAT_AES_KEY) only
//     encrypted bodies are accepted: msg_signature covers the <Encrypt>
//     value, while the plain signature covers only timestamp and nonce.
//     WeChat's compat and safe modes both send <Encrypt>. While an account
//     is being switched from plain mode, Config.AllowPlaintext
//     (KEFU_WECHAT_ALLOW_PLAINTEXT) accepts plaintext too, with a warning
//     at start-up and in [Service.Warnings].
//   - timestamp must be within Config.Window (KEFU_WECHAT_CALLBACK_WINDOW,
//     default 5m) of the clock, for POST and for GET URL verification;
//     otherwise 401. The window stays below half of JetStream's
//     de-duplication window (New refuses a configuration where it does
//     not), so a replayed callback is either a duplicate or refused.
//   - Whenever a plaintext body is accepted (plain mode, or the migration
//     setting) a signature carries one body only: the first use of a
//     timestamp/nonce signature stores the SHA-256 of its message in the
//     kefu_callback_sigs bucket, shared by every replica; the same
//     signature with another body is refused with 401, the same body again
//     (WeChat's retries) is answered "success" and de-duplicated. When the
//     bucket cannot be reached the answer is 503, so WeChat retries.
//   - Optionally (Config.IPAllowlist, KEFU_WECHAT_IP_ALLOWLIST) callbacks
//     are accepted only from the addresses cgi-bin/getcallbackip lists,
//     refreshed hourly in the background; 403 otherwise, and 503 until a
//     first list is known. The client address comes from Config.ClientIP
//     (trusted proxy headers, KEFU_TRUSTED_PROXIES).
//
// # Bounds
//
// Everything a sender controls is bounded before it reaches the bus, a
// metric or a log: the body (Config.MaxBody, at most the bus's max
// payload), the subject token of MsgType and Event (events.SubjectToken:
// a plain name of up to 64 characters, else "other"), the event id
// (events.MaxIDLength) and the metric labels (known message types and
// events, else "other"). An event larger than the bus accepts is refused
// with 413, never answered 503 for ever.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// Config of the callback endpoint.
type Config struct {
	AppID  string
	Token  string
	AESKey string // empty: plain mode only
	// AllowPlaintext, with AESKey set, still accepts plaintext callbacks
	// signed by signature alone: only while the account is switched from
	// plain mode (KEFU_WECHAT_ALLOW_PLAINTEXT).
	AllowPlaintext bool
	// Window is how far timestamp may be from the clock, either way
	// (default 5m, KEFU_WECHAT_CALLBACK_WINDOW). It must stay below half the
	// bus's de-duplication window; left zero, it is shortened to fit one.
	Window time.Duration
	// Transfer answers customer messages with transfer_customer_service so
	// they enter the 多客服 queue.
	Transfer bool
	// MaxBody is the largest callback body accepted (default 1 MiB, or the
	// bus's max payload when that is smaller).
	MaxBody int64
	// PublishTimeout bounds the wait for JetStream's ack; it stays below
	// WeChat's 5 s so a slow bus yields a 503 WeChat retries, not a timeout.
	PublishTimeout time.Duration
	// IPAllowlist accepts callbacks only from the addresses WeChat's
	// getcallbackip lists (Deps.CallbackIPs), refreshed every IPRefresh
	// (default 1h) by Start.
	IPAllowlist bool
	IPRefresh   time.Duration
	// ClientIP is the address a request came from; nil: its TCP peer.
	// Behind a reverse proxy, pass one that honours trusted proxy headers.
	ClientIP func(*http.Request) netip.Addr
}

// DefaultWindow is the default freshness window of callback timestamps.
const DefaultWindow = 5 * time.Minute

func (c *Config) setDefaults() {
	c.MaxBody = config.PositiveOr(c.MaxBody, 1<<20)
	c.PublishTimeout = config.PositiveOr(c.PublishTimeout, 4*time.Second)
	c.IPRefresh = config.PositiveOr(c.IPRefresh, time.Hour)
	if c.ClientIP == nil {
		c.ClientIP = peerIP
	}
}

// Validate names what is missing.
func (c Config) Validate() error {
	switch {
	case c.AppID == "":
		return errors.New("ingest: AppID (KEFU_WECHAT_APPID) is required")
	case c.Token == "":
		return errors.New("ingest: Token (KEFU_WECHAT_TOKEN) is required")
	case c.Window < 0:
		return errors.New("ingest: Window (KEFU_WECHAT_CALLBACK_WINDOW) must not be negative")
	}
	return nil
}

// Publisher stores an event on the bus and returns once it is acknowledged.
type Publisher interface {
	Publish(ctx context.Context, ev events.Event, env bus.Envelope) (bus.Published, error)
}

// Router picks the agent a customer's message is transferred to (keyword
// routing); "" lets 多客服 assign any agent.
type Router interface {
	Route(ctx context.Context, openid, content string) string
}

// Chooser answers the customers' choice of agent (kfadmin.Router): the
// menu or an explanation as a text reply, or the agent to transfer to;
// handled false leaves the message to the Router.
type Chooser interface {
	Choose(ctx context.Context, cb *wechat.Callback) (text, kfAccount string, handled bool)
}

// Gate decides that a customer's message must not move them into the
// 多客服 queue (a waiting customer's "不等了" — they are leaving it).
type Gate interface {
	HoldTransfer(ctx context.Context, openid, content string) bool
}

// CallbackIPSource lists WeChat's callback addresses (wechat.Client).
type CallbackIPSource interface {
	GetCallbackIP(ctx context.Context) ([]string, error)
}

// Deps are the service's collaborators.
type Deps struct {
	Publisher Publisher
	Router    Router  // optional
	Chooser   Chooser // optional
	Gate      Gate    // optional
	// Signatures is the kefu_callback_sigs bucket, needed whenever
	// plaintext bodies are accepted. Nil: opened through the Publisher when
	// it is a *bus.Bus.
	Signatures jetstream.KeyValue
	// CallbackIPs is required with Config.IPAllowlist.
	CallbackIPs CallbackIPSource
	Logger      *zap.Logger
	Registerer  prometheus.Registerer // optional
	Now         func() time.Time      // optional
}

// The Publisher may tell its limits; *bus.Bus does.
type (
	maxPayloader      interface{ MaxPayload() int64 }
	duplicateWindower interface{ DuplicateWindow() time.Duration }
	keyValuer         interface {
		KeyValue(ctx context.Context, bucket string, opts ...bus.BucketOption) (jetstream.KeyValue, error)
	}
)

// Service is the WeChat callback endpoint.
type Service struct {
	cfg      Config
	codec    *wechat.Codec
	pub      Publisher
	router   Router
	chooser  Chooser
	gate     Gate
	log      *zap.Logger
	now      func() time.Time
	source   string
	metrics  *metrics
	warnings []string
	// sigs guards plaintext signatures; nil when only encrypted bodies
	// are accepted.
	sigs *sigGuard
	// ips is the callback allow-list; nil when off.
	ips *ipAllowlist
}

// New checks the configuration and builds the service.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Publisher == nil {
		return nil, errors.New("ingest: a Publisher is required")
	}
	codec, err := wechat.NewCodec(cfg.Token, cfg.AppID, cfg.AESKey)
	if err != nil {
		return nil, fmt.Errorf("ingest: KEFU_WECHAT_AES_KEY: %w", err)
	}
	codec.RequireEncrypted = cfg.AESKey != "" && !cfg.AllowPlaintext
	if mp, ok := deps.Publisher.(maxPayloader); ok {
		// A body over the bus's limit can never become an event: refuse it
		// at the door.
		if max := mp.MaxPayload(); max > 0 && cfg.MaxBody > max {
			cfg.MaxBody = max
		}
	}
	if err := fitWindow(&cfg, deps.Publisher); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, codec: codec, pub: deps.Publisher, router: deps.Router, chooser: deps.Chooser, gate: deps.Gate, log: deps.Logger,
		now: deps.Now, source: "kefu/ingest/" + cfg.AppID, metrics: newMetrics(deps.Registerer)}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if !codec.RequireEncrypted {
		kv := deps.Signatures
		if kv == nil {
			kvr, ok := deps.Publisher.(keyValuer)
			if !ok {
				return nil, errors.New("ingest: plaintext callbacks are accepted, so Deps.Signatures (the kefu_callback_sigs bucket) is required")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			kv, err = kvr.KeyValue(ctx, bus.BucketCallbackSigs)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("ingest: %w", err)
			}
		}
		s.sigs = &sigGuard{kv: kv}
	}
	if cfg.IPAllowlist {
		if deps.CallbackIPs == nil {
			return nil, errors.New("ingest: the IP allow-list (KEFU_WECHAT_IP_ALLOWLIST) needs Deps.CallbackIPs")
		}
		s.ips = &ipAllowlist{src: deps.CallbackIPs}
	}
	switch {
	case cfg.AESKey == "":
		s.warnings = append(s.warnings, "plain mode: KEFU_WECHAT_AES_KEY is not set, so callback bodies are not authenticated "+
			"(the signature covers only timestamp and nonce); switch the account to safe mode and set the key")
	case cfg.AllowPlaintext:
		s.warnings = append(s.warnings, "KEFU_WECHAT_ALLOW_PLAINTEXT is on: plaintext callbacks signed without the body are accepted "+
			"beside encrypted ones; turn it off once the account is in compat or safe mode")
	}
	for _, w := range s.warnings {
		s.log.Warn(w)
	}
	return s, nil
}

// fitWindow sets the freshness window and checks it against the bus's
// de-duplication window: a replay must be either a duplicate or stale.
// Twice the window, because a timestamp is fresh from Window before the
// clock to Window after it.
func fitWindow(cfg *Config, pub Publisher) error {
	dw, ok := pub.(duplicateWindower)
	if !ok || dw.DuplicateWindow() <= 0 {
		if cfg.Window == 0 {
			cfg.Window = DefaultWindow
		}
		return nil
	}
	dup := dw.DuplicateWindow()
	if cfg.Window == 0 {
		// A bus opened with a short de-duplication window (tests, tools)
		// gets a shorter window rather than a gap.
		cfg.Window = min(DefaultWindow, (dup-time.Second)/2)
	}
	if 2*cfg.Window >= dup {
		return fmt.Errorf("ingest: the callback window (KEFU_WECHAT_CALLBACK_WINDOW, %s) must be less than half the de-duplication window (%s)", cfg.Window, dup)
	}
	return nil
}

// Warnings are one-line notes about an unsafe configuration (no secrets),
// also logged at start-up; /readyz shows them to token holders.
func (s *Service) Warnings() []string { return append([]string(nil), s.warnings...) }

// Window is the freshness window in effect.
func (s *Service) Window() time.Duration { return s.cfg.Window }

// MaxBody is the body limit in effect.
func (s *Service) MaxBody() int64 { return s.cfg.MaxBody }
