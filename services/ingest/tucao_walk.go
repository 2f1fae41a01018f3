package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/tucao"
	"github.com/kefu-io/kefu/pkg/events"
)

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
		done, err := p.readDown(ctx, w, gap.MaxID, budget, res, func(post tucao.Post) bool {
			return floor > 0 && post.IDInt() <= floor
		}, func(resume string, done bool) walkState {
			st := cloneWalk(start)
			if done {
				st.Gaps = st.Gaps[1:]
			} else {
				st.Gaps[0].MaxID = resume
			}
			return st
		})
		if err != nil || !done {
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
	_, err := p.readDown(ctx, w, start.Rescan, budget, res, func(post tucao.Post) bool {
		created, err := post.CreatedTime()
		return err == nil && created.Before(boundary)
	}, func(resume string, done bool) walkState {
		st := cloneWalk(start)
		st.Rescan = resume
		if done {
			st.Rescan = "" // the pass is complete
		}
		return st
	})
	return err
}

// readDown handles the posts from maxID down, newest first, until end says
// a post lies past the stretch or the oldest post is reached. position
// gives the walk's state for the stretch resumed at resume (the last post
// handled, at first maxID), or finished when done. When the stretch is
// read to its end it saves the finished state and reports done; otherwise
// (budget spent, a failure) walkFrom has saved where it got.
func (p *TucaoPoller) readDown(ctx context.Context, w *walk, maxID string, budget *int, res *PollResult, end func(tucao.Post) bool, position func(resume string, done bool) walkState) (done bool, err error) {
	resume := maxID
	at := func() walkState { return position(resume, done) }
	more, err := p.walkFrom(ctx, w, tucao.ListOptions{Count: tucao.MaxCount, MaxID: maxID}, budget, func(post tucao.Post) (bool, error) {
		if end(post) {
			done = true
			return false, nil
		}
		if err := p.handlePost(ctx, post, res); err != nil {
			return false, err
		}
		resume = post.ID
		return true, nil
	}, at)
	if err != nil || more {
		return false, err
	}
	done = true // met the end, or the oldest post was reached
	return true, p.saveWalk(ctx, w, at())
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
