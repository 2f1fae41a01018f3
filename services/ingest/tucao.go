package ingest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/pkg/events"
)

// TucaoConfig configures the Tucao poller.
type TucaoConfig struct {
	ProductID string
	// Interval between polls (KEFU_TUCAO_POLL_INTERVAL, default 60s).
	Interval time.Duration
	// RescanWindow: every poll walks past the newest post it already knew
	// until posts older than this, to see replies and flag changes by
	// updated_at (default 72h).
	RescanWindow time.Duration
	// MaxPagesPerPoll bounds one poll's requests (default 20 pages of 100).
	MaxPagesPerPoll int
	// Holder names this process in the lease (default hostname-pid).
	Holder string
	// LeaseTTL: another replica takes over this long after the holder
	// stops renewing (default 3 × Interval, at least 30s).
	LeaseTTL time.Duration
}

func (c *TucaoConfig) setDefaults() {
	if c.Interval <= 0 {
		c.Interval = time.Minute
	}
	if c.RescanWindow <= 0 {
		c.RescanWindow = 72 * time.Hour
	}
	if c.MaxPagesPerPoll <= 0 {
		c.MaxPagesPerPoll = 20
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 3 * c.Interval
		if c.LeaseTTL < 30*time.Second {
			c.LeaseTTL = 30 * time.Second
		}
	}
}

// PostLister is the part of the Tucao client the poller uses.
type PostLister interface {
	Iterate(ctx context.Context, opt tucao.ListOptions, fn func(tucao.Post) (bool, error)) error
}

// TucaoPoller publishes new and changed Tucao posts. One poller at a time
// is active across replicas (a lease in kefu_locks); what it has seen is
// kept in kefu_cursors, so a restart resumes without re-publishing.
//
// State: the key tucao.<product>.seen.<id> holds the updated_at (unix
// seconds) of the last version published. A post never seen is
// published as post.created, a newer version as post.updated. The seen
// record is written only after JetStream acknowledged the event, and the
// event's Nats-Msg-Id (tucao-<id>-<updated_at>) is deterministic, so a crash
// between the two publishes the event again at most — and JetStream drops
// it. Each poll walks newest-first until it reaches posts older than
// RescanWindow that it has already seen, so nothing between polls is
// skipped, even after a long outage (bounded by MaxPagesPerPoll per poll;
// the walk continues at the next poll).
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
	p.loop = bus.NewPeriodic(cfg.Interval, func(ctx context.Context) {
		if _, err := p.PollOnce(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("tucao poll failed; will retry next interval", zap.Error(err))
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
}

// PollOnce runs one poll if this process holds the lease.
func (p *TucaoPoller) PollOnce(ctx context.Context) (PollResult, error) {
	held, err := p.lease.TryAcquire(ctx)
	if err != nil || !held {
		return PollResult{}, err
	}
	res := PollResult{Active: true}
	boundary := p.now().Add(-p.cfg.RescanWindow)
	pages := 0
	err = p.client.Iterate(ctx, tucao.ListOptions{Count: 100}, func(post tucao.Post) (bool, error) {
		res.Seen++
		if res.Seen%100 == 1 {
			pages++
			if pages > p.cfg.MaxPagesPerPoll {
				return false, nil
			}
		}
		known, err := p.handle(ctx, post, &res)
		if err != nil {
			return false, err
		}
		created, _ := post.CreatedTime()
		// Past the rescan window and already known: everything older was
		// seen by an earlier poll.
		return !(known && created.Before(boundary)), nil
	})
	p.metrics.polls.WithLabelValues(outcome(err)).Inc()
	if err != nil {
		return res, fmt.Errorf("tucao poll: %w", err)
	}
	return res, nil
}

// Backfill publishes every post created in [from, to] (YYYYMMDD) that
// was not published in that version yet. It takes the poller lease so the
// product's request budget is never shared by two pollers.
func (p *TucaoPoller) Backfill(ctx context.Context, from, to string) (PollResult, error) {
	if _, err := tucao.ParseDate(from); err != nil {
		return PollResult{}, err
	}
	if _, err := tucao.ParseDate(to); err != nil {
		return PollResult{}, err
	}
	for {
		held, err := p.lease.TryAcquire(ctx)
		if err != nil {
			return PollResult{}, err
		}
		if held {
			break
		}
		p.log.Info("waiting for the Tucao poller lease held by another replica")
		select {
		case <-ctx.Done():
			return PollResult{}, ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
	res := PollResult{Active: true}
	err := p.client.Iterate(ctx, tucao.ListOptions{Count: 100, From: from, To: to}, func(post tucao.Post) (bool, error) {
		res.Seen++
		if res.Seen%500 == 0 {
			if _, err := p.lease.TryAcquire(ctx); err != nil {
				return false, err
			}
		}
		_, err := p.handle(ctx, post, &res)
		return err == nil, err
	})
	return res, err
}

func seenKey(product, id string) string { return "tucao." + events.Token(product) + ".seen." + id }

// handle publishes post if it is new or changed; known reports whether
// this version had been published before.
func (p *TucaoPoller) handle(ctx context.Context, post tucao.Post, res *PollResult) (known bool, err error) {
	updated, err := post.UpdatedTime()
	if err != nil {
		p.log.Warn("tucao post with an unreadable updated_at skipped", zap.String("post_id", post.ID), zap.Error(err))
		return true, nil
	}
	key := seenKey(p.cfg.ProductID, post.ID)
	entry, err := p.cursors.Get(ctx, key)
	var seenUnix int64 = -1
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return false, fmt.Errorf("read cursor: %w", err)
	default:
		seenUnix, _ = strconv.ParseInt(string(entry.Value()), 10, 64)
	}
	if seenUnix >= updated.Unix() {
		return true, nil
	}
	ev := FeedbackPost(post, p.cfg.ProductID, p.now())
	ev.Updated = seenUnix >= 0
	if _, err := p.pub.Publish(ctx, ev, bus.Envelope{ID: events.TucaoPostID(post.ID, updated), Source: "kefu/ingest/tucao/" + p.cfg.ProductID, Time: p.now()}); err != nil {
		return false, err
	}
	if _, err := p.cursors.Put(ctx, key, []byte(strconv.FormatInt(updated.Unix(), 10))); err != nil {
		return false, fmt.Errorf("write cursor: %w", err)
	}
	if ev.Updated {
		res.Updated++
		p.metrics.posts.WithLabelValues("updated").Inc()
	} else {
		res.Created++
		p.metrics.posts.WithLabelValues("created").Inc()
	}
	return false, nil
}

// FeedbackPost turns a Tucao post into its contract event.
func FeedbackPost(post tucao.Post, productID string, received time.Time) events.FeedbackPost {
	created, _ := post.CreatedTime()
	updated, _ := post.UpdatedTime()
	lastReply, _ := post.LastReplyTime()
	raw := make(map[string]json.RawMessage, len(post.Extras)+1)
	for k, v := range post.Extras {
		raw[k] = v
	}
	if post.Time != "" {
		raw["time"], _ = json.Marshal(post.Time)
	}
	if len(raw) == 0 {
		raw = nil
	}
	return events.FeedbackPost{
		Meta: events.Meta{ProductID: productID, OccurredAt: updated, ReceivedAt: received.UTC()},
		ID:   post.ID, OpenID: post.OpenID, NickName: post.NickName, AvatarURL: post.AvatarURL, Content: post.Content,
		UserID: post.UserID, HasAdminReply: post.HasAdminReply, IsAdmin: post.IsAdmin, IsTop: post.IsTop, IsGood: post.IsGood,
		IsSpam: post.IsSpam, IsTodo: post.IsTodo, IsLocked: post.IsLocked, IsHidden: post.IsHidden, IsNotice: post.IsNotice,
		IsLiked: post.IsLiked, IsAbuse: post.IsAbuse, ReplyCount: post.ReplyCount, LikeCount: post.LikeCount,
		ImagesCount: post.ImagesCount, FaqID: post.FAQID, CreatedAt: created, UpdatedAt: updated, LastReplyAt: lastReply,
		User: nonNull(post.User), Images: nonNull(post.Images), Replies: nonNull(post.Replies), RepliesAll: nonNull(post.RepliesAll),
		Categories: nonNull(post.Categories), Extra: nonNull(post.Extra), FieldValues: nonNull(post.FieldValues), Raw: raw,
	}
}

func nonNull(r json.RawMessage) json.RawMessage {
	if len(r) == 0 || string(r) == "null" {
		return nil
	}
	return r
}

func outcome(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// Webhook limits. Tucao's pushes are a post with its newest reply, a few
// KiB; the webhook is only a hint (below), so nothing larger is worth
// reading from a stranger.
const (
	// WebhookPath is where the webhook is served when no secret path
	// segment is configured.
	WebhookPath = "/tucao/webhook"
	// MaxWebhookBody is the largest webhook body accepted (64 KiB); a
	// larger one is answered 413 and triggers nothing.
	MaxWebhookBody = 64 << 10
	// WebhookPollEvery is the least time between two polls triggered by
	// webhooks. Anyone can post to the webhook, and without this a stranger
	// could spend the product's whole request budget (100 a minute) on
	// polls, starving the scheduled ones. A webhook inside the window adds
	// no poll: the post it announces comes with the poll already asked for
	// if that one has not read the page yet, else with the next scheduled
	// poll (KEFU_TUCAO_POLL_INTERVAL) at the latest.
	WebhookPollEvery = 10 * time.Second
)

// webhookTypes are the webhook types Tucao documents: the only values of
// the type label besides "other", so a stranger's random types cannot
// create metric series.
var webhookTypes = map[string]bool{"post.created": true, "reply.created": true, "webhook.test": true}

func webhookTypeLabel(t string) string {
	if webhookTypes[t] {
		return t
	}
	return "other"
}

// Kick asks for a poll now (a webhook arrived), at most once every
// WebhookPollEvery; it reports whether it did. A kick while a poll runs
// asks for one more after it.
func (p *TucaoPoller) Kick() bool {
	if !p.kicks.allow(p.now()) {
		p.metrics.kicks.WithLabelValues("throttled").Inc()
		return false
	}
	p.metrics.kicks.WithLabelValues("polled").Inc()
	p.loop.Kick()
	return true
}

// kickLimiter lets one kick through per window; the others are dropped,
// not deferred, so a flood costs at most one poll per window.
type kickLimiter struct {
	every time.Duration
	mu    sync.Mutex
	last  time.Time
}

func (l *kickLimiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		return false
	}
	l.last = now
	return true
}

// WebhookHandler accepts Tucao's webhook pushes (post.created,
// reply.created, webhook.test). Tucao does not sign them, so the body is
// only a hint: it triggers a poll through the signed API (at most one per
// WebhookPollEvery), which publishes the same events polling would, and
// nothing of the body reaches the bus. A body over MaxWebhookBody is
// answered 413, one that is not a JSON object with a "type" 400, a method
// other than POST 405.
func (p *TucaoPoller) WebhookHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		tooLarge := fmt.Sprintf("webhook body over %d bytes", MaxWebhookBody)
		if r.ContentLength > MaxWebhookBody {
			http.Error(w, tooLarge, http.StatusRequestEntityTooLarge)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxWebhookBody+1))
		if err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		if len(body) > MaxWebhookBody {
			http.Error(w, tooLarge, http.StatusRequestEntityTooLarge)
			return
		}
		var hook struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(body, &hook); err != nil || hook.Type == "" {
			http.Error(w, "malformed webhook JSON: want {\"id\",\"type\",\"payload\"}", http.StatusBadRequest)
			return
		}
		p.metrics.webhooks.WithLabelValues(webhookTypeLabel(hook.Type)).Inc()
		if hook.Type != "webhook.test" {
			p.Kick()
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	})
}

// RegisterWebhook serves the webhook on mux. Without a secret it is served
// at WebhookPath. With one (KEFU_TUCAO_WEBHOOK_SECRET) it is served only at
// WebhookPath/<secret>, and WebhookPath itself and every other segment
// answer 404, as if nothing were there: a stranger who does not know the
// URL cannot even make kefu poll. The segment is compared in constant time
// (of digests, so not even its length leaks).
func (p *TucaoPoller) RegisterWebhook(mux *http.ServeMux, secret string) {
	if secret == "" {
		mux.Handle(WebhookPath, p.WebhookHandler())
		return
	}
	want := sha256.Sum256([]byte(secret))
	hook := p.WebhookHandler()
	// Registered explicitly so that ServeMux does not redirect
	// /tucao/webhook to /tucao/webhook/, hinting that something is there.
	mux.Handle(WebhookPath, http.NotFoundHandler())
	mux.Handle(WebhookPath+"/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(strings.TrimPrefix(r.URL.Path, WebhookPath+"/")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			http.NotFound(w, r)
			return
		}
		hook.ServeHTTP(w, r)
	}))
}

type tucaoMetrics struct {
	polls, posts, webhooks, kicks *prometheus.CounterVec
}

func newTucaoMetrics(reg prometheus.Registerer) *tucaoMetrics {
	m := &tucaoMetrics{
		polls:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_tucao_polls_total", Help: "Tucao polls by outcome (ok, error)."}, []string{"outcome"}),
		posts:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_tucao_posts_published_total", Help: "Tucao post versions published, by kind (created, updated)."}, []string{"kind"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_tucao_webhooks_total", Help: "Tucao webhook pushes accepted, by type (post.created, reply.created, webhook.test, other)."}, []string{"type"}),
		kicks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_tucao_webhook_kicks_total",
			Help: "Webhook pushes that asked for a poll, by result: polled, or throttled (within 10 s of the last one; the next poll covers it)."}, []string{"result"}),
	}
	// Every series exists from the start, so that no request, however
	// strange, adds one (and dashboards see zeros rather than gaps).
	for _, o := range []string{"ok", "error"} {
		m.polls.WithLabelValues(o)
	}
	for _, k := range []string{"created", "updated"} {
		m.posts.WithLabelValues(k)
	}
	for t := range webhookTypes {
		m.webhooks.WithLabelValues(t)
	}
	m.webhooks.WithLabelValues("other")
	for _, r := range []string{"polled", "throttled"} {
		m.kicks.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.polls, m.posts, m.webhooks, m.kicks)
	}
	return m
}
