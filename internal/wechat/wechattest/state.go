package wechattest

import (
	"cmp"
	"slices"
	"strconv"
	"time"
)

// Agent online status, as getonlinekflist reports it: 1 PC, 2 mobile, 3 both.
const (
	StatusOffline = 0
	StatusPC      = 1
	StatusMobile  = 2
	StatusBoth    = 3
)

type agent struct {
	account     string
	nickname    string
	password    string
	id          string // kf_id, a decimal string from 1001 on
	status      int
	autoAccept  int
	accepted    int // sessions it serves now
	headImg     []byte
	headImgType string
	// The WeChat user bound to the account, and the last invitation
	// (kfaccount/inviteworker, see invite.go).
	kfWx   string
	invite *invitation
}

func (a *agent) online() bool { return a.status != StatusOffline }

// freeSlot reports whether auto-assignment may give a another customer.
// Explicit session creation ignores this, as documented.
func (a *agent) freeSlot() bool { return a.online() && a.accepted < a.autoAccept }

type customer struct {
	openid          string
	lastInteraction time.Time
	sentSince       int // custom/send messages since lastInteraction
	unsubscribed    bool
}

type waitCase struct {
	openid    string
	account   string // the agent the customer waits for; "" for anyone
	createdAt time.Time
	latestAt  time.Time // the customer's latest message
}

type session struct {
	openid    string
	account   string
	createdAt time.Time
}

// touchLocked records a customer interaction (message, menu click,
// subscription…): it opens the 48-hour window and resets the 45047 count.
func (s *Server) touchLocked(openid string, now time.Time) *customer {
	c := s.customerLocked(openid)
	c.lastInteraction = now
	c.sentSince = 0
	c.unsubscribed = false
	if w := s.waitCaseLocked(openid); w != nil {
		w.latestAt = now
	}
	return c
}

// customerLocked returns the customer, creating a record without any
// interaction yet (custom/send then answers 45015).
func (s *Server) customerLocked(openid string) *customer {
	c, ok := s.customers[openid]
	if !ok {
		c = &customer{openid: openid}
		s.customers[openid] = c
	}
	return c
}

func (s *Server) waitCaseLocked(openid string) *waitCase {
	for _, w := range s.waiting {
		if w.openid == openid {
			return w
		}
	}
	return nil
}

func (s *Server) removeWaitingLocked(openid string) *waitCase {
	for i, w := range s.waiting {
		if w.openid == openid {
			s.waiting = slices.Delete(s.waiting, i, i+1)
			return w
		}
	}
	return nil
}

// transferLocked puts a customer into the 多客服 queue, for one agent when
// account names an existing one. A customer already waiting or being served
// stays where they are: their messages go to the session.
func (s *Server) transferLocked(openid, account string, now time.Time) {
	if _, ok := s.sessions[openid]; ok {
		return
	}
	if s.waitCaseLocked(openid) != nil {
		return
	}
	if _, ok := s.agents[account]; !ok {
		account = ""
	}
	c := s.customerLocked(openid)
	latest := c.lastInteraction
	if latest.IsZero() {
		latest = now
	}
	s.waiting = append(s.waiting, &waitCase{openid: openid, account: account, createdAt: now, latestAt: latest})
	if s.sim != nil {
		s.sim.customerQueuedLocked(openid)
	}
	s.assignLocked()
}

// assignLocked gives waiting customers, earliest first, to agents with a
// free auto-accept slot: a customer waiting for one agent only to that
// agent, others to the least busy online agent (ties: lowest kf_id). A
// customer whose agent is busy does not hold up the customers behind them.
func (s *Server) assignLocked() {
	for i := 0; i < len(s.waiting); {
		w := s.waiting[i]
		a := s.pickAgentLocked(w.account)
		if a == nil {
			i++
			continue
		}
		s.waiting = slices.Delete(s.waiting, i, i+1)
		s.startSessionLocked(w.openid, a)
	}
}

func (s *Server) pickAgentLocked(account string) *agent {
	if account != "" {
		if a := s.agents[account]; a != nil && a.freeSlot() {
			return a
		}
		return nil
	}
	var best *agent
	for _, a := range s.agents {
		if !a.freeSlot() {
			continue
		}
		if best == nil || a.accepted < best.accepted ||
			(a.accepted == best.accepted && kfIDLess(a.id, best.id)) {
			best = a
		}
	}
	return best
}

func kfIDLess(a, b string) bool {
	x, _ := strconv.Atoi(a)
	y, _ := strconv.Atoi(b)
	return x < y
}

// startSessionLocked makes a serve openid and sends kf_create_session.
func (s *Server) startSessionLocked(openid string, a *agent) {
	now := s.clock.Now()
	sess := &session{openid: openid, account: a.account, createdAt: now}
	s.sessions[openid] = sess
	a.accepted++
	s.emitLocked(openid, now, "kf_create_session", field{"KfAccount", a.account})
	if s.sim != nil {
		s.sim.sessionStartedLocked(sess)
	}
}

// endSessionLocked removes the session and sends kf_close_session. The
// caller runs assignLocked afterwards, since a slot is now free.
func (s *Server) endSessionLocked(sess *session) {
	delete(s.sessions, sess.openid)
	if a := s.agents[sess.account]; a != nil {
		a.accepted--
	}
	s.emitLocked(sess.openid, s.clock.Now(), "kf_close_session", field{"KfAccount", sess.account})
}

// switchLocked hands a session to another agent, as an agent does from the
// 多客服 client, and sends kf_switch_session. The new agent accepts it
// whatever its auto-accept setting; the session's createtime becomes the
// hand-over time.
func (s *Server) switchLocked(sess *session, to *agent) {
	now := s.clock.Now()
	if from := s.agents[sess.account]; from != nil {
		from.accepted--
	}
	next := &session{openid: sess.openid, account: to.account, createdAt: now}
	s.sessions[sess.openid] = next
	to.accepted++
	s.emitLocked(sess.openid, now, "kf_switch_session",
		field{"FromKfAccount", sess.account}, field{"ToKfAccount", to.account})
	if s.sim != nil {
		s.sim.sessionStartedLocked(next)
	}
}

// createSessionLocked implements kfsession/create.
func (s *Server) createSessionLocked(account, openid string) *APIError {
	a, e := s.agentLocked(account)
	if e != nil {
		return e
	}
	if openid == "" {
		return apiErr(CodeInvalidOpenID, "")
	}
	if _, ok := s.customers[openid]; !ok {
		return apiErr(CodeInvalidOpenID, "")
	}
	if sess, ok := s.sessions[openid]; ok {
		if sess.account == account {
			return nil // already served by this agent: a retried call succeeds
		}
		return apiErr(CodeServedByOtherKF, "")
	}
	if !a.online() {
		return apiErr(CodeKFOffline, "")
	}
	s.removeWaitingLocked(openid)
	s.startSessionLocked(openid, a)
	return nil
}

// closeSessionLocked implements kfsession/close: only the agent serving an
// accepted session can close it. A customer still waiting in the queue has
// no session to close (65413); use AbandonWaiting for that.
func (s *Server) closeSessionLocked(account, openid string) *APIError {
	if _, ok := s.agents[account]; !ok {
		return apiErr(CodeInvalidKFAccount, "")
	}
	if openid == "" {
		return apiErr(CodeInvalidOpenID, "")
	}
	sess, ok := s.sessions[openid]
	if !ok {
		return apiErr(CodeNoSession, "")
	}
	if sess.account != account {
		return apiErr(CodeServedByOtherKF, "")
	}
	s.endSessionLocked(sess)
	s.assignLocked()
	return nil
}

// deleteAgentLocked removes an agent. Its sessions are closed (with
// kf_close_session) and the customers waiting for it join the general queue.
func (s *Server) deleteAgentLocked(a *agent) {
	for _, sess := range s.sortedSessionsLocked(a.account) {
		s.endSessionLocked(sess)
	}
	delete(s.agents, a.account)
	for _, w := range s.waiting {
		if w.account == a.account {
			w.account = ""
		}
	}
	s.assignLocked()
}

// sortedSessionsLocked returns the sessions of account ("" for all) by
// createtime, then openid.
func (s *Server) sortedSessionsLocked(account string) []*session {
	var out []*session
	for _, sess := range s.sessions {
		if account == "" || sess.account == account {
			out = append(out, sess)
		}
	}
	slices.SortFunc(out, func(a, b *session) int {
		return cmp.Or(a.createdAt.Compare(b.createdAt), cmp.Compare(a.openid, b.openid))
	})
	return out
}

func (s *Server) sortedAgentsLocked() []*agent {
	out := make([]*agent, 0, len(s.agents))
	for _, a := range s.agents {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *agent) int {
		x, _ := strconv.Atoi(a.id)
		y, _ := strconv.Atoi(b.id)
		return cmp.Compare(x, y)
	})
	return out
}
