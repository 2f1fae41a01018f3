package queuecare

import (
	"github.com/kefu-io/kefu/internal/customers"

	"context"
	"slices"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/wechat"
)

// ReconcileOnce checks customers active within Config.ReconcileWindow
// against getsession, oldest check first, as far as the call budget
// (Config.ReconcileCallsPerMinute) allows now, and corrects the read model
// where an event was lost: a missed kf_create_session, kf_close_session or
// a queue entry WeChat never announces. A customer is checked again at
// most every Config.ReconcileEvery. Only the lease holder reconciles, so
// the budget holds across replicas. It returns the number of calls made.
func (s *Service) ReconcileOnce(ctx context.Context) (int, error) {
	if s.limiter == nil {
		return 0, nil
	}
	s.holderMu.Lock()
	defer s.holderMu.Unlock()
	held, err := s.holdLease(ctx)
	if err != nil || !held {
		return 0, err
	}
	return s.reconcilePass(ctx)
}

// reconcilePass is one pass by the lease holder; the caller holds holderMu.
func (s *Service) reconcilePass(ctx context.Context) (int, error) {
	if s.limiter == nil {
		return 0, nil
	}
	now := s.now()
	var due []customers.State
	err := s.states.Scan(ctx, func(st customers.State) {
		if now.Sub(st.ActiveAt()) <= s.cfg.ReconcileWindow && now.Sub(st.CheckedAt) >= s.cfg.ReconcileEvery {
			due = append(due, st)
		}
	})
	if err != nil {
		return 0, err
	}
	// Never-checked and longest-unchecked customers first, so that with
	// more customers than budget every one is reached in turn.
	slices.SortFunc(due, func(a, b customers.State) int {
		if c := a.CheckedAt.Compare(b.CheckedAt); c != 0 {
			return c
		}
		return b.ActiveAt().Compare(a.ActiveAt())
	})
	calls := 0
	for _, st := range due {
		if ctx.Err() != nil {
			return calls, ctx.Err()
		}
		if !s.limiter.AllowN(s.now(), 1) {
			break
		}
		calls++
		s.reconcile(ctx, st)
	}
	return calls, nil
}

// reconcile checks one customer with getsession and applies the answer.
func (s *Service) reconcile(ctx context.Context, was customers.State) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	info, err := s.api.GetSession(cctx, was.OpenID)
	cancel()
	p := s.now()
	if err != nil {
		s.m.reconcileCalls.WithLabelValues("error").Inc()
		if !wechat.IsPermanent(err) {
			s.log.Debug("getsession failed; the customer is checked again later", zap.Error(err))
			return
		}
		// 40003 and the like: asking again will not help within ReconcileEvery.
	} else {
		s.m.reconcileCalls.WithLabelValues("ok").Inc()
	}
	var eff customers.Effect
	// Always written: CheckedAt moves even when the state was right.
	now, _, uerr := s.states.Update(ctx, was.OpenID, func(st *customers.State) bool {
		eff = customers.Effect{}
		if err == nil {
			switch {
			case info.KfAccount != "":
				_, eff = st.ApplyServedSeen(info.KfAccount, unixTime(info.CreateTime), p, s.cfg.DeferredCloseWithin)
			case info.CreateTime != 0:
				st.ApplyWaitingSeen(customers.WaitingSeen{At: p, QueuedAt: unixTime(info.CreateTime)})
			case st.Status == customers.StatusWaiting:
				// getsession may answer createtime 0 for a customer in
				// the queue: no evidence they left. The estimator reports
				// a customer who vanished from getwaitcase.
			default:
				st.ApplyIdleSeen(customers.ObservedAt(p))
			}
		}
		st.CheckedAt = p.UTC()
		return true
	})
	if uerr != nil {
		s.log.Warn("store reconciled state", zap.Error(uerr))
		return
	}
	if now.Status != was.Status {
		s.m.corrections.WithLabelValues(string(was.Status), string(now.Status)).Inc()
		s.log.Info("reconciliation corrected a customer state", zap.String("from", string(was.Status)), zap.String("to", string(now.Status)))
	}
	if eff.CloseKf != "" {
		if err := s.deferredClose(ctx, was.OpenID, eff.CloseKf); err != nil {
			s.log.Warn("deferred close", zap.Error(err))
		}
	}
}
