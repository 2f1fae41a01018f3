package sendonce

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

// States of a record.
const (
	// StateSending is the claim: a process is sending, or died doing so.
	StateSending = "sending"
	StateSent    = events.OutcomeSent
	StateFailed  = events.OutcomeFailed
	// StateSkipped: the message was decided against after the claim
	// (throttled, the customer is in a session).
	StateSkipped = "skipped"
)

// OutcomeDuplicate is the outcome of a message some earlier delivery
// already settled: nothing is sent.
const OutcomeDuplicate = "duplicate"

// CrashedErrMsg is the errmsg of a message whose sender died between the
// claim and the record.
const CrashedErrMsg = "unknown outcome (crash during send)"

// Record is what the bucket keeps under a message's key. Its JSON is the
// format every kefu version reads and writes, so a rolling upgrade finds
// the claims of the old processes: do not rename its fields.
type Record struct {
	State string `json:"state"`
	Cause string `json:"cause"`
	Kind  string `json:"kind"`
	// Owner is the process that wrote the record.
	Owner string `json:"owner"`
	// At is when the state was written, by the writer's clock.
	At      time.Time `json:"at"`
	ErrCode int       `json:"errcode,omitempty"`
	ErrMsg  string    `json:"errmsg,omitempty"`
	// Seq is the KEFU_NOTIFY sequence of the outcome event.
	Seq uint64 `json:"seq,omitempty"`
}

// Final reports whether the message is decided (anything but a claim).
func (r Record) Final() bool { return r.State != StateSending }

// Encode is a record's stored form.
func Encode(r Record) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode send record: %w", err)
	}
	return b, nil
}

// Decode reads a stored record; one without a state is an error.
func Decode(data []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("decode send record: %w", err)
	}
	if r.State == "" {
		return r, errors.New("send record without state")
	}
	return r, nil
}

// OutcomeID is the ce-id (and Nats-Msg-Id) of the outcome event of the
// cause event with ce-id cause: deterministic, so the outcome is itself
// published once.
func OutcomeID(cause string) string { return "notify-" + cause }
