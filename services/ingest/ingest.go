// Package ingest receives WeChat callbacks, verifies and decrypts them,
// and publishes every message and event to JetStream, answering WeChat
// only after JetStream has stored the event: a callback answered "success"
// is never lost, and one that could not be stored gets a 503 so WeChat
// retries it. Retries of a stored callback are dropped by JetStream's
// de-duplication (Nats-Msg-Id) and answered "success" again.
package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// Config of the callback endpoint.
type Config struct {
	AppID  string
	Token  string
	AESKey string // empty: plain mode only
	// Transfer answers customer messages with transfer_customer_service so
	// they enter the 多客服 queue.
	Transfer bool
	// MaxBody is the largest callback body accepted (default 1 MiB).
	MaxBody int64
	// PublishTimeout bounds the wait for JetStream's ack; it stays below
	// WeChat's 5 s so a slow bus yields a 503 WeChat retries, not a timeout.
	PublishTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxBody <= 0 {
		c.MaxBody = 1 << 20
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 4 * time.Second
	}
}

// Validate names what is missing.
func (c Config) Validate() error {
	switch {
	case c.AppID == "":
		return errors.New("ingest: AppID (KEFU_WECHAT_APPID) is required")
	case c.Token == "":
		return errors.New("ingest: Token (KEFU_WECHAT_TOKEN) is required")
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

// Gate decides that a customer's message must not move them into the
// 多客服 queue (a waiting customer's "不等了" — they are leaving it).
type Gate interface {
	HoldTransfer(ctx context.Context, openid, content string) bool
}

// Deps are the service's collaborators.
type Deps struct {
	Publisher  Publisher
	Router     Router // optional
	Gate       Gate   // optional
	Logger     *zap.Logger
	Registerer prometheus.Registerer // optional
	Now        func() time.Time      // optional
}

// Service is the WeChat callback endpoint.
type Service struct {
	cfg     Config
	codec   *wechat.Codec
	pub     Publisher
	router  Router
	gate    Gate
	log     *zap.Logger
	now     func() time.Time
	source  string
	metrics *metrics
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
	s := &Service{cfg: cfg, codec: codec, pub: deps.Publisher, router: deps.Router, gate: deps.Gate, log: deps.Logger,
		now: deps.Now, source: "kefu/ingest/" + cfg.AppID, metrics: newMetrics(deps.Registerer)}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Routes registers the callback endpoint.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.Handle("/wechat/callback", s)
}

// ServeHTTP answers GET (URL verification) and POST (messages and events).
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		s.verify(w, r)
	case http.MethodPost:
		s.callback(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		s.reject(w, "method", http.StatusMethodNotAllowed, "method not allowed")
	}
}

func (s *Service) verify(w http.ResponseWriter, r *http.Request) {
	echo, err := s.codec.VerifyURL(r.URL.Query())
	if err != nil {
		s.rejectErr(w, err)
		return
	}
	s.metrics.verified.Inc()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, echo)
}

func (s *Service) callback(w http.ResponseWriter, r *http.Request) {
	received := s.now()
	body, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxBody+1))
	if err != nil {
		s.reject(w, "read", http.StatusBadRequest, "cannot read body")
		return
	}
	if int64(len(body)) > s.cfg.MaxBody {
		s.reject(w, "too_large", http.StatusRequestEntityTooLarge, "body over "+strconv.FormatInt(s.cfg.MaxBody, 10)+" bytes")
		return
	}
	q := r.URL.Query()
	plain, encrypted, err := s.codec.Open(q, body)
	if err != nil {
		s.rejectErr(w, err)
		return
	}
	cb, err := wechat.ParseCallback(plain)
	if err != nil {
		s.rejectErr(w, err)
		return
	}
	ev, id := Event(cb, s.cfg.AppID, received)
	kind := kindOf(cb)

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
	start := time.Now()
	pub, err := s.pub.Publish(ctx, ev, bus.Envelope{ID: id, Source: s.source, Time: received})
	cancel()
	s.metrics.publishSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		s.metrics.callbacks.WithLabelValues(kind, "publish_failed").Inc()
		s.log.Error("publish callback failed; answering 503 so WeChat retries",
			zap.Error(err), zap.String("event_id", id), zap.String("kind", kind))
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	outcome := "published"
	if pub.Duplicate {
		outcome = "duplicate"
	}
	s.metrics.callbacks.WithLabelValues(kind, outcome).Inc()
	s.log.Debug("callback stored", zap.String("event_id", id), zap.String("kind", kind),
		zap.Uint64("stream_seq", pub.Sequence), zap.Bool("duplicate", pub.Duplicate))

	reply := s.reply(r.Context(), cb)
	if reply == nil {
		io.WriteString(w, wechat.SuccessReply)
		return
	}
	if encrypted {
		env, _, err := s.codec.Seal(reply, strconv.FormatInt(s.now().Unix(), 10), nonce())
		if err != nil {
			// The event is stored; an empty answer is always valid.
			s.log.Error("seal reply", zap.Error(err))
			io.WriteString(w, wechat.SuccessReply)
			return
		}
		reply = env
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Write(reply)
}

// reply is the passive reply to a callback, nil for "success".
func (s *Service) reply(ctx context.Context, cb *wechat.Callback) []byte {
	if !s.cfg.Transfer || cb.MsgType == "event" {
		return nil
	}
	if s.gate != nil && s.gate.HoldTransfer(ctx, cb.FromUserName, cb.Content) {
		return nil
	}
	kf := ""
	if s.router != nil {
		kf = s.router.Route(ctx, cb.FromUserName, cb.Content)
	}
	return wechat.TransferCustomerServiceReply(cb.FromUserName, cb.ToUserName, s.now().Unix(), kf)
}

func kindOf(cb *wechat.Callback) string {
	if cb.MsgType == "event" {
		return "event." + events.Token(cb.Event)
	}
	return "message." + events.Token(cb.MsgType)
}

func (s *Service) rejectErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, wechat.ErrBadSignature):
		s.reject(w, "signature", http.StatusUnauthorized, "bad signature")
	case errors.Is(err, wechat.ErrAppIDMismatch):
		s.reject(w, "appid", http.StatusUnauthorized, "payload is not for this account")
	case errors.Is(err, wechat.ErrNoAESKey):
		s.reject(w, "no_aes_key", http.StatusBadRequest, "encrypted callback but KEFU_WECHAT_AES_KEY is not set")
	case errors.Is(err, wechat.ErrMalformed):
		s.reject(w, "malformed", http.StatusBadRequest, "malformed callback")
	default:
		s.log.Error("callback rejected", zap.Error(err))
		s.reject(w, "invalid", http.StatusBadRequest, "invalid callback")
	}
}

func (s *Service) reject(w http.ResponseWriter, reason string, status int, msg string) {
	s.metrics.rejected.WithLabelValues(reason).Inc()
	http.Error(w, msg, status)
}

func nonce() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
