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
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/httpapi"
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
	if c.Interval <= 0 {
		c.Interval = time.Minute
	}
	if c.RescanWindow <= 0 {
		c.RescanWindow = DefaultTucaoRescanWindow
	}
	if c.MaxPagesPerPoll <= 0 {
		c.MaxPagesPerPoll = 20
	}
	if c.MaxHintsPerPoll <= 0 {
		c.MaxHintsPerPoll = 5
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

// walkState is the walk's position, stored as JSON under walkKey.
type walkState struct {
	// Head is the newest post id read by a walk from the top.
	Head string `json:"head,omitempty"`
	// Gaps are the stretches below Head not read yet, newest first.
	Gaps []walkGap `json:"gaps,omitempty"`
	// Rescan is the post id the rescan pass resumes at; empty: at the top.
	Rescan string `json:"rescan,omitempty"`
}

// walkGap is a stretch of posts not read yet: resume at MaxID (the last post
// read, which an inclusive max_id gives again and is skipped as seen), stop
// at the first post whose id is at most Floor (read before; empty: the
// oldest post).
type walkGap struct {
	MaxID string `json:"max_id"`
	Floor string `json:"floor,omitempty"`
}

func walkKey(product string) string { return "tucao." + events.Token(product) + ".walk" }

// walk is a poll's view of the stored position and its revision.
type walk struct {
	state    walkState
	revision uint64 // 0: the key did not exist
	// rescanned: this poll already read every post of the rescan window.
	rescanned bool
}

func (p *TucaoPoller) loadWalk(ctx context.Context) (*walk, error) {
	entry, err := p.cursors.Get(ctx, walkKey(p.cfg.ProductID))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return &walk{}, nil
	case err != nil:
		return nil, fmt.Errorf("read walk position: %w", err)
	}
	w := &walk{revision: entry.Revision()}
	if entry.Operation() == jetstream.KeyValuePut {
		if err := json.Unmarshal(entry.Value(), &w.state); err != nil {
			// Unreadable: start over from the top. Nothing is published
			// twice (the seen records), the walk only costs requests.
			p.log.Warn("tucao walk position unreadable; walking the whole history again", zap.Error(err))
			w.state = walkState{}
		}
	}
	return w, nil
}

// saveWalk writes st if the key is still at the revision this poll read
// or last wrote; otherwise another poller moved the walk and this one is
// stale: ErrStaleWalk, and nothing is written. It uses its own short
// context so that a cancelled poll still records how far it got.
func (p *TucaoPoller) saveWalk(ctx context.Context, w *walk, st walkState) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if w.revision != 0 && reflect.DeepEqual(st, w.state) {
		return nil // unchanged: no write
	}
	data, _ := json.Marshal(st)
	var rev uint64
	var err error
	if w.revision == 0 {
		rev, err = p.cursors.Create(ctx, walkKey(p.cfg.ProductID), data)
	} else {
		rev, err = p.cursors.Update(ctx, walkKey(p.cfg.ProductID), data, w.revision)
	}
	if err != nil {
		if isCASConflict(err) {
			return ErrStaleWalk
		}
		return fmt.Errorf("write walk position: %w", err)
	}
	w.state, w.revision = st, rev
	p.metrics.gaps.Set(float64(len(st.Gaps)))
	return nil
}

func isCASConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

// checkpointEvery is how many posts a walk reads between two saves of its
// position: one page.
const checkpointEvery = tucao.MaxCount

// PollOnce runs one poll if this process holds the lease.
func (p *TucaoPoller) PollOnce(ctx context.Context) (res PollResult, err error) {
	held, err := p.lease.TryAcquire(ctx)
	if err != nil || !held {
		return PollResult{}, err
	}
	res = PollResult{Active: true}
	defer func() {
		p.metrics.polls.WithLabelValues(outcome(err)).Inc()
		if err != nil {
			err = fmt.Errorf("tucao poll: %w", err)
		}
	}()
	w, err := p.loadWalk(ctx)
	if err != nil {
		return res, err
	}
	budget := p.cfg.MaxPagesPerPoll
	steps := []func(context.Context, *walk, *int, *PollResult) error{p.readNew, p.readHints, p.readGaps, p.rescan}
	for _, step := range steps {
		if budget <= 0 {
			break
		}
		if err = step(ctx, w, &budget, &res); err != nil {
			break
		}
	}
	res.Pages = p.cfg.MaxPagesPerPoll - budget
	res.Gaps = len(w.state.Gaps)
	res.Behind = res.Gaps > 0
	return res, err
}

// walkFrom reads posts from opt within the budget, calling fn for each;
// fn handles the post and says whether to go on. Every checkpointEvery
// posts it saves position() (and renews the lease); it saves once more
// when the walk stops early, whatever stopped it. It reports whether the walk
// ran out of budget with older pages left. When the walk completes, the
// caller saves its finished state.
func (p *TucaoPoller) walkFrom(ctx context.Context, w *walk, opt tucao.ListOptions, budget *int, fn func(tucao.Post) (bool, error), position func() walkState) (more bool, err error) {
	n := 0
	pages, err := p.client.Walk(ctx, opt, *budget, func(post tucao.Post) (bool, error) {
		ok, err := fn(post)
		if err != nil || !ok {
			return ok, err
		}
		if n++; n%checkpointEvery == 0 {
			if err := p.saveWalk(ctx, w, position()); err != nil {
				return false, err
			}
			if held, err := p.lease.TryAcquire(ctx); err != nil || !held {
				return false, errors.Join(errors.New("lost the poller lease"), err)
			}
		}
		return true, nil
	})
	*budget -= pages
	more = errors.Is(err, tucao.ErrMorePages)
	switch {
	case errors.Is(err, ErrStaleWalk):
		return false, err // nothing of this poller's may be written any more
	case more:
		return true, p.saveWalk(ctx, w, position())
	case err != nil:
		// Rate limited after the retries, a network failure, a store
		// failure: keep what was read, the next poll resumes here.
		return false, errors.Join(err, p.saveWalk(ctx, w, position()))
	}
	return false, nil // complete: the caller saves the finished state
}

// readNew reads the posts newer than the head, newest first. If it stops
// before reaching the head, the stretch between becomes the newest gap.
// When no gap is pending and no rescan pass is under way, it goes on past
// the head as the rescan pass, so a quiet poll reads the newest page once.
func (p *TucaoPoller) readNew(ctx context.Context, w *walk, budget *int, res *PollResult) error {
	start := w.state
	head := idInt(start.Head)
	rescanning := len(start.Gaps) == 0 && start.Rescan == ""
	boundary := p.now().Add(-p.cfg.RescanWindow)
	var top, last, rescanAt string
	met, passDone := false, false
	position := func() walkState {
		st := cloneWalk(start)
		if top != "" {
			st.Head = top
			if !met {
				st.Gaps = append([]walkGap{{MaxID: last, Floor: start.Head}}, st.Gaps...)
			}
		}
		if rescanning && met && !passDone {
			st.Rescan = rescanAt
		}
		return st
	}
	more, err := p.walkFrom(ctx, w, tucao.ListOptions{Count: tucao.MaxCount}, budget, func(post tucao.Post) (bool, error) {
		if !met && head > 0 && post.IDInt() <= head {
			met = true
			if !rescanning {
				return false, nil
			}
		}
		if met { // the rescan pass, over posts read before
			if created, err := post.CreatedTime(); err == nil && created.Before(boundary) {
				passDone = true
				return false, nil
			}
			if err := p.handlePost(ctx, post, res); err != nil {
				return false, err
			}
			rescanAt = post.ID
			return true, nil
		}
		if err := p.handlePost(ctx, post, res); err != nil {
			return false, err
		}
		if top == "" {
			top = post.ID
		}
		last = post.ID
		return true, nil
	}, position)
	if err != nil || more {
		return err
	}
	// Reached the head (and, rescanning, the window's end) or the oldest
	// post: nothing above the head is left.
	if !met || rescanning {
		// The oldest post was reached, or the pass went to its end:
		// every post of the window was read in this poll.
		w.rescanned = true
	}
	met, passDone = true, true
	return p.saveWalk(ctx, w, position())
}

// readGaps reads the stretches left by earlier polls, newest first.
func (p *TucaoPoller) readGaps(ctx context.Context, w *walk, budget *int, res *PollResult) error {
	for len(w.state.Gaps) > 0 && *budget > 0 {
		start := w.state
		gap := start.Gaps[0]
		floor := idInt(gap.Floor)
		resume := gap.MaxID
		closed := false
		position := func() walkState {
			st := cloneWalk(start)
			if closed {
				st.Gaps = st.Gaps[1:]
			} else {
				st.Gaps[0].MaxID = resume
			}
			return st
		}
		more, err := p.walkFrom(ctx, w, tucao.ListOptions{Count: tucao.MaxCount, MaxID: gap.MaxID}, budget, func(post tucao.Post) (bool, error) {
			if floor > 0 && post.IDInt() <= floor {
				closed = true
				return false, nil
			}
			if err := p.handlePost(ctx, post, res); err != nil {
				return false, err
			}
			resume = post.ID
			return true, nil
		}, position)
		if err != nil || more {
			return err
		}
		closed = true // met the floor, or the oldest post was reached
		if err := p.saveWalk(ctx, w, position()); err != nil {
			return err
		}
	}
	return nil
}

// rescan re-reads the posts created within RescanWindow, newest first, a
// budget's worth per poll, so replies and flag changes are published as
// updates; a pass that reaches the window's end starts over at the next
// poll.
func (p *TucaoPoller) rescan(ctx context.Context, w *walk, budget *int, res *PollResult) error {
	if w.rescanned {
		return nil
	}
	boundary := p.now().Add(-p.cfg.RescanWindow)
	start := w.state
	resume := start.Rescan
	position := func() walkState {
		st := cloneWalk(start)
		st.Rescan = resume
		return st
	}
	more, err := p.walkFrom(ctx, w, tucao.ListOptions{Count: tucao.MaxCount, MaxID: start.Rescan}, budget, func(post tucao.Post) (bool, error) {
		if created, err := post.CreatedTime(); err == nil && created.Before(boundary) {
			resume = "" // the pass is complete
			return false, nil
		}
		if err := p.handlePost(ctx, post, res); err != nil {
			return false, err
		}
		resume = post.ID
		return true, nil
	}, position)
	if err != nil || more {
		return err
	}
	resume = ""
	return p.saveWalk(ctx, w, position())
}

func cloneWalk(st walkState) walkState {
	st.Gaps = append([]walkGap(nil), st.Gaps...)
	return st
}

func idInt(id string) int64 {
	if id == "" {
		return 0
	}
	n, _ := tucao.ParseID(id)
	return n
}

// Hint asks the next poll to re-read the post with this id (a webhook
// named it), so a reply on a post older than RescanWindow is seen too. The
// id must be a Tucao post id (a positive decimal int64). At most
// maxPendingHints wait; more are dropped (the rescan still covers recent
// posts), and each poll re-reads at most MaxHintsPerPoll, one request
// each, inside its page budget.
func (p *TucaoPoller) Hint(id string) error {
	if _, err := tucao.ParseID(id); err != nil {
		return err
	}
	p.hintMu.Lock()
	defer p.hintMu.Unlock()
	if slices.Contains(p.hints, id) {
		return nil
	}
	if len(p.hints) >= maxPendingHints {
		p.metrics.hints.WithLabelValues("dropped").Inc()
		return nil
	}
	p.hints = append(p.hints, id)
	p.metrics.hints.WithLabelValues("queued").Inc()
	return nil
}

func (p *TucaoPoller) takeHints(n int) []string {
	p.hintMu.Lock()
	defer p.hintMu.Unlock()
	n = min(n, len(p.hints))
	out := append([]string(nil), p.hints[:n]...)
	p.hints = p.hints[n:]
	return out
}

// readHints re-reads the posts webhooks named: one page of one post from
// max_id=<id>.
func (p *TucaoPoller) readHints(ctx context.Context, _ *walk, budget *int, res *PollResult) error {
	ids := p.takeHints(min(p.cfg.MaxHintsPerPoll, *budget))
	for i, id := range ids {
		pages, err := p.client.Walk(ctx, tucao.ListOptions{Count: 1, MaxID: id}, 1, func(post tucao.Post) (bool, error) {
			if post.ID == id {
				return false, p.handlePost(ctx, post, res)
			}
			return false, nil // no such post (any more): nothing to read
		})
		*budget -= pages
		if err != nil && !errors.Is(err, tucao.ErrMorePages) {
			for _, later := range ids[i:] { // the next poll tries them again
				_ = p.Hint(later)
			}
			return err
		}
	}
	return nil
}

// Backfill publishes every post created from the day from to the day to,
// both included (YYYY-MM-DD or the older YYYYMMDD, Asia/Shanghai), that
// was not published in that version yet. Tucao's to is exclusive, so the
// request asks for the day after to. It takes the poller lease so the
// product's request budget is never shared by two pollers.
func (p *TucaoPoller) Backfill(ctx context.Context, from, to string) (PollResult, error) {
	return p.BackfillWithProgress(ctx, from, to, nil)
}

// BackfillWithProgress is Backfill that calls progress (when not nil)
// after each post it reads, on the calling goroutine.
func (p *TucaoPoller) BackfillWithProgress(ctx context.Context, from, to string, progress func(BackfillProgress)) (PollResult, error) {
	days, err := ParseBackfillDays(from, to)
	if err != nil {
		return PollResult{}, err
	}
	opt := days.listOptions()
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
	done := 0
	res.Pages, err = p.client.Walk(ctx, opt, 0, func(post tucao.Post) (bool, error) {
		res.Seen++
		if res.Seen%500 == 0 {
			if _, err := p.lease.TryAcquire(ctx); err != nil {
				return false, err
			}
		}
		err := p.handle(ctx, post, &res)
		if progress != nil {
			if created, cerr := post.CreatedTime(); cerr == nil {
				done = max(done, days.daysDone(created))
			}
			progress(BackfillProgress{Days: days, DaysDone: done, Result: res})
		}
		return err == nil, err
	})
	return res, err
}

// BackfillWindow turns the inclusive days of `--from D1 --to D2` into
// Tucao's window, whose to is the day after the last.
func BackfillWindow(from, to string) (tucao.ListOptions, error) {
	days, err := ParseBackfillDays(from, to)
	if err != nil {
		return tucao.ListOptions{}, err
	}
	return days.listOptions(), nil
}

func seenKey(product, id string) string { return "tucao." + events.Token(product) + ".seen." + id }

// handlePost is handle for a poll: it counts what was read.
func (p *TucaoPoller) handlePost(ctx context.Context, post tucao.Post, res *PollResult) error {
	res.Seen++
	return p.handle(ctx, post, res)
}

// handle publishes post if it is new or changed since the version recorded
// as seen.
func (p *TucaoPoller) handle(ctx context.Context, post tucao.Post, res *PollResult) error {
	updated, err := post.UpdatedTime()
	if err != nil {
		p.log.Warn("tucao post with an unreadable updated_at skipped", zap.String("post_id", post.ID), zap.Error(err))
		return nil
	}
	key := seenKey(p.cfg.ProductID, post.ID)
	seenUnix, rev, err := p.readSeen(ctx, key)
	if err != nil {
		return err
	}
	if seenUnix >= updated.Unix() {
		return nil
	}
	ev := FeedbackPost(post, p.cfg.ProductID, p.now())
	ev.Updated = seenUnix >= 0
	if _, err := p.pub.Publish(ctx, ev, bus.Envelope{ID: events.TucaoPostID(post.ID, updated), Source: "kefu/ingest/tucao/" + p.cfg.ProductID, Time: p.now()}); err != nil {
		return err
	}
	if err := p.writeSeen(ctx, key, updated.Unix(), rev); err != nil {
		return err
	}
	if ev.Updated {
		res.Updated++
		p.metrics.posts.WithLabelValues("updated").Inc()
	} else {
		res.Created++
		p.metrics.posts.WithLabelValues("created").Inc()
	}
	return nil
}

// readSeen returns the recorded updated_at (-1: never seen) and the key's
// revision (0: absent).
func (p *TucaoPoller) readSeen(ctx context.Context, key string) (int64, uint64, error) {
	entry, err := p.cursors.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return -1, 0, nil
	case err != nil:
		return -1, 0, fmt.Errorf("read cursor: %w", err)
	}
	n, perr := strconv.ParseInt(string(entry.Value()), 10, 64)
	if perr != nil || entry.Operation() != jetstream.KeyValuePut {
		n = -1
	}
	return n, entry.Revision(), nil
}

// writeSeen records updated_at as a compare-and-set, so a record never
// moves back: when another poller wrote meanwhile, the newer of the two
// stays.
func (p *TucaoPoller) writeSeen(ctx context.Context, key string, updated int64, rev uint64) error {
	value := []byte(strconv.FormatInt(updated, 10))
	for range 3 {
		var err error
		if rev == 0 {
			_, err = p.cursors.Create(ctx, key, value)
		} else {
			_, err = p.cursors.Update(ctx, key, value, rev)
		}
		if err == nil {
			return nil
		}
		if !isCASConflict(err) {
			return fmt.Errorf("write cursor: %w", err)
		}
		var seen int64
		if seen, rev, err = p.readSeen(ctx, key); err != nil {
			return err
		}
		if seen >= updated {
			return nil
		}
	}
	return fmt.Errorf("write cursor %s: kept changing under concurrent writers", key)
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
// nothing of the body reaches the bus. The post id it names
// (payload.post.id) is queued for that poll to re-read through the API
// (see Hint), so a reply on a post older than the rescan window is seen.
// A body over MaxWebhookBody is answered 413, one that is not a JSON
// object with a "type", or whose post id is not a Tucao id, 400, a method
// other than POST 405; errors are problem details (docs/http-api.md).
func (p *TucaoPoller) WebhookHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			httpapi.WriteProblem(w, http.StatusMethodNotAllowed, "POST only")
			return
		}
		tooLarge := fmt.Sprintf("webhook body over %d bytes", MaxWebhookBody)
		if r.ContentLength > MaxWebhookBody {
			httpapi.WriteProblem(w, http.StatusRequestEntityTooLarge, tooLarge)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxWebhookBody+1))
		if err != nil {
			httpapi.WriteProblem(w, http.StatusBadRequest, "cannot read body")
			return
		}
		if len(body) > MaxWebhookBody {
			httpapi.WriteProblem(w, http.StatusRequestEntityTooLarge, tooLarge)
			return
		}
		var hook struct {
			Type    string `json:"type"`
			Payload struct {
				Post struct {
					ID json.RawMessage `json:"id"`
				} `json:"post"`
			} `json:"payload"`
		}
		if err := json.Unmarshal(body, &hook); err != nil || hook.Type == "" {
			httpapi.WriteProblem(w, http.StatusBadRequest, "malformed webhook JSON: want {\"id\",\"type\",\"payload\"}", httpapi.Type(httpapi.InvalidParameter))
			return
		}
		postID, ok := hintedID(hook.Payload.Post.ID)
		if !ok {
			httpapi.WriteProblem(w, http.StatusBadRequest, "malformed webhook JSON: payload.post.id must be a Tucao post id (decimal digits)", httpapi.Param("payload.post.id"))
			return
		}
		p.metrics.webhooks.WithLabelValues(webhookTypeLabel(hook.Type)).Inc()
		if hook.Type != "webhook.test" {
			if postID != "" {
				_ = p.Hint(postID) // checked by hintedID
			}
			p.Kick()
		}
		httpapi.WriteJSONBytes(w, http.StatusOK, []byte(`{"ok":true}`+"\n"))
	})
}

// hintedID reads payload.post.id: absent or null gives "", a Tucao id (a
// JSON string or number of decimal digits that fits in int64) gives the
// id, anything else is refused.
func hintedID(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", true
	}
	id := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &id); err != nil {
			return "", false
		}
	}
	if _, err := tucao.ParseID(id); err != nil {
		return "", false
	}
	return id, true
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
	polls, posts, webhooks, kicks, hints *prometheus.CounterVec
	gaps                                 prometheus.Gauge
}

func newTucaoMetrics(reg prometheus.Registerer) *tucaoMetrics {
	m := &tucaoMetrics{
		polls:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_tucao_polls_total", Help: "Tucao polls by outcome (ok, error)."}, []string{"outcome"}),
		posts:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_tucao_posts_published_total", Help: "Tucao post versions published, by kind (created, updated)."}, []string{"kind"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_tucao_webhooks_total", Help: "Tucao webhook pushes accepted, by type (post.created, reply.created, webhook.test, other)."}, []string{"type"}),
		kicks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_tucao_webhook_kicks_total",
			Help: "Webhook pushes that asked for a poll, by result: polled, or throttled (within 10 s of the last one; the next poll covers it)."}, []string{"result"}),
		hints: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kefu_tucao_webhook_hints_total",
			Help: "Post ids named by webhooks, by result: queued for a re-read at the next poll, or dropped (64 already waiting)."}, []string{"result"}),
		gaps: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kefu_tucao_walk_gaps",
			Help: "Stretches of Tucao posts older than the newest not read yet (0: caught up); each poll reads on where the last stopped."}),
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
	for _, r := range []string{"queued", "dropped"} {
		m.hints.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.polls, m.posts, m.webhooks, m.kicks, m.hints, m.gaps)
	}
	return m
}
