package estimate

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// stateVersion is bumped when the persisted form changes incompatibly.
const stateVersion = 1

// ErrStateVersion is returned by UnmarshalState for state written by an
// incompatible version; the caller starts fresh.
var ErrStateVersion = errors.New("estimator state version not supported")

// persisted is what survives a restart: everything learned. The queue
// itself (agents, sessions, listed cases) is not kept: the first snapshot
// after a restart describes it again, and keeping it could turn customers
// served while the service was down into false abandonments.
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
	DurSum      float64     `json:"dur_sum"`
	DurN        float64     `json:"dur_n"`
	WaitSum     float64     `json:"wait_sum"`
	WaitN       float64     `json:"wait_n"`
	LES         *float64    `json:"les,omitempty"`
	Gaps        []float64   `json:"gaps"`
	// Presence holds the agents' time-of-day profiles, compactly: P and D
	// are base64 of one byte per 5-minute slot, the usual online
	// probability ×255 and the decayed number of days behind it ×20.
	Presence []presenceState `json:"presence,omitempty"`
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
	}
	for i := range e.calib {
		st.Calibration = append(st.Calibration, e.calib[i].samples())
	}
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
	for i, vals := range st.Calibration {
		if i >= len(e.calib) {
			break
		}
		for _, v := range vals {
			e.calib[i].add(v, e.cfg.CalibrationSamples)
		}
	}
	e.durSum, e.durN, e.waitSum, e.waitN = st.DurSum, st.DurN, st.WaitSum, st.WaitN
	if st.LES != nil {
		e.les, e.lesSet = *st.LES, true
	}
	e.restorePresence(st.Presence)
	for _, g := range st.Gaps {
		e.gaps[e.gapNext] = g
		e.gapNext = (e.gapNext + 1) % len(e.gaps)
		e.gapFilled = min(e.gapFilled+1, len(e.gaps))
	}
	return nil
}
