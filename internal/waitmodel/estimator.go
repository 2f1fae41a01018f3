package waitmodel

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Estimator learns from events and snapshots and predicts waits. It is not
// safe for concurrent use. Events and snapshots should arrive in time
// order; an event older than the last one seen is applied without moving
// the learning clock backwards.
type Estimator struct {
	cfg      Config
	tau      float64 // seconds; decay time constant HalfLife/ln 2
	tauShort float64 // same for ShortHalfLife
	z        float64 // standard normal quantile of cfg.Quantile

	clock   time.Time
	started bool

	agents map[string]*agentState
	// accounts lists agents sorted, so sums over agents (and thus every
	// estimate) do not depend on map iteration order.
	accounts []string
	// Aggregates over online agents, kept in step by account().
	fullSessions int // sessions of online agents whose slots are all taken
	onlineSlots  int
	busySlots    int

	// Decayed learning (kefu model).
	dep, expo       float64 // departures of full agents; full-session seconds
	depS, expoS     float64 // the same with the short memory (change test)
	paceChanges     int     // times the change test replaced the long memory
	aband, waitExpo float64 // abandonments; listed-customer waiting seconds
	shape           shape
	// calib holds, per queue-depth bucket, recent ratios of the wait from
	// a prediction to service over that prediction; calibEntry the same
	// for the estimates made at the join, between snapshots (EstimateJoin).
	calib      [calibBuckets]ratioRing
	calibEntry [calibBuckets]ratioRing

	// Long-run learning (baselines).
	durSum, durN   float64 // all closed sessions
	waitSum, waitN float64 // served customers that were listed
	les            float64 // wait of the last customer who entered service
	lesSet         bool
	gaps           []float64 // QL-emp: recent departure gaps while all busy
	gapNext        int
	gapFilled      int
	lastBusyDep    time.Time
	lastBusyDepSet bool

	// roster holds the time-of-day presence profile of every agent seen
	// (schedule.go); rosterKeys is scratch for a sorted walk.
	roster     map[string]*presence
	rosterKeys []string

	waiting   map[string]*waitState // cases listed at the last snapshot
	vanished  map[string]vanishedCase
	gen       uint64
	lastCount int
	lastAt    time.Time
	// joinsSince counts EstimateJoin calls since the last Observe;
	// leftSince the waiting customers served or gone since.
	joinsSince, leftSince int

	v view // the last snapshot, prepared for predictions

	// estBuf backs Result.Estimates.
	estBuf []Estimate

	// restored holds the predictions of the customers waiting at the
	// last save (UnmarshalState), until the first snapshot.
	restored map[string]pendingPred
}

type agentState struct {
	account  string
	gen      uint64 // snapshot generation that last listed the agent
	online   bool
	capacity int
	sessions map[string]time.Time
	// unknownAge counts sessions reported by accepted_case without a
	// getsessionlist entry: their age is unknown.
	unknownAge int

	// Residual mass of the sessions per grid cell, computed once per
	// Observe (qGen) by the first pool that needs it.
	qGen    uint64
	q       [gridPoints + 1]float64
	qLinear float64
}

func (a *agentState) busy() int { return len(a.sessions) + a.unknownAge }

type waitState struct {
	since    time.Time
	kf       string
	gen      uint64
	lastSeen time.Time
	inferred bool
	// pred is the wait (seconds) predicted at predAt, the first prediction
	// made for the customer (at the join, or when first listed); <0 none.
	// Calibration compares it with the wait from predAt, never from the
	// join: a prediction made after the customer had waited a while
	// predicts only what is left.
	pred      float64
	predAt    time.Time
	predEntry bool // pred was made at the join (EstimateJoin)
	bucket    int
	idx       int // index in v.cases
}

type vanishedCase struct {
	since     time.Time
	at        time.Time // midpoint between last seen and first missing
	noted     time.Time // snapshot that found it missing
	pred      float64
	predAt    time.Time
	predEntry bool
	bucket    int
}

const calibBuckets = 8

// New returns an Estimator; cfg zero fields take their defaults.
func New(cfg Config) (*Estimator, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new estimator: %w", err)
	}
	return &Estimator{
		cfg:      cfg,
		tau:      cfg.HalfLife.Seconds() / math.Ln2,
		tauShort: cfg.ShortHalfLife.Seconds() / math.Ln2,
		z:        normalQuantile(cfg.Quantile),
		agents:   make(map[string]*agentState),
		shape:    newShape(cfg.ShapeSamples),
		gaps:     make([]float64, cfg.QLEmpWindow),
		waiting:  make(map[string]*waitState),
		vanished: make(map[string]vanishedCase),
	}, nil
}

// Config returns the configuration in use, defaults filled.
func (e *Estimator) Config() Config { return e.cfg }

// advance moves the learning clock to t, decaying old observations and
// integrating the exposure (time full sessions ran, time listed customers
// waited) since the previous call.
func (e *Estimator) advance(t time.Time) {
	if !e.started {
		e.clock, e.started = t, true
		return
	}
	dt := t.Sub(e.clock).Seconds()
	if dt <= 0 {
		return
	}
	f := math.Exp(-dt / e.tau)
	// Exposure is integrated with the end-of-interval weight; intervals are
	// seconds long against a half-life of hours.
	e.dep *= f
	e.expo = e.expo*f + float64(e.fullSessions)*dt
	fs := math.Exp(-dt / e.tauShort)
	e.depS *= fs
	e.expoS = e.expoS*fs + float64(e.fullSessions)*dt
	e.aband *= f
	e.waitExpo = e.waitExpo*f + float64(len(e.waiting))*dt
	e.clock = t
}

// account adds (sign +1) or removes (−1) an agent's share of the online
// aggregates; callers bracket every change of the agent with it.
func (e *Estimator) account(a *agentState, sign int) {
	if !a.online {
		return
	}
	e.onlineSlots += sign * a.capacity
	e.busySlots += sign * min(a.busy(), a.capacity)
	if a.capacity > 0 && a.busy() >= a.capacity {
		e.fullSessions += sign * a.busy()
	}
}

func (e *Estimator) agent(kf string) *agentState {
	a := e.agents[kf]
	if a == nil {
		// An agent can only be given a session while online; its capacity
		// is learned from the next snapshot.
		a = &agentState{account: kf, online: true, sessions: make(map[string]time.Time)}
		e.agents[kf] = a
		i, _ := slices.BinarySearch(e.accounts, kf)
		e.accounts = slices.Insert(e.accounts, i, kf)
	}
	return a
}

// SessionCreated records kf_create_session: agent kf took openid at at.
// If openid was waiting, its wait is learned (LES, constant mean and the
// calibration of the P90 band).
func (e *Estimator) SessionCreated(openid, kf string, at time.Time) {
	e.advance(at)
	a := e.agent(kf)
	e.account(a, -1)
	a.sessions[openid] = at
	e.account(a, +1)

	if w, ok := e.waiting[openid]; ok {
		e.served(at, w.since, w.pred, w.predAt, w.predEntry, w.bucket)
		delete(e.waiting, openid)
		e.leftSince++
		return
	}
	if v, ok := e.vanished[openid]; ok {
		e.served(at, v.since, v.pred, v.predAt, v.predEntry, v.bucket)
		delete(e.vanished, openid)
	}
}

// served learns from a customer served at at who waited since since; pred
// is the wait predicted at predAt.
func (e *Estimator) served(at, since time.Time, pred float64, predAt time.Time, entry bool, bucket int) {
	wait := max(0, at.Sub(since).Seconds())
	e.waitSum += wait
	e.waitN++
	e.les, e.lesSet = wait, true
	if pred >= 1 && !predAt.IsZero() {
		ring := &e.calib[bucket]
		if entry {
			ring = &e.calibEntry[bucket]
		}
		ring.add(max(0, at.Sub(predAt).Seconds())/pred, e.cfg.CalibrationSamples)
	}
}

// SessionClosed records kf_close_session: a slot of agent kf is free.
func (e *Estimator) SessionClosed(openid, kf string, at time.Time) {
	e.advance(at)
	a := e.agents[kf]
	if a == nil {
		return
	}
	since, known := a.sessions[openid]
	if !known && a.unknownAge == 0 {
		return // already closed, or never seen: nothing frees up
	}
	e.slotFreed(a, at)
	wasFull := a.capacity > 0 && a.busy() >= a.capacity
	e.account(a, -1)
	if known {
		delete(a.sessions, openid)
	} else {
		a.unknownAge--
	}
	e.account(a, +1)
	if known {
		d := at.Sub(since).Seconds()
		e.durSum += d
		e.durN++
		if wasFull {
			e.shape.add(d)
		}
	}
}

// SessionSwitched records kf_switch_session: the chat moved from one agent
// to another. The source agent's slot frees up; the session's age at the
// destination counts from the switch.
func (e *Estimator) SessionSwitched(openid, from, to string, at time.Time) {
	e.advance(at)
	if a := e.agents[from]; a != nil {
		if _, ok := a.sessions[openid]; ok {
			e.slotFreed(a, at)
			e.account(a, -1)
			delete(a.sessions, openid)
			e.account(a, +1)
		}
	}
	b := e.agent(to)
	e.account(b, -1)
	b.sessions[openid] = at
	e.account(b, +1)
}

// slotFreed counts a departure before agent a loses the session: for the
// per-slot rate if a was full, and for QL-emp if every slot was busy with
// customers waiting.
func (e *Estimator) slotFreed(a *agentState, at time.Time) {
	if a.capacity > 0 && a.busy() >= a.capacity && a.online {
		e.dep++
		e.depS++
	}
	allBusy := e.onlineSlots > 0 && e.busySlots >= e.onlineSlots && e.lastCount > 0
	if !allBusy {
		e.lastBusyDepSet = false
		return
	}
	if e.lastBusyDepSet {
		if g := at.Sub(e.lastBusyDep).Seconds(); g >= 0 {
			e.gaps[e.gapNext] = g
			e.gapNext = (e.gapNext + 1) % len(e.gaps)
			e.gapFilled = min(e.gapFilled+1, len(e.gaps))
		}
	}
	e.lastBusyDep, e.lastBusyDepSet = at, true
}

// Abandoned records a customer known to have left the queue. Customers
// already inferred as abandoned by Observe are not counted twice; unknown
// (never listed) customers are ignored because their waiting time was not
// part of the observed exposure.
func (e *Estimator) Abandoned(openid string, waited time.Duration, at time.Time) {
	e.advance(at)
	if _, ok := e.waiting[openid]; ok {
		delete(e.waiting, openid)
		e.aband++
		e.leftSince++
		return
	}
	if _, ok := e.vanished[openid]; ok {
		delete(e.vanished, openid)
		e.aband++
	}
}

// Observe ingests a snapshot: it syncs agents and their sessions, infers
// abandonment (listed cases that vanished with no session created within
// AbandonGrace), and returns an estimate for every listed case plus the
// tail of the unlisted ones.
func (e *Estimator) Observe(s Snapshot) Result {
	e.advance(s.At)
	e.syncAgents(s)
	e.observePresence(s)
	// Count is getwaitcase's: inferred cases beyond it are customers who
	// left unnoticed (Members keeps them until the list passes them).
	res := Result{At: s.At, Count: max(s.Count, s.listed())}
	res.Abandoned = e.syncWaiting(s)
	e.lastCount = res.Count
	e.lastAt = s.At

	e.paceChange()
	e.prepare(s)
	res.ServiceFor = time.Duration(1 / e.rate() * float64(time.Second))
	// Reused from the previous Observe: at 10,000 waiting customers a new
	// slice per poll is most of the garbage.
	e.estBuf = slices.Grow(e.estBuf[:0], len(e.v.cases))[:len(e.v.cases)]
	res.Estimates = e.estBuf
	for i := range e.v.cases {
		res.Estimates[i] = e.predictCase(e.cfg.Model, i)
		if w := e.v.cases[i].w; w != nil && w.pred < 0 {
			k := e.predictCase(Kefu, i)
			if !k.Unknown {
				w.pred, w.predAt, w.predEntry = k.Wait.Seconds(), s.At, false
				w.bucket = bucketOf(e.v.cases[i].need)
			}
		}
	}
	e.joinsSince, e.leftSince = 0, 0
	res.Unlisted = max(0, res.Count-len(e.v.cases))
	if res.Unlisted > 0 {
		res.Tail = e.PredictPosition(e.cfg.Model, res.Count)
	}
	return res
}

func (e *Estimator) syncAgents(s Snapshot) {
	e.gen++
	for i := range s.Agents {
		sa := &s.Agents[i]
		a := e.agent(sa.Account)
		a.gen = e.gen
		e.account(a, -1)
		a.online = sa.Status != 0
		a.capacity = sa.AutoAccept
		if a.capacity <= 0 {
			// Auto-accept off: the agent takes cases by hand; treat what it
			// serves as its capacity so it counts as full.
			a.capacity = max(sa.Accepted, 1)
		}
		if len(sa.Sessions) > 0 || sa.Accepted == 0 {
			clear(a.sessions)
			for _, ss := range sa.Sessions {
				a.sessions[ss.OpenID] = ss.Since
			}
			a.unknownAge = 0
		} else {
			a.unknownAge = max(0, sa.Accepted-len(a.sessions))
		}
		e.account(a, +1)
	}
	for i := 0; i < len(e.accounts); i++ {
		kf := e.accounts[i]
		a := e.agents[kf]
		if a.gen == e.gen {
			continue
		}
		// Not in getonlinekflist: offline. Its chats may still close, but
		// it takes no new case.
		e.account(a, -1)
		a.online = false
		if len(a.sessions) == 0 {
			delete(e.agents, kf)
			e.accounts = slices.Delete(e.accounts, i, i+1)
			i--
		}
	}
}

func (e *Estimator) syncWaiting(s Snapshot) []Abandonment {
	before, kept := len(e.waiting), 0
	e.v.ptrs = e.v.ptrs[:0]
	for _, c := range s.Waiting {
		w := e.waiting[c.OpenID]
		switch {
		case w == nil:
			if _, wasGone := e.vanished[c.OpenID]; wasGone {
				delete(e.vanished, c.OpenID) // back in the list: not gone
			}
			w = &waitState{since: c.Since, pred: -1}
			if p, ok := e.restored[c.OpenID]; ok {
				w.pred, w.predAt, w.predEntry, w.bucket = p.Pred, time.UnixMilli(p.At), p.Entry, p.Bucket
			}
			e.waiting[c.OpenID] = w
		case w.gen != e.gen:
			kept++
		}
		if w.inferred && !c.Inferred {
			// Listed now: getwaitcase's time replaces the join time.
			w.since = c.Since
		}
		w.inferred = c.Inferred
		w.kf = c.KfAccount
		w.gen = e.gen
		w.lastSeen = s.At
		e.v.ptrs = append(e.v.ptrs, w)
	}
	for id, w := range e.waiting {
		if kept == before {
			break // every case listed before is still listed
		}
		if w.gen == e.gen {
			continue
		}
		mid := w.lastSeen.Add(s.At.Sub(w.lastSeen) / 2)
		e.vanished[id] = vanishedCase{since: w.since, at: mid, noted: s.At, pred: w.pred, predAt: w.predAt, predEntry: w.predEntry, bucket: w.bucket}
		delete(e.waiting, id)
	}
	e.restored = nil // customers not listed now were served or left meanwhile
	var out []Abandonment
	for id, v := range e.vanished {
		if since, ok := e.servedBy(id); ok {
			// The snapshot shows the session its event has not told yet.
			e.served(since, v.since, v.pred, v.predAt, v.predEntry, v.bucket)
			delete(e.vanished, id)
			continue
		}
		if s.HoldAbandon || s.At.Sub(v.noted) < e.cfg.AbandonGrace {
			continue
		}
		e.aband++
		out = append(out, Abandonment{OpenID: id, Waited: v.at.Sub(v.since), At: v.at})
		delete(e.vanished, id)
	}
	slices.SortFunc(out, func(a, b Abandonment) int { return strings.Compare(a.OpenID, b.OpenID) })
	return out
}

// servedBy reports whether an agent serves openid, since when.
func (e *Estimator) servedBy(openid string) (time.Time, bool) {
	for _, kf := range e.accounts {
		if since, ok := e.agents[kf].sessions[openid]; ok {
			return since, true
		}
	}
	return time.Time{}, false
}

// rate is the learned per-session departure rate of a full agent (1/s),
// shrunk towards PriorServiceTime by one pseudo-session.
func (e *Estimator) rate() float64 {
	prior := e.cfg.PriorServiceTime.Seconds()
	return (e.dep + 1) / (e.expo + prior)
}

// paceChange compares the long-memory rate with the short-memory one and,
// when they differ by more than ChangeZ standard errors of the short one,
// replaces the long memory by the short: the agents' pace changed (a new
// kind of question, a slower team), and hours of the old pace must not
// dilute the new one. The standard error of a rate measured from n
// departures is CV/√n, CV that of the session durations (1 until their
// shape is known): with high-variance sessions a bigger deviation is
// needed.
func (e *Estimator) paceChange() {
	if e.depS < 10 {
		return
	}
	prior := e.cfg.PriorServiceTime.Seconds()
	rl := (e.dep + 1) / (e.expo + prior)
	rs := (e.depS + 1) / (e.expoS + prior)
	cv := 1.0
	if e.shape.ready(e.cfg.MinShapeSamples) {
		cv = math.Sqrt(e.shape.cv2)
	}
	if math.Abs(math.Log(rs/rl)) > e.cfg.ChangeZ*cv/math.Sqrt(e.depS) {
		e.dep, e.expo = e.depS, e.expoS
		e.paceChanges++
	}
}

// PaceChanges returns how many times the change test found that the
// agents' pace changed (since New or UnmarshalState).
func (e *Estimator) PaceChanges() int { return e.paceChanges }

// theta is the learned abandonment rate of a waiting customer (1/s).
func (e *Estimator) theta() float64 {
	if e.waitExpo <= 0 {
		return 0
	}
	return e.aband / (e.waitExpo + e.cfg.PriorServiceTime.Seconds())
}

func bucketOf(need int) int {
	b := 0
	for need > 1 && b < calibBuckets-1 {
		need >>= 1
		b++
	}
	return b
}
