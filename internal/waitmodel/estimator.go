package waitmodel

import (
	"fmt"
	"math"
	"slices"
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
