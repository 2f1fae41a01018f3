package queuecare

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

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
	Since        time.Time `json:"since"`
	LastActivity time.Time `json:"last_activity"`
	IdleSeconds  int64     `json:"idle_seconds"`
	Action       string    `json:"action"`
	Error        string    `json:"error,omitempty"`
}

// SweepOnce looks for served sessions with no customer message and no
// session event for Config.StaleAfter and closes them (or, in dry run,
// only reports them). It does nothing unless this replica holds the lease,
// and returns the report it stored (nil when it did not sweep).
func (s *Service) SweepOnce(ctx context.Context) (*StaleReport, error) {
	s.holderMu.Lock()
	defer s.holderMu.Unlock()
	held, err := s.holdLease(ctx)
	if err != nil || !held {
		return nil, err
	}
	return s.sweep(ctx)
}

// sweep is one sweep by the lease holder; the caller holds holderMu.
func (s *Service) sweep(ctx context.Context) (*StaleReport, error) {
	now := s.now()
	s.lastSweep = now
	var stale []CustomerState
	err := s.states.scan(ctx, func(st CustomerState) {
		if st.Status == StatusServed && now.Sub(st.idleSince()) >= s.cfg.StaleAfter &&
			!(st.Closing.Failed && st.Closing.SessionAt.Equal(st.Since)) {
			stale = append(stale, st)
		}
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(stale, func(a, b CustomerState) int { return a.idleSince().Compare(b.idleSince()) })

	rep := &StaleReport{At: now.UTC(), DryRun: s.cfg.StaleDryRun, StaleAfterSeconds: int64(s.cfg.StaleAfter / time.Second), Sessions: []StaleSession{}}
	for _, st := range stale {
		item := StaleSession{OpenID: st.OpenID, KfAccount: st.KfAccount, Since: st.Since, LastActivity: st.LastActivity,
			IdleSeconds: int64(now.Sub(st.idleSince()) / time.Second)}
		if s.cfg.StaleDryRun {
			item.Action = ActionWouldClose
		} else {
			item.Action, item.Error = s.closeStale(ctx, st, now)
		}
		s.m.staleCloses.WithLabelValues(item.Action).Inc()
		rep.Sessions = append(rep.Sessions, item)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	s.m.staleSessions.Set(float64(len(stale)))
	if len(stale) > 0 {
		s.log.Info("stale sessions", zap.Int("count", len(stale)), zap.Bool("dry_run", s.cfg.StaleDryRun),
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
	if _, err := s.states.kv.Put(ctx, reportKey, data); err != nil {
		return nil, fmt.Errorf("store stale report: %w", err)
	}
	return rep, nil
}

// closeStale closes one stale session, at most once:
//
//  1. mark it Closing (compare-and-set, re-checking that it is the same
//     session and still idle: activity that arrived meanwhile wins);
//  2. kfsession/close with the note for the agent — skipped when an
//     earlier sweep already did it and kf_close_session is still on its way;
//  3. mark Closing done; then tell the customer, once (kefu_notified), with
//     the feedback link.
func (s *Service) closeStale(ctx context.Context, cand CustomerState, now time.Time) (action, why string) {
	st, _, err := s.states.update(ctx, cand.OpenID, func(st *CustomerState) bool {
		if st.Status != StatusServed || st.KfAccount != cand.KfAccount || !st.Since.Equal(cand.Since) ||
			now.Sub(st.idleSince()) < s.cfg.StaleAfter || st.Closing.Failed {
			return false
		}
		if st.Closing.Reason == ClosedByStale && st.Closing.SessionAt.Equal(st.Since) {
			return false // marked by an earlier sweep
		}
		st.Closing = Closing{Reason: ClosedByStale, KfAccount: st.KfAccount, SessionAt: st.Since, At: now.UTC()}
		return true
	})
	if err != nil {
		return ActionRetry, err.Error()
	}
	if st.Status != StatusServed || st.Closing.Reason != ClosedByStale || !st.Closing.SessionAt.Equal(cand.Since) || st.Closing.Failed {
		return ActionActive, ""
	}

	action = ActionPending
	if !st.Closing.Done {
		note := render(s.cfg.AgentStaleNote, s.cfg.StaleAfter, "")
		cctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
		err := s.api.CloseSession(cctx, st.KfAccount, st.OpenID, note)
		cancel()
		switch code := errCode(err); {
		case err == nil:
			action = ActionClosed
			s.markClosing(ctx, st, func(c *Closing) { c.Done = true })
		case code == errCodeNoSession:
			// Gone already (the close event was lost, or the agent closed
			// it): the customer is not told about a close kefu did not make.
			s.correct(ctx, st.OpenID, func(c *CustomerState) (bool, effect) { return c.applyIdleSeen(observedAt(s.now())), effect{} })
			return ActionAlreadyClosed, ""
		case wechat.IsPermanent(err):
			s.markClosing(ctx, st, func(c *Closing) { c.Failed = true })
			return ActionFailed, err.Error()
		default:
			return ActionRetry, err.Error()
		}
	}

	text := render(s.cfg.StaleMessage, s.cfg.StaleAfter, "")
	recorded := text
	if link := s.link(st.OpenID); link != "" {
		text += "\n" + render(s.cfg.StaleFeedbackLine, s.cfg.StaleAfter, link)
		recorded += "\n" + render(s.cfg.StaleFeedbackLine, s.cfg.StaleAfter, redactLink(link))
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
		return action, err.Error()
	}
	s.m.messages.WithLabelValues(events.NotifyStaleClosed, outcome).Inc()
	return action, ""
}

// markClosing updates the Closing marker of st's session.
func (s *Service) markClosing(ctx context.Context, st CustomerState, fn func(*Closing)) {
	_, _, err := s.states.update(ctx, st.OpenID, func(c *CustomerState) bool {
		if c.Closing.Reason != ClosedByStale || !c.Closing.SessionAt.Equal(st.Since) {
			return false
		}
		fn(&c.Closing)
		return true
	})
	if err != nil {
		s.log.Warn("record stale close", zap.Error(err))
	}
}

// LastStaleReport returns the report of the last sweep by any replica.
func (s *Service) LastStaleReport(ctx context.Context) (*StaleReport, error) {
	entry, err := s.states.kv.Get(ctx, reportKey)
	if err != nil {
		return nil, err
	}
	var rep StaleReport
	if err := json.Unmarshal(entry.Value(), &rep); err != nil {
		return nil, fmt.Errorf("decode stale report: %w", err)
	}
	return &rep, nil
}

// redactLink blanks the signed token of one of kefu's feedback links
// (…/feedback/<token>) for events: anyone holding it could post as the
// customer. A plain Tucao link carries no secret and stays.
func redactLink(link string) string {
	if i := strings.LastIndexByte(link, '/'); i >= 0 && i < len(link)-1 && strings.HasSuffix(link[:i+1], "/feedback/") {
		return link[:i+1] + "REDACTED"
	}
	return link
}
