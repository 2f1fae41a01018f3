package ingest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/config"
	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/pkg/events"
)

// TucaoConfig configures the Tucao poller.
type TucaoConfig struct {
	ProductID string
	// Interval between polls (KEFU_TUCAO_POLL_INTERVAL, default 60s).
	Interval time.Duration
	// RescanWindow: posts created within this long are re-read, in a pass
	// spread over polls, so replies and flag changes (a new updated_at) are
	// seen (KEFU_TUCAO_RESCAN_WINDOW, default 7 days). Tucao lists posts by
	// creation, not by update, so an older post's changes are seen only
	// through a webhook that names it.
	RescanWindow time.Duration
	// MaxPagesPerPoll bounds one poll's requests (default 20 pages of 100);
	// what is left is read by the next polls.
	MaxPagesPerPoll int
	// MaxHintsPerPoll bounds the posts re-read because a webhook named them
	// (default 5 a poll, inside MaxPagesPerPoll).
	MaxHintsPerPoll int
	// Holder names this process in the lease (default hostname-pid).
	Holder string
	// LeaseTTL: another replica takes over this long after the holder
	// stops renewing (default 3 × Interval, at least 30s).
	LeaseTTL time.Duration
}

// DefaultTucaoRescanWindow is the default of TucaoConfig.RescanWindow.
const DefaultTucaoRescanWindow = 7 * 24 * time.Hour

// maxPendingHints bounds the webhook hints waiting for a poll, so a flood
// of made-up ids costs memory and requests that do not grow with it.
const maxPendingHints = 64

func (c *TucaoConfig) setDefaults() {
	c.Interval = config.PositiveOr(c.Interval, time.Minute)
	c.RescanWindow = config.PositiveOr(c.RescanWindow, DefaultTucaoRescanWindow)
	c.MaxPagesPerPoll = config.PositiveOr(c.MaxPagesPerPoll, 20)
	c.MaxHintsPerPoll = config.PositiveOr(c.MaxHintsPerPoll, 5)
	c.LeaseTTL = config.PositiveOr(c.LeaseTTL, max(3*c.Interval, 30*time.Second))
}

// PostLister is the part of the Tucao client the poller uses.
type PostLister interface {
	// Walk calls fn for each post newest first, reading at most maxPages
	// pages (0: all); it returns tucao.ErrMorePages when older pages remain.
	Walk(ctx context.Context, opt tucao.ListOptions, maxPages int, fn func(tucao.Post) (bool, error)) (int, error)
}

// ErrStaleWalk is returned by a poll whose walk position was moved on by
// another poller meanwhile (this one lost its lease while it was paused):
// its own, older position is not written.
var ErrStaleWalk = errors.New("tucao walk position was moved by another poller")

// TucaoPoller publishes new and changed Tucao posts. One poller at a time
// is active across replicas (a lease in kefu_locks); what it has seen is
// kept in kefu_cursors, so a restart resumes without re-publishing or
// skipping anything.
//
// Seen posts: the key tucao.<product>.seen.<id> holds the updated_at (unix
// seconds) of the last version published. A post never seen is published
// as post.created, a newer version as post.updated. The seen record is
// written only after JetStream acknowledged the event, and the event's
// Nats-Msg-Id (tucao-<id>-<updated_at>) is deterministic, so a crash
// between the two publishes the event again at most — and JetStream drops
// it.
//
// The walk: Tucao pages newest first by max_id and has no "since", so the
// position of the walk is kept in tucao.<product>.walk: the newest post
// read (head), the stretches below it not read yet (gaps: resume at max_id,
// stop at floor) and where the rescan pass stands. Each poll, within
// MaxPagesPerPoll pages, reads (1) the new posts, from the newest down to
// the head — what it cannot finish becomes a gap —, (2) posts a webhook
// named, (3) the gaps, newest first, resuming at their stored max_id until
// they meet posts already read, and (4) the rescan pass over the posts
// created within RescanWindow. The position is saved every page and when
// the poll stops for any reason (page budget, rate limit, error), with a
// compare-and-set on the key's revision, so a poller that lost its lease
// while paused cannot move the walk back.
type TucaoPoller struct {
	cfg     TucaoConfig
	client  PostLister
	pub     Publisher
	cursors jetstream.KeyValue
	lease   *bus.Lease
	log     *zap.Logger
	now     func() time.Time
	metrics *tucaoMetrics
	loop    *bus.Periodic
	kicks   kickLimiter

	hintMu sync.Mutex
	hints  []string // post ids webhooks named, oldest first, distinct
}

// NewTucaoPoller builds a poller; Start runs it.
func NewTucaoPoller(cfg TucaoConfig, client PostLister, pub Publisher, cursors, locks jetstream.KeyValue, log *zap.Logger, reg prometheus.Registerer) (*TucaoPoller, error) {
	cfg.setDefaults()
	if cfg.ProductID == "" {
		return nil, errors.New("tucao poller: ProductID (KEFU_TUCAO_PRODUCT_ID) is required")
	}
	if client == nil || pub == nil || cursors == nil || locks == nil {
		return nil, errors.New("tucao poller: client, publisher and KV buckets are required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	p := &TucaoPoller{
		cfg: cfg, client: client, pub: pub, cursors: cursors,
		lease: bus.NewLease(locks, "tucao-poller-"+events.Token(cfg.ProductID), cfg.Holder, cfg.LeaseTTL),
		log:   log, now: time.Now, metrics: newTucaoMetrics(reg),
		kicks: kickLimiter{every: WebhookPollEvery},
	}
	registerSkew(reg, client)
	p.loop = bus.NewPeriodic(cfg.Interval, func(ctx context.Context) {
		res, err := p.PollOnce(ctx)
		if err != nil && ctx.Err() == nil {
			p.log.Warn("tucao poll failed; the walk resumes where it stopped at the next interval", zap.Error(err))
		}
		if res.Behind {
			p.log.Info("tucao poll stopped with older posts still to read; the next poll continues", zap.Int("gaps", res.Gaps), zap.Int("created", res.Created))
		}
	})
	return p, nil
}

// SetClock replaces the clock (tests).
func (p *TucaoPoller) SetClock(now func() time.Time) {
	p.now = now
	p.lease.SetClock(now)
}

// Start polls every Interval until Stop.
func (p *TucaoPoller) Start(ctx context.Context) error {
	p.loop.Start(ctx)
	return nil
}

// Stop ends the loop and releases the lease so another replica takes over at once.
func (p *TucaoPoller) Stop(ctx context.Context) error {
	if err := p.loop.Stop(ctx); err != nil {
		return err
	}
	return p.lease.Release(ctx)
}

// PollResult says what one poll did.
type PollResult struct {
	Active           bool // this process held the lease
	Created, Updated int
	Seen             int
	Pages            int  // requests made
	Behind           bool // older posts remain to be read by the next polls
	Gaps             int  // stretches of the walk not read yet
}
