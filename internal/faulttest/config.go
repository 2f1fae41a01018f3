package faulttest

import (
	"io"
	"time"
)

// Config of a run.
type Config struct {
	// Duration of the load (default 60s).
	Duration time.Duration
	// Rate is callbacks per second, two per session (default 150).
	Rate float64
	// Faults in order (default DefaultFaults).
	Faults []Fault
	// NATSDown is how long the NATS node stays down (default 5s).
	NATSDown time.Duration
	// CatchUpTimeout bounds the wait for the consumers after the load
	// without progress (default 3m: the notifier's AckWait is 60 s, and a
	// message a killed process held comes back only after it); the whole
	// wait is at most five times this.
	CatchUpTimeout time.Duration
	// FeedbackDSN is KEFU_FEEDBACK_DSN for the feedback role: "" stores in
	// SQLite in its data directory.
	FeedbackDSN string
	// Dir holds the binary, the NATS stores, the roles' data and logs.
	// Required; the caller removes it.
	Dir string
	// Binary is a built kefu; "" builds cmd/kefu into Dir.
	Binary string
	// Log receives progress lines (nil: discarded).
	Log io.Writer

	// cluster is RunSuite's, which Run uses instead of starting its own.
	cluster *cluster
}

func (c *Config) setDefaults() {
	if c.Duration <= 0 {
		c.Duration = 60 * time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 150
	}
	if c.Faults == nil {
		c.Faults = DefaultFaults()
	}
	if c.NATSDown <= 0 {
		c.NATSDown = 5 * time.Second
	}
	if c.CatchUpTimeout <= 0 {
		c.CatchUpTimeout = 3 * time.Minute
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}
