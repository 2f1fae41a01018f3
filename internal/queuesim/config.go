package queuesim

import (
	"errors"
	"fmt"
	"time"
)

// AgentSpec is one agent of the simulated account.
type AgentSpec struct {
	Account    string
	AutoAccept int
}

// Absence takes an agent offline for Length, starting Start after the
// simulation start and repeating Every (0: once).
type Absence struct {
	Account string
	Start   time.Duration
	Length  time.Duration
	Every   time.Duration
}

// Config describes one simulated queue.
type Config struct {
	Seed  uint64
	Start time.Time // default 2025-01-06T00:00:00Z
	// Customers is the number of arrivals to generate; the run ends when
	// they have all been served or have left.
	Customers int
	// ArrivalRate is λ, customers per second (the mean rate when
	// Amplitude > 0).
	ArrivalRate float64
	// Amplitude A in [0, 1) and Period P make arrivals non-stationary.
	Amplitude float64
	Period    time.Duration
	// Service is the work distribution of one chat (its length when alone).
	Service Dist
	// Alpha is the slowdown exponent (0 ≤ α ≤ 1).
	Alpha    float64
	Agents   []AgentSpec
	Absences []Absence
	// Patience is how long a customer accepts to wait; nil: forever.
	Patience Dist
	// SpecificFraction of customers ask for a specific agent.
	SpecificFraction float64
	// SwitchProb is the chance that a finished chat is transferred.
	SwitchProb float64
	// PollInterval between snapshots; default 15s, negative: no polls.
	PollInterval time.Duration
	// ListLimit is how many waiting cases a snapshot lists; default 100.
	ListLimit int
	// Resolution of reported timestamps; default 1s.
	Resolution time.Duration
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid simulation config")

func (c *Config) setDefaults() {
	if c.Start.IsZero() {
		c.Start = time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC)
	}
	if c.PollInterval == 0 {
		c.PollInterval = 15 * time.Second
	}
	if c.ListLimit == 0 {
		c.ListLimit = 100
	}
	if c.Resolution == 0 {
		c.Resolution = time.Second
	}
}

func (c *Config) validate() error {
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrConfig, why) }
	switch {
	case c.Customers <= 0:
		return bad("Customers must be positive")
	case c.ArrivalRate <= 0:
		return bad("ArrivalRate must be positive")
	case c.Amplitude < 0 || c.Amplitude >= 1:
		return bad("Amplitude must be in [0, 1)")
	case c.Amplitude > 0 && c.Period <= 0:
		return bad("Period must be positive with Amplitude")
	case c.Service == nil || c.Service.Mean() <= 0:
		return bad("Service is required")
	case c.Alpha < 0 || c.Alpha > 1:
		return bad("Alpha must be in [0, 1]")
	case len(c.Agents) == 0:
		return bad("at least one agent is required")
	case c.SpecificFraction < 0 || c.SpecificFraction > 1:
		return bad("SpecificFraction must be in [0, 1]")
	case c.SwitchProb < 0 || c.SwitchProb >= 1:
		return bad("SwitchProb must be in [0, 1)")
	}
	seen := map[string]bool{}
	for _, a := range c.Agents {
		if a.Account == "" || seen[a.Account] || a.AutoAccept < 1 {
			return bad("agents need a unique account and AutoAccept ≥ 1")
		}
		seen[a.Account] = true
	}
	for _, ab := range c.Absences {
		if !seen[ab.Account] || ab.Length <= 0 || ab.Start < 0 || (ab.Every != 0 && ab.Every <= ab.Length) {
			return bad("absence " + ab.Account + " is inconsistent")
		}
	}
	return nil
}
