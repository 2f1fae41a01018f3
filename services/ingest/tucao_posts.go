package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/pkg/events"
)

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
