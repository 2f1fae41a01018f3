package waitmodel

import (
	"errors"
	"fmt"
	"time"
)

// Config tunes an Estimator. Zero values take the defaults of
// DefaultConfig; New calls SetDefaults then Validate.
type Config struct {
	// Model is the predictor Observe reports. Default Kefu; the baselines
	// are selectable so a deployment can compare or fall back.
	Model Model
	// HalfLife is how fast old observations lose weight in the learned
	// service and abandonment rates (a departure HalfLife ago counts half).
	// A long memory makes the rate precise, and imprecision is not
	// neutral: a long queue tends to follow a spell of slow service, so a
	// noisy rate over-predicts exactly when many customers wait. Load
	// changes (arrivals, agents going offline) need no short memory: the
	// model reads them from each snapshot; changes of the agents' pace are
	// caught by the change test (ShortHalfLife, ChangeZ). Default 72h.
	HalfLife time.Duration
	// ShortHalfLife is the memory of the second service-rate estimate,
	// compared with the long one at every snapshot: when they differ by
	// more than ChangeZ standard errors, the pace changed and the long
	// memory restarts from the short one. Default 2h.
	ShortHalfLife time.Duration
	// ChangeZ is the threshold of that test, in standard errors. Default 4.
	ChangeZ float64
	// PriorServiceTime is the mean session length assumed before any
	// session was seen (it has the weight of one session). Default 5m.
	PriorServiceTime time.Duration
	// AbandonGrace is how long a case that vanished from getwaitcase may
	// wait for its kf_create_session event (events and polls race) before it
	// is counted as abandoned. Default 30s.
	AbandonGrace time.Duration
	// ShapeSamples is how many recent session durations (closed while the
	// agent was full) describe the duration distribution. Default 2048.
	ShapeSamples int
	// MinShapeSamples is how many are needed before the age of sessions in
	// progress is used; below it service is treated as memoryless.
	// Default 200.
	MinShapeSamples int
	// CalibrationSamples is how many recent (actual/predicted) wait ratios
	// are kept per queue-depth bucket to set WaitP90. Default 2000: the
	// ratios of customers served one after another are strongly
	// correlated (they shared the same agents' pace), and under sustained
	// overload the 90th percentile of the last 500 covered only 84 % of
	// the next customers (docs/estimator.md).
	CalibrationSamples int
	// MinCalibration is how many ratios a bucket needs before they replace
	// the Erlang (gamma) band. Default 50.
	MinCalibration int
	// Quantile is the level of the band reported as WaitP90. Default 0.9.
	Quantile float64
	// QLEmpWindow is the number of recent all-busy departure gaps the QL-emp
	// baseline averages. Default 100.
	QLEmpWindow int
	// ScheduleHalfLife is how fast past days lose weight in the agents'
	// time-of-day presence profiles. Default 7 days (168h).
	ScheduleHalfLife time.Duration
	// ScheduleMinDays is how many past days a slot of the day needs before
	// its presence is used to foresee agents leaving or coming back.
	// Default 2; negative turns presence profiles off.
	ScheduleMinDays float64
	// ScheduleForget drops the profile of an agent not seen online for
	// this long. Default 14 days (336h).
	ScheduleForget time.Duration
	// MaxWait caps every estimate (a backlog with a tiny learned rate
	// must not promise days). Default 8h.
	MaxWait time.Duration
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	var c Config
	c.SetDefaults()
	return c
}

// SetDefaults fills zero fields with their defaults.
func (c *Config) SetDefaults() {
	orDefault(&c.HalfLife, 72*time.Hour)
	orDefault(&c.ShortHalfLife, time.Hour)
	orDefault(&c.ChangeZ, 3)
	orDefault(&c.PriorServiceTime, 5*time.Minute)
	orDefault(&c.AbandonGrace, 30*time.Second)
	orDefault(&c.ShapeSamples, 2048)
	orDefault(&c.MinShapeSamples, 200)
	orDefault(&c.CalibrationSamples, 2000)
	orDefault(&c.MinCalibration, 50)
	orDefault(&c.Quantile, 0.9)
	orDefault(&c.QLEmpWindow, 100)
	orDefault(&c.MaxWait, 8*time.Hour)
	orDefault(&c.ScheduleHalfLife, 7*24*time.Hour)
	orDefault(&c.ScheduleMinDays, 2)
	orDefault(&c.ScheduleForget, 14*24*time.Hour)
}

// orDefault sets *p to def when it is zero.
func orDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// ErrInvalidConfig is wrapped by every Validate error.
var ErrInvalidConfig = errors.New("invalid estimator config")

// Validate reports the first field that cannot work.
func (c Config) Validate() error {
	bad := func(field, why string) error {
		return fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, why)
	}
	switch {
	case c.Model < Kefu || c.Model >= modelCount:
		return bad("Model", "is not a known model")
	case c.HalfLife <= 0:
		return bad("HalfLife", "must be positive")
	case c.ShortHalfLife <= 0 || c.ShortHalfLife > c.HalfLife:
		return bad("ShortHalfLife", "must be positive and at most HalfLife")
	case c.ChangeZ <= 0:
		return bad("ChangeZ", "must be positive")
	case c.PriorServiceTime <= 0:
		return bad("PriorServiceTime", "must be positive")
	case c.AbandonGrace < 0:
		return bad("AbandonGrace", "must not be negative")
	case c.ShapeSamples < 16:
		return bad("ShapeSamples", "must be at least 16")
	case c.MinShapeSamples < 1 || c.MinShapeSamples > c.ShapeSamples:
		return bad("MinShapeSamples", "must be in [1, ShapeSamples]")
	case c.CalibrationSamples < 10:
		return bad("CalibrationSamples", "must be at least 10")
	case c.MinCalibration < 1 || c.MinCalibration > c.CalibrationSamples:
		return bad("MinCalibration", "must be in [1, CalibrationSamples]")
	case c.Quantile <= 0.5 || c.Quantile >= 1:
		return bad("Quantile", "must be in (0.5, 1)")
	case c.QLEmpWindow < 1:
		return bad("QLEmpWindow", "must be positive")
	case c.MaxWait <= 0:
		return bad("MaxWait", "must be positive")
	case c.ScheduleHalfLife < 0:
		return bad("ScheduleHalfLife", "must not be negative")
	case c.ScheduleForget < 0:
		return bad("ScheduleForget", "must not be negative")
	}
	return nil
}
