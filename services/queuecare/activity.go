package queuecare

import (
	"github.com/kefu-io/kefu/internal/customers"

	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/kefu-io/kefu/internal/wechat"
)

// ActionAgentActive is the stale report's action for a session that looked
// idle but whose message record shows the agent or the customer writing
// within Config.StaleAfter: it is left open, and its idle stretch restarts
// at that message.
const ActionAgentActive = "agent_active"

// MessageRecords is the message-record part of the WeChat API
// (customservice/msgrecord/getmsglist); *wechat.Client implements it. When
// Deps.API implements it, the sweeper reads the record before closing
// anything, since WeChat pushes no callback for what an agent types.
type MessageRecords interface {
	GetMsgList(ctx context.Context, start, end time.Time, msgID int64, number int) (wechat.MsgListPage, error)
}

// The production client must implement it, or the check would silently be
// off.
var _ MessageRecords = (*wechat.Client)(nil)

// Budget of the message-record reads. One sweep reads the records of the
// last Config.StaleAfter once, for all the sessions it is about to close,
// and never more than msgRecordPagesPerMinute pages (10,000 records each)
// in any minute; a sweep that does not get through the record closes
// nothing and tries again next time.
const (
	msgRecordPagesPerMinute = 10
	msgRecordPageSize       = wechat.MsgListMaxNumber
)

// errRecordBudget means the record holds more than the budget allows
// reading now.
var errRecordBudget = errors.New("message record larger than this minute's read budget")

// activityCheck holds the read budget; its zero value is ready and it is
// used only by the lease holder, under holderMu.
type activityCheck struct {
	limiter *rate.Limiter
}

func (a *activityCheck) allow(now time.Time) bool {
	if a.limiter == nil {
		a.limiter = rate.NewLimiter(rate.Limit(float64(msgRecordPagesPerMinute)/60), msgRecordPagesPerMinute)
	}
	return a.limiter.AllowN(now, 1)
}

// latestRecorded reads the message record of (now − StaleAfter, now] and
// returns, per customer, the time of the latest message an agent sent
// (2002) or received (2003).
func (s *Service) latestRecorded(ctx context.Context, records MessageRecords, now time.Time) (map[string]time.Time, error) {
	latest := make(map[string]time.Time)
	start := now.Add(-s.cfg.StaleAfter)
	for from := start; from.Before(now); from = from.Add(wechat.MsgListMaxSpan) {
		to := from.Add(wechat.MsgListMaxSpan)
		if to.After(now) {
			to = now
		}
		for next := int64(1); ; {
			if !s.activity.allow(s.now()) {
				return nil, errRecordBudget
			}
			cctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
			page, err := records.GetMsgList(cctx, from, to, next, msgRecordPageSize)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("read message record: %w", err)
			}
			for _, r := range page.Records {
				if r.OperCode != wechat.OperCodeAgentSent && r.OperCode != wechat.OperCodeAgentReceived {
					continue
				}
				if t := time.Unix(r.Time, 0).UTC(); t.After(latest[r.OpenID]) {
					latest[r.OpenID] = t
				}
			}
			if len(page.Records) < msgRecordPageSize || page.Next <= next {
				break
			}
			next = page.Next
		}
	}
	return latest, nil
}

// checkRecordedActivity sorts the sessions about to be swept into those
// the message record shows active (their idle stretch restarts at the
// latest recorded message, which is stored) and those still idle. When the
// record cannot be read, every session is held back with the error: kefu
// does not close a conversation it cannot show to be idle.
func (s *Service) checkRecordedActivity(ctx context.Context, stale []customers.State, now time.Time) (idle []customers.State, held []StaleSession) {
	records, ok := s.api.(MessageRecords)
	if !ok {
		return stale, nil
	}
	// A close kefu already made (waiting for kf_close_session) or began
	// needs no second look.
	var unchecked []customers.State
	for _, st := range stale {
		if st.Closing.Reason == customers.ClosedByStale && st.Closing.SessionAt.Equal(st.Since) {
			idle = append(idle, st)
		} else {
			unchecked = append(unchecked, st)
		}
	}
	if len(unchecked) == 0 {
		return idle, nil
	}
	stale = unchecked
	latest, err := s.latestRecorded(ctx, records, now)
	if err != nil {
		s.log.Warn("stale sessions left open: the message record could not be read", zap.Int("sessions", len(stale)), zap.Error(err))
		for _, st := range stale {
			held = append(held, staleItem(st, now, ActionRetry, err.Error()))
		}
		return idle, held
	}
	for _, st := range stale {
		at, ok := latest[st.OpenID]
		if !ok || !at.After(st.IdleSince()) || now.Sub(at) >= s.cfg.StaleAfter {
			idle = append(idle, st)
			continue
		}
		_, _, err := s.states.Update(ctx, st.OpenID, func(c *customers.State) bool {
			return c.Status == customers.StatusServed && c.KfAccount == st.KfAccount && c.Since.Equal(st.Since) && c.Touch(at)
		})
		if err != nil {
			s.log.Debug("record agent activity", zap.Error(err))
		}
		st.LastActivity = at
		held = append(held, staleItem(st, now, ActionAgentActive, ""))
	}
	return idle, held
}

func staleItem(st customers.State, now time.Time, action, why string) StaleSession {
	return StaleSession{OpenID: st.OpenID, KfAccount: st.KfAccount, Since: st.Since, LastActivity: st.LastActivity,
		IdleSeconds: int64(now.Sub(st.IdleSince()) / time.Second), Action: action, Error: why}
}
