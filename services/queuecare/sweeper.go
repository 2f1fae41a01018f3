package queuecare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/internal/feedbacklink"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/pkg/events"
)

// Actions in a stale report.
const (
	ActionClosed        = "closed"         // closed now
	ActionWouldClose    = "would_close"    // dry run
	ActionAlreadyClosed = "already_closed" // WeChat had no such session any more
	ActionPending       = "pending"        // closed earlier; waiting for kf_close_session
	ActionFailed        = "failed"         // WeChat refused; not tried again for this session
	ActionRetry         = "retry"          // a transient error; the next sweep tries again
	ActionActive        = "active"         // activity arrived while closing; left open
	// ActionAgentActive (activity.go): the message record shows the
	// conversation going on; left open.
)

// StaleReport is the result of one sweep, served at GET /api/kf/stale.
type StaleReport struct {
	At                time.Time      `json:"at"`
	DryRun            bool           `json:"dry_run"`
	StaleAfterSeconds int64          `json:"stale_after_seconds"`
	Sessions          []StaleSession `json:"sessions"`
}

// StaleSession is one served session idle past the timeout.
type StaleSession struct {
	OpenID       string    `json:"openid"`
	KfAccount    string    `json:"kf_account"`
	Since        time.Time `json:"since,omitzero"`
	LastActivity time.Time `json:"last_activity,omitzero"`
	IdleSeconds  int64     `json:"idle_seconds"`
	Action       string    `json:"action"`
	Error        string    `json:"error,omitempty"`
}

// SweepOnce looks for served sessions with no customer message and no
// session event for Config.StaleAfter and closes them (or, in dry run,
// only reports them). It does nothing unless this replica holds the lease,
// and returns the report it stored (nil when it did not sweep). An error
// wrapping bus.ErrLeaseLost means another replica took the sweep over.
func (s *Service) SweepOnce(ctx context.Context) (*StaleReport, error) {
	s.holderMu.Lock()
	defer s.holderMu.Unlock()
	held, err := s.holdLease(ctx)
	if err != nil || !held {
		return nil, err
	}
	return s.sweep(ctx)
}

// Lease is the lease of the sweeper and the reconciler (nil before Start).
func (s *Service) Lease() *bus.Lease { return s.lease }

// sweep is one sweep by the lease holder; the caller holds holderMu.
//
// The lease is renewed throughout (a sweep of many sessions can outlast a
// tick) and the sweep stops as soon as it is lost. Every close is fenced:
// the Closing marker carries the lease's fence and is set by
// compare-and-set, the lease is checked right before kfsession/close and
// before every write that follows it, and the report is written through
// bus.FencedKV. A replica frozen past its TTL therefore writes nothing
// once it resumes; a close already on its way to WeChat when it froze can
// still reach WeChat, which then answers that the session is gone.
func (s *Service) sweep(ctx context.Context) (*StaleReport, error) {
	ctx, stop := s.lease.Hold(ctx)
	defer stop()
	rep, err := s.sweepHeld(ctx)
	if err = bus.LostCause(ctx, err); errors.Is(err, bus.ErrLeaseLost) {
		s.m.active.Set(0)
		s.log.Warn("queue care lease lost to another replica during a sweep; it stops here", zap.Error(err))
	}
	return rep, err
}

func (s *Service) sweepHeld(ctx context.Context) (*StaleReport, error) {
	now := s.now()
	s.lastSweep = now
	var stale []customers.State
	err := s.states.Scan(ctx, func(st customers.State) {
		if st.Status == customers.StatusServed && now.Sub(st.IdleSince()) >= s.cfg.StaleAfter &&
			!(st.Closing.Failed && st.Closing.SessionAt.Equal(st.Since)) {
			stale = append(stale, st)
		}
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(stale, func(a, b customers.State) int { return a.IdleSince().Compare(b.IdleSince()) })

	rep := &StaleReport{At: now.UTC(), DryRun: s.cfg.StaleDryRun, StaleAfterSeconds: int64(s.cfg.StaleAfter / time.Second), Sessions: []StaleSession{}}
	// What agents type reaches kefu only through the message record: read
	// it before closing anything (activity.go).
	stale, held := s.checkRecordedActivity(ctx, stale, now)
	for _, item := range held {
		s.m.staleCloses.WithLabelValues(item.Action).Inc()
		rep.Sessions = append(rep.Sessions, item)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	for _, st := range stale {
		item := StaleSession{OpenID: st.OpenID, KfAccount: st.KfAccount, Since: st.Since, LastActivity: st.LastActivity,
			IdleSeconds: int64(now.Sub(st.IdleSince()) / time.Second)}
		if s.cfg.StaleDryRun {
			item.Action = ActionWouldClose
		} else {
			var lost error
			item.Action, item.Error, lost = s.closeStale(ctx, st, now)
			if lost != nil {
				return nil, lost
			}
		}
		s.m.staleCloses.WithLabelValues(item.Action).Inc()
		rep.Sessions = append(rep.Sessions, item)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	s.m.staleSessions.Set(float64(len(stale)))
	if len(rep.Sessions) > 0 {
		s.log.Info("stale sessions", zap.Int("count", len(stale)), zap.Int("held", len(held)), zap.Bool("dry_run", s.cfg.StaleDryRun),
			zap.Duration("stale_after", s.cfg.StaleAfter))
		for _, it := range rep.Sessions {
			s.log.Debug("stale session", zap.String("openid", it.OpenID), zap.String("kf_account", it.KfAccount),
				zap.Int64("idle_seconds", it.IdleSeconds), zap.String("action", it.Action))
		}
	}
	data, err := json.Marshal(rep)
	if err != nil {
		return nil, fmt.Errorf("encode stale report: %w", err)
	}
	if _, err := s.bus.FencedKV(s.states.KV(), s.lease).Put(ctx, reportKey, data); err != nil {
		return nil, fmt.Errorf("store stale report: %w", err)
	}
	return rep, nil
}

// leaseLost reports whether err (of a lease check) means another replica
// holds the lease; transient errors leave the close for the next sweep.
func leaseLost(err error) error {
	if errors.Is(err, bus.ErrLeaseLost) {
		return err
	}
	return nil
}

// closeStale closes one stale session, at most once:
//
//  1. mark it Closing with this tenure's lease fence (compare-and-set,
//     re-checking that it is the same session and still idle: activity
//     that arrived meanwhile wins); an unfinished close marked by an
//     earlier tenure is taken over, one marked by a later tenure means
//     the lease is lost;
//  2. check the lease, then kfsession/close with the note for the agent —
//     skipped when an earlier sweep already did it and kf_close_session is
//     still on its way;
//  3. check the lease again, mark Closing done (only if the marker is
//     still this tenure's); then tell the customer, once (kefu_notified),
//     with the feedback link.
//
// lost is non-nil (wrapping bus.ErrLeaseLost) when the sweep must stop.
func (s *Service) closeStale(ctx context.Context, cand customers.State, now time.Time) (action, why string, lost error) {
	if err := s.lease.Check(ctx); err != nil {
		return ActionRetry, err.Error(), leaseLost(err)
	}
	fence := s.lease.Fence()
	st, _, err := s.states.Update(ctx, cand.OpenID, func(st *customers.State) bool {
		if st.Status != customers.StatusServed || st.KfAccount != cand.KfAccount || !st.Since.Equal(cand.Since) ||
			now.Sub(st.IdleSince()) < s.cfg.StaleAfter || st.Closing.Failed {
			return false
		}
		if st.Closing.Reason == customers.ClosedByStale && st.Closing.SessionAt.Equal(st.Since) {
			if st.Closing.Done || st.Closing.Fence >= fence {
				return false // marked by an earlier sweep of this tenure, or by a later holder
			}
			st.Closing.Fence = fence // an earlier holder's unfinished close: finish it
			return true
		}
		st.Closing = customers.Closing{Reason: customers.ClosedByStale, KfAccount: st.KfAccount, SessionAt: st.Since, At: now.UTC(), Fence: fence}
		return true
	})
	if err != nil {
		return ActionRetry, err.Error(), nil
	}
	if st.Status != customers.StatusServed || st.Closing.Reason != customers.ClosedByStale || !st.Closing.SessionAt.Equal(cand.Since) || st.Closing.Failed {
		return ActionActive, "", nil
	}
	if st.Closing.Fence > fence {
		err := fmt.Errorf("%w: a later holder (fence %d) is closing the session", bus.ErrLeaseLost, st.Closing.Fence)
		return ActionRetry, err.Error(), err
	}

	action = ActionPending
	if !st.Closing.Done {
		if err := s.lease.Check(ctx); err != nil {
			return ActionRetry, err.Error(), leaseLost(err)
		}
		note := render(s.cfg.AgentStaleNote, s.cfg.StaleAfter, "")
		cctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
		err := s.api.CloseSession(cctx, st.KfAccount, st.OpenID, note)
		cancel()
		// The call may have taken long, or the process may have stood
		// still: nothing is written unless the lease is still held.
		if cerr := s.lease.Check(ctx); cerr != nil {
			return ActionRetry, cerr.Error(), leaseLost(cerr)
		}
		switch code := errCode(err); {
		case err == nil:
			action = ActionClosed
			s.markClosing(ctx, st, func(c *customers.Closing) { c.Done = true })
		case code == errCodeNoSession:
			// Gone already (the close event was lost, or the agent closed
			// it): the customer is not told about a close kefu did not make.
			s.correct(ctx, st.OpenID, func(c *customers.State) (bool, customers.Effect) {
				return c.ApplyIdleSeen(customers.ObservedAt(s.now())), customers.Effect{}
			})
			return ActionAlreadyClosed, "", nil
		case wechat.IsPermanent(err):
			s.markClosing(ctx, st, func(c *customers.Closing) { c.Failed = true })
			return ActionFailed, err.Error(), nil
		default:
			return ActionRetry, err.Error(), nil
		}
	}

	text := render(s.cfg.StaleMessage, s.cfg.StaleAfter, "")
	recorded := text
	if link := s.link(st.OpenID); link != "" {
		text += "\n" + render(s.cfg.StaleFeedbackLine, s.cfg.StaleAfter, link)
		recorded += "\n" + render(s.cfg.StaleFeedbackLine, s.cfg.StaleAfter, feedbacklink.Redact(link))
	}
	cause := "kf-stale-" + st.OpenID + "-" + strconv.FormatInt(st.Since.Unix(), 10)
	outcome, err := s.sendOnce(ctx, outgoing{
		key: notifiedKeyStale + st.OpenID + "." + strconv.FormatInt(st.Since.Unix(), 10), kind: events.NotifyStaleClosed,
		cause: cause, appID: s.cfg.AppID, openid: st.OpenID, text: text, recorded: recorded,
	})
	if err != nil {
		// Closed; the message is tried again at the next sweep while the
		// record still shows the session (or never, once the close event
		// is in: a late "we closed your session" is better left unsaid).
		return action, err.Error(), nil
	}
	s.m.messages.WithLabelValues(events.NotifyStaleClosed, outcome).Inc()
	return action, "", nil
}

// markClosing updates the Closing marker of st's session, if it is still
// the one this tenure set (st.Closing.Fence).
func (s *Service) markClosing(ctx context.Context, st customers.State, fn func(*customers.Closing)) {
	_, _, err := s.states.Update(ctx, st.OpenID, func(c *customers.State) bool {
		if c.Closing.Reason != customers.ClosedByStale || !c.Closing.SessionAt.Equal(st.Since) || c.Closing.Fence != st.Closing.Fence {
			return false
		}
		fn(&c.Closing)
		return true
	})
	if err != nil {
		s.log.Warn("record stale close", zap.Error(err))
	}
}

// reportKey holds the last stale-session sweep (GET /api/kf/stale) in the
// customers' bucket, beside the records it was drawn from.
const reportKey = "report.stale"

// LastStaleReport returns the report of the last sweep by any replica.
func (s *Service) LastStaleReport(ctx context.Context) (*StaleReport, error) {
	entry, err := s.states.KV().Get(ctx, reportKey)
	if err != nil {
		return nil, err
	}
	var rep StaleReport
	if err := json.Unmarshal(entry.Value(), &rep); err != nil {
		return nil, fmt.Errorf("decode stale report: %w", err)
	}
	return &rep, nil
}
