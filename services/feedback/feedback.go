// Package feedback is kefu's feedback role: it consumes Tucao posts
// (kefu.tucao.post.>) and 多客服 session events (kefu.wechat.kf.session.>)
// from JetStream through two durable consumers, writes them in batches to
// the feedback store (SQLite or PostgreSQL, package store), and serves them
// over HTTP (package api): posts with the session each is linked to, and
// closed sessions with their posts.
//
// # Delivery
//
// A message is acknowledged only after the transaction holding its row has
// committed. Handlers hand their decoded item to a batcher of their kind
// and wait: the batcher writes a batch when it holds BatchSize items (or
// as many as the consumer handles at once, Concurrency), when no item has
// come for Idle, or Linger after its first item. One write runs at a time
// per kind; while it commits, the next batch gathers and is written as soon
// as the first one is done, so batches grow with the load. A store failure
// fails every message of the batch, which
// JetStream redelivers after the consumer's backoff, for as long as the
// store fails: a store that is away never sends a message to the
// dead-letter subject. While the store's Ping fails too, both consumers
// stop taking messages (Ready reports it) and resume when it answers. The
// store's writes are idempotent, so a redelivered message never makes a
// second row. When the
// store rejects a batch as invalid (store.ErrInvalidPost,
// store.ErrInvalidSessionFact, or a database error about the data itself,
// see store.IsDataError), the batch is split until the rejected items
// are alone: those go to kefu.dlq.feedback at once, the others are stored.
// A body that is not JSON of the expected event goes to the dead-letter
// subject without reaching the store.
//
// # Sessions
//
// kf_create_session and kf_close_session are stored as session facts.
// kf_switch_session is acknowledged and not stored: a session is linked to
// a post through its close, which names the agent who ended it, and a
// transfer changes neither the session's start nor its end. Subjects of
// either filter that kefu does not know yet are acknowledged and skipped,
// so a newer publisher never fills the dead-letter subject.
//
// # Pseudonyms
//
// The feedback link logs customers in to Tucao under a pseudonym, a keyed
// HMAC of their openid (package feedbacklink), so their posts carry it
// instead of the openid. With Deps.Pseudonym (the key is known) every fact
// is stored with the customer's pseudonym, and the facts stored without one
// — by an older kefu, or while the key was not configured — are filled at
// Start and every FillInterval after, in the background. Posts then link
// to sessions by openid (posts from before) or by pseudonym, and
// GET /api/feedback/posts?openid= finds both. Without it posts link by
// openid only.
package feedback

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/feedback/api"
	"github.com/kefu-io/kefu/services/feedback/store"
)

// Role names the service's dead-letter subject, kefu.dlq.feedback.
const Role = "feedback"

// Durable consumers of the service.
const (
	DurablePosts    = "feedback-posts"    // KEFU_TUCAO, kefu.tucao.post.>
	DurableSessions = "feedback-sessions" // KEFU_WECHAT, kefu.wechat.kf.session.>
)

// Subjects the consumers filter on.
const (
	FilterPosts    = "kefu.tucao.post.>"
	FilterSessions = events.SubjectSessionAll
)

// Kinds of items, the kind label of the metrics.
const (
	KindPost    = "post"
	KindSession = "session"
)

// Config tunes the batching and the two durable consumers.
type Config struct {
	// BatchSize is the most items one transaction writes (default 200).
	BatchSize int
	// Linger is how long a batch waits for more items after its first
	// one (default 20ms): the latency a message pays when traffic is low.
	Linger time.Duration
	// Idle writes a batch early when no item has come for this long
	// (default 2ms; negative: never): the handlers a commit releases
	// refill the next batch in a burst, and a quiet pipe should not wait
	// out the whole Linger.
	Idle time.Duration
	// WriteTimeout bounds the writing of one batch, the splitting of a
	// rejected batch included (default 10s).
	WriteTimeout time.Duration
	// Concurrency is how many messages each consumer handles at once
	// (default 64). A handler waits for its batch, so this is also the
	// most items a batch of one kind can gather; a batch is written as
	// soon as it holds that many.
	Concurrency int
	// MaxAckPending bounds each consumer's unacknowledged messages
	// (default 2×Concurrency): enough to refill the handlers while a batch
	// commits, few enough that no message waits in a local buffer until
	// its AckWait runs out.
	MaxAckPending int
	// AckWait is how long JetStream waits for an ack before redelivering
	// (default 30s); it must exceed Linger + 2×WriteTimeout: an item may
	// wait for the write before its own.
	AckWait time.Duration
	// MaxDeliver is the delivery from which a message that still cannot
	// be written is logged as an error (default 5). It is retried
	// regardless: only a message the store rejects goes to
	// kefu.dlq.feedback.
	MaxDeliver int
	// Backoff is the delay before each redelivery after a failed write;
	// it doubles after its last value up to MaxBackoff (default: the
	// bus's, 1s, 2s, 4s, …).
	Backoff []time.Duration
	// MaxBackoff caps the delay between two tries of a message
	// (KEFU_RETRY_MAX_BACKOFF, default 2m).
	MaxBackoff time.Duration
	// ProbeInterval is how often the store is pinged while the consumers
	// are paused because it does not answer (default 1s).
	ProbeInterval time.Duration
	// FillInterval is how often facts stored without a pseudonym are
	// looked for again after the fill at Start (default 10m): another
	// replica without the key, or an older kefu during a rolling upgrade,
	// may still store some. Only with Deps.Pseudonym.
	FillInterval time.Duration
}

func (c *Config) setDefaults() {
	c.BatchSize = config.PositiveOr(c.BatchSize, 200)
	c.Linger = config.PositiveOr(c.Linger, 20*time.Millisecond)
	switch {
	case c.Idle == 0:
		c.Idle = 2 * time.Millisecond
	case c.Idle < 0:
		c.Idle = 0
	}
	c.WriteTimeout = config.PositiveOr(c.WriteTimeout, 10*time.Second)
	c.Concurrency = config.PositiveOr(c.Concurrency, 64)
	c.MaxAckPending = config.PositiveOr(c.MaxAckPending, 2*c.Concurrency)
	c.AckWait = config.PositiveOr(c.AckWait, 30*time.Second)
	c.MaxDeliver = config.PositiveOr(c.MaxDeliver, 5)
	c.FillInterval = config.PositiveOr(c.FillInterval, 10*time.Minute)
}

// Validate reports a configuration that would lose acks or stall.
func (c Config) Validate() error {
	switch {
	case c.AckWait <= c.Linger+2*c.WriteTimeout:
		return fmt.Errorf("feedback: AckWait %s must exceed Linger + 2×WriteTimeout (%s), or JetStream redelivers messages whose batch is still being written",
			c.AckWait, c.Linger+2*c.WriteTimeout)
	case c.MaxAckPending < c.Concurrency:
		return fmt.Errorf("feedback: MaxAckPending %d is below Concurrency %d: handlers would sit idle", c.MaxAckPending, c.Concurrency)
	}
	return nil
}

// Deps are the service's collaborators. The service does not close the
// store or the bus: whoever opened them does.
type Deps struct {
	Bus   *bus.Bus
	Store store.Store
	// Pseudonym is the customer's pseudonym on Tucao (feedbacklink.Keys
	// Pseudonym, under the same secret as the notifier's); nil when the
	// key is not configured: posts are then linked by openid only.
	Pseudonym  func(openid string) string
	Logger     *zap.Logger           // optional
	Registerer prometheus.Registerer // optional
}

// Service consumes feedback events into the store and serves the queries.
type Service struct {
	cfg       Config
	bus       *bus.Bus
	store     store.Store
	pseudonym func(string) string // nil: no key
	log       *zap.Logger
	metrics   *metrics
	api       http.Handler

	mu  sync.Mutex
	run *running
}

// running is what one Start set going and Stop ends.
type running struct {
	subs     []*bus.Subscription
	posts    *batcher[events.FeedbackPost]
	sessions *batcher[store.SessionFact]
	fill     *bus.Periodic // nil without a pseudonym key
	cancel   context.CancelFunc
}

// ErrStarted is returned by Start on a running service.
var ErrStarted = errors.New("feedback: already started")

// New checks the configuration and builds the service; Start begins
// consuming.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Bus == nil:
		return nil, errors.New("feedback: a Bus is required")
	case deps.Store == nil:
		return nil, errors.New("feedback: a Store is required")
	}
	log := deps.Logger
	if log == nil {
		log = zap.NewNop()
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	return &Service{
		cfg: cfg, bus: deps.Bus, store: deps.Store, pseudonym: deps.Pseudonym, log: log, metrics: m,
		api: api.New(deps.Store, log.Named("api"), api.WithPseudonym(deps.Pseudonym)),
	}, nil
}
