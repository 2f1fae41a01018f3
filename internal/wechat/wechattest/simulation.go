package wechattest

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// SimConfig drives simulated customers and agents, for kefu demo and for
// tests that want traffic rather than single steps. All durations are in
// simulated time; Speed compresses them.
type SimConfig struct {
	// Seed makes the draws repeatable; 0 picks a random seed.
	Seed uint64
	// Speed divides every drawn duration (default 1; 60 turns minutes into
	// seconds).
	Speed float64
	// ServiceTime draws how long an agent serves a session before closing
	// it (or switching it). Default: log-normal, median 3 minutes.
	ServiceTime func(r *rand.Rand) time.Duration
	// SwitchProb is the chance that, at the end of a service time, the agent
	// hands the session to another online agent (kf_switch_session) instead
	// of closing it (kf_close_session).
	SwitchProb float64
	// ForgetProb is the chance that the agent forgets a session: it is
	// never closed by the simulation (kefu's stale-session sweeper is what
	// closes such sessions).
	ForgetProb float64
	// Arrival draws the gap between arriving customers; nil: no arrivals.
	// An arriving customer sends a text message and joins the queue (unless
	// the receiver's reply already transferred them).
	Arrival func(r *rand.Rand) time.Duration
	// Patience draws how long a queued customer waits before giving up
	// (AbandonWaiting); nil: forever. It applies to every customer queued
	// while the simulation runs.
	Patience func(r *rand.Rand) time.Duration
	// Texts are the first messages of arriving customers.
	Texts []string
}

func (c *SimConfig) setDefaults() {
	if c.Speed <= 0 {
		c.Speed = 1
	}
	if c.ServiceTime == nil {
		c.ServiceTime = func(r *rand.Rand) time.Duration {
			return time.Duration(180 * math.Exp(0.6*r.NormFloat64()) * float64(time.Second))
		}
	}
	if len(c.Texts) == 0 {
		c.Texts = []string{"你好，我的订单一直没有发货", "请问怎么退款？", "人工客服", "账号登录不了", "发票怎么开？"}
	}
}

// simulation state is guarded by Server.mu.
type simulation struct {
	s       *Server
	cfg     SimConfig
	rnd     *rand.Rand
	timers  map[Timer]struct{}
	stopped bool
	ctx     context.Context
	cancel  context.CancelFunc
	running sync.WaitGroup // timer functions still at work outside the lock
}

// StartSimulation starts simulated agents (serving, closing and switching
// every session, including those open now) and, when configured, arriving
// and abandoning customers. Agents themselves (accounts, online status,
// auto_accept) are set up with the control methods.
func (s *Server) StartSimulation(cfg SimConfig) error {
	cfg.setDefaults()
	if cfg.ForgetProb < 0 || cfg.ForgetProb > 1 {
		return errors.New("start simulation: ForgetProb must be within 0..1")
	}
	if cfg.SwitchProb < 0 || cfg.SwitchProb > 1 {
		return errors.New("start simulation: SwitchProb must be within 0..1")
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sim != nil {
		return errors.New("start simulation: already running")
	}
	ctx, cancel := context.WithCancel(context.Background())
	sim := &simulation{
		s: s, cfg: cfg, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		timers: map[Timer]struct{}{}, ctx: ctx, cancel: cancel,
	}
	s.sim = sim
	for _, sess := range s.sortedSessionsLocked("") {
		sim.sessionStartedLocked(sess)
	}
	for _, w := range s.waiting {
		sim.customerQueuedLocked(w.openid)
	}
	if cfg.Arrival != nil {
		sim.scheduleArrivalLocked()
	}
	return nil
}

// StopSimulation stops the simulation and waits for a customer arrival in
// progress; sessions and the queue stay as they are.
func (s *Server) StopSimulation() {
	s.mu.Lock()
	sim := s.sim
	if sim == nil {
		s.mu.Unlock()
		return
	}
	s.sim = nil
	sim.stopped = true
	for t := range sim.timers {
		t.Stop()
	}
	sim.cancel()
	s.mu.Unlock()
	sim.running.Wait()
}

func (sim *simulation) scaled(d time.Duration) time.Duration {
	if d < 0 {
		d = 0
	}
	return time.Duration(float64(d) / sim.cfg.Speed)
}

// afterLocked schedules f unless the simulation has stopped by then. f runs
// with Server.mu held and may return a function to run after the lock is
// released (anything that waits for a callback). The caller holds
// Server.mu, so the timer cannot fire before t is assigned.
func (sim *simulation) afterLocked(d time.Duration, f func() (then func())) {
	var t Timer
	t = sim.s.clock.AfterFunc(sim.scaled(d), func() {
		sim.s.mu.Lock()
		delete(sim.timers, t)
		if sim.stopped {
			sim.s.mu.Unlock()
			return
		}
		then := f()
		if then == nil {
			sim.s.mu.Unlock()
			return
		}
		sim.running.Add(1)
		sim.s.mu.Unlock()
		defer sim.running.Done()
		then()
	})
	sim.timers[t] = struct{}{}
}

// sessionStartedLocked lets the serving agent work on sess for a drawn
// service time, then close it or hand it over.
func (sim *simulation) sessionStartedLocked(sess *session) {
	s := sim.s
	if sim.cfg.ForgetProb > 0 && sim.rnd.Float64() < sim.cfg.ForgetProb {
		return
	}
	sim.afterLocked(sim.cfg.ServiceTime(sim.rnd), func() func() {
		if s.sessions[sess.openid] != sess {
			return nil // closed or switched meanwhile
		}
		if sim.rnd.Float64() < sim.cfg.SwitchProb {
			if to := sim.otherOnlineAgentLocked(sess.account); to != nil {
				s.switchLocked(sess, to)
				s.assignLocked()
				return nil
			}
		}
		s.endSessionLocked(sess)
		s.assignLocked()
		return nil
	})
}

func (sim *simulation) otherOnlineAgentLocked(account string) *agent {
	var candidates []*agent
	for _, a := range sim.s.sortedAgentsLocked() {
		if a.online() && a.account != account {
			candidates = append(candidates, a)
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	return candidates[sim.rnd.IntN(len(candidates))]
}

// customerQueuedLocked gives a queued customer a drawn patience.
func (sim *simulation) customerQueuedLocked(openid string) {
	if sim.cfg.Patience == nil {
		return
	}
	s := sim.s
	w := s.waitCaseLocked(openid)
	sim.afterLocked(sim.cfg.Patience(sim.rnd), func() func() {
		if s.waitCaseLocked(openid) == w {
			s.removeWaitingLocked(openid)
		}
		return nil
	})
}

func (sim *simulation) scheduleArrivalLocked() {
	sim.afterLocked(sim.cfg.Arrival(sim.rnd), func() func() {
		openid := sim.newOpenIDLocked()
		text := sim.cfg.Texts[sim.rnd.IntN(len(sim.cfg.Texts))]
		sim.scheduleArrivalLocked()
		// The message waits for the receiver's answer: not under the lock.
		return func() { sim.arrive(openid, text) }
	})
}

func (sim *simulation) arrive(openid, text string) {
	s := sim.s
	if _, err := s.CustomerMessage(sim.ctx, openid, text); err != nil {
		return // the simulation stopped while the callback was out
	}
	s.mu.Lock()
	_, served := s.sessions[openid]
	queued := s.waitCaseLocked(openid) != nil
	stopped := sim.stopped
	s.mu.Unlock()
	if !served && !queued && !stopped {
		_ = s.TransferToQueue(openid, "")
	}
}

const openIDAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// newOpenIDLocked makes a 28-character openid starting with "o", the shape
// of real ones.
func (sim *simulation) newOpenIDLocked() string {
	b := make([]byte, 28)
	b[0] = 'o'
	for i := 1; i < len(b); i++ {
		b[i] = openIDAlphabet[sim.rnd.IntN(len(openIDAlphabet))]
	}
	return string(b)
}
