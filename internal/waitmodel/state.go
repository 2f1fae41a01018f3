package waitmodel

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// stateVersion is bumped when the persisted form changes incompatibly.
const stateVersion = 1

// calibrationBasis marks calibration ratios measured from the time of
// the prediction.
const calibrationBasis = 2

// ErrStateVersion is returned by UnmarshalState for state written by an
// incompatible version; the caller starts fresh.
var ErrStateVersion = errors.New("estimator state version not supported")

// persisted is what survives a restart: everything learned. The queue
// itself (agents, sessions, listed cases) is not kept: the first snapshot
// after a restart describes it again, and keeping it could turn customers
// served while the service was down into false abandonments. Only the
// predictions given to the customers waiting are kept (Pending), for the
// calibration of those still waiting after the restart.
type persisted struct {
	Version     int         `json:"version"`
	Clock       time.Time   `json:"clock"`
	Dep         float64     `json:"dep"`
	Expo        float64     `json:"expo"`
	DepShort    float64     `json:"dep_short,omitempty"`
	ExpoShort   float64     `json:"expo_short,omitempty"`
	Aband       float64     `json:"aband"`
	WaitExpo    float64     `json:"wait_expo"`
	Durations   []float64   `json:"durations"`
	Calibration [][]float64 `json:"calibration"`
	// CalibrationEntry: the ratios of the estimates at the join.
	CalibrationEntry [][]float64 `json:"calibration_entry,omitempty"`
	// CalibrationBasis is calibrationBasis when the ratios are measured
	// from the prediction's own time; ratios saved before (measured from
	// the join, inflated for customers first listed late) are dropped.
	CalibrationBasis int       `json:"calibration_basis,omitempty"`
	DurSum           float64   `json:"dur_sum"`
	DurN             float64   `json:"dur_n"`
	WaitSum          float64   `json:"wait_sum"`
	WaitN            float64   `json:"wait_n"`
	LES              *float64  `json:"les,omitempty"`
	Gaps             []float64 `json:"gaps"`
	// Pending holds the first predictions of the customers waiting now
	// (at most maxPending, the most recent): a customer still waiting after
	// the restart is calibrated on the prediction they were given, so
	// that long waits across a restart are not left out of the band.
	Pending []pendingPred `json:"pending,omitempty"`
	// Presence holds the agents' time-of-day profiles, compactly: P and D
	// are base64 of one byte per 5-minute slot, the usual online
	// probability ×255 and the decayed number of days behind it ×20.
	Presence []presenceState `json:"presence,omitempty"`
}

type pendingPred struct {
	OpenID string  `json:"o"`
	At     int64   `json:"a"` // unix ms of the prediction
	Pred   float64 `json:"p"` // seconds
	Bucket int     `json:"b"`
	Entry  bool    `json:"e,omitempty"`
}

// maxPending bounds the predictions kept across a restart.
const maxPending = 4000

func (e *Estimator) pendingPreds() []pendingPred {
	out := make([]pendingPred, 0, min(len(e.waiting), maxPending))
	for id, w := range e.waiting {
		if w.pred >= 1 && !w.predAt.IsZero() {
			out = append(out, pendingPred{OpenID: id, At: w.predAt.UnixMilli(), Pred: math.Round(w.pred*10) / 10, Bucket: w.bucket, Entry: w.predEntry})
		}
	}
	if len(out) > maxPending {
		slices.SortFunc(out, func(a, b pendingPred) int { return cmp.Compare(b.At, a.At) })
		out = out[:maxPending]
	}
	slices.SortFunc(out, func(a, b pendingPred) int { return strings.Compare(a.OpenID, b.OpenID) })
	return out
}

type presenceState struct {
	Account    string    `json:"account"`
	Capacity   int       `json:"capacity"`
	LastOnline time.Time `json:"last_online"`
	P          []byte    `json:"p"`
	D          []byte    `json:"d"`
}

// daysScale is the resolution of the persisted day counts (1/20 day).
const daysScale = 20

func (e *Estimator) presenceStates() []presenceState {
	var out []presenceState
	for _, kf := range e.rosterOrder() {
		pr := e.roster[kf]
		st := presenceState{Account: kf, Capacity: pr.capacity, LastOnline: pr.lastOnline,
			P: make([]byte, daySlots), D: make([]byte, daySlots)}
		for i := range pr.slots {
			frac, days := pr.slots[i].folded()
			if days <= 0 {
				continue
			}
			st.P[i] = byte(math.Round(255 * math.Min(1, frac/days)))
			st.D[i] = byte(math.Min(255, math.Round(days*daysScale)))
		}
		out = append(out, st)
	}
	return out
}

func (e *Estimator) restorePresence(sts []presenceState) {
	for _, st := range sts {
		if len(st.P) != daySlots || len(st.D) != daySlots {
			continue // a profile of another resolution: learn it again
		}
		if e.roster == nil {
			e.roster = make(map[string]*presence)
		}
		pr := &presence{capacity: st.Capacity, lastOnline: st.LastOnline}
		for i := range pr.slots {
			days := float64(st.D[i]) / daysScale
			pr.slots[i] = presenceSlot{Frac: float64(st.P[i]) / 255 * days, Days: days}
		}
		e.roster[st.Account] = pr
	}
}

// MarshalState returns what the estimator has learned, as JSON.
func (e *Estimator) MarshalState() ([]byte, error) {
	st := persisted{
		Version: stateVersion, Clock: e.clock,
		Dep: e.dep, Expo: e.expo, DepShort: e.depS, ExpoShort: e.expoS, Aband: e.aband, WaitExpo: e.waitExpo,
		Durations: e.shape.samples(),
		DurSum:    e.durSum, DurN: e.durN, WaitSum: e.waitSum, WaitN: e.waitN,
		Presence: e.presenceStates(),
		Pending:  e.pendingPreds(),
	}
	for i := range e.calib {
		st.Calibration = append(st.Calibration, compactRatios(e.calib[i].samples()))
		st.CalibrationEntry = append(st.CalibrationEntry, compactRatios(e.calibEntry[i].samples()))
	}
	st.CalibrationBasis = calibrationBasis
	if e.lesSet {
		les := e.les
		st.LES = &les
	}
	for i := range e.gapFilled {
		// Oldest first, so a restore with a smaller window keeps the newest.
		st.Gaps = append(st.Gaps, e.gaps[(e.gapNext-e.gapFilled+i+2*len(e.gaps))%len(e.gaps)])
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("marshal estimator state: %w", err)
	}
	return b, nil
}

// UnmarshalState restores what MarshalState returned into an estimator
// that has not observed anything yet (its configuration is kept).
func (e *Estimator) UnmarshalState(b []byte) error {
	var st persisted
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("unmarshal estimator state: %w", err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("unmarshal estimator state: %w: %d", ErrStateVersion, st.Version)
	}
	fresh, err := New(e.cfg)
	if err != nil {
		return fmt.Errorf("unmarshal estimator state: %w", err)
	}
	*e = *fresh
	e.clock, e.started = st.Clock, !st.Clock.IsZero()
	e.dep, e.expo, e.aband, e.waitExpo = st.Dep, st.Expo, st.Aband, st.WaitExpo
	e.depS, e.expoS = st.DepShort, st.ExpoShort
	for _, d := range st.Durations {
		e.shape.add(d)
	}
	if st.CalibrationBasis == calibrationBasis {
		restoreRings(e.calib[:], st.Calibration, e.cfg.CalibrationSamples)
		restoreRings(e.calibEntry[:], st.CalibrationEntry, e.cfg.CalibrationSamples)
	}
	e.durSum, e.durN, e.waitSum, e.waitN = st.DurSum, st.DurN, st.WaitSum, st.WaitN
	if st.LES != nil {
		e.les, e.lesSet = *st.LES, true
	}
	e.restorePresence(st.Presence)
	if len(st.Pending) > 0 {
		e.restored = make(map[string]pendingPred, len(st.Pending))
		for _, p := range st.Pending {
			if p.Bucket >= 0 && p.Bucket < calibBuckets && p.Pred >= 1 {
				e.restored[p.OpenID] = p
			}
		}
	}
	for _, g := range st.Gaps {
		e.gaps[e.gapNext] = g
		e.gapNext = (e.gapNext + 1) % len(e.gaps)
		e.gapFilled = min(e.gapFilled+1, len(e.gaps))
	}
	return nil
}

// compactRatios rounds ratios to 4 decimals: the state stays small (up
// to 16 rings of CalibrationSamples ratios) and a band never needs more.
func compactRatios(xs []float64) []float64 {
	for i, x := range xs {
		xs[i] = math.Round(x*1e4) / 1e4
	}
	return xs
}

func restoreRings(rings []ratioRing, saved [][]float64, limit int) {
	for i, vals := range saved {
		if i >= len(rings) {
			break
		}
		for _, v := range vals {
			rings[i].add(v, limit)
		}
	}
}
