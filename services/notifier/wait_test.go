package notifier

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/customers"
	"github.com/kefu-io/kefu/pkg/events"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func TestDecideWait(t *testing.T) {
	rules := WaitRules{MinInterval: 3 * time.Minute, MinChange: 2 * time.Minute, MinChangeRatio: 0.3, MaxAge: 2 * time.Minute}
	sentAt := func(d time.Duration, wait int64) waitRecord {
		return waitRecord{SentAt: t0.Add(d), WaitSeconds: wait}
	}
	none := customers.SessionMark{}
	open := customers.SessionMark{State: customers.SessionOpen, At: t0}
	closed := customers.SessionMark{State: customers.SessionClosed, At: t0}
	tests := []struct {
		name    string
		session customers.SessionMark
		sent    waitRecord
		estAt   time.Time
		wait    int64
		now     time.Time
		send    bool
		reason  string
	}{
		{"entering the queue is announced", none, waitRecord{}, t0, 600, t0, true, waitFirst},
		{"an estimate older than MaxAge is never told", none, waitRecord{}, t0, 600, t0.Add(3 * time.Minute), false, waitStale},
		{"nothing within MinInterval, however large the change", none, sentAt(0, 600), t0.Add(2 * time.Minute), 60, t0.Add(2 * time.Minute), false, waitTooSoon},
		{"a change of at least 2 min and 30 % after MinInterval is told", none, sentAt(0, 600), t0.Add(4 * time.Minute), 300, t0.Add(4 * time.Minute), true, waitChanged},
		{"a change under 2 minutes is not told", none, sentAt(0, 600), t0.Add(4 * time.Minute), 500, t0.Add(4 * time.Minute), false, waitUnchanged},
		{"a change under 30 % is not told", none, sentAt(0, 1200), t0.Add(4 * time.Minute), 1500, t0.Add(4 * time.Minute), false, waitUnchanged},
		{"a rise counts like a fall", none, sentAt(0, 300), t0.Add(4 * time.Minute), 600, t0.Add(4 * time.Minute), true, waitChanged},
		{"never while a session is open",
			open, waitRecord{}, t0.Add(time.Minute), 600, t0.Add(time.Minute), false, waitInSession},
		{"an estimate made before the session closed is not told",
			closed, waitRecord{}, t0.Add(-time.Second), 600, t0, false, waitBeforeClose},
		{"queueing again after a closed session is a new visit",
			closed, sentAt(-10*time.Minute, 600), t0.Add(time.Minute), 600, t0.Add(time.Minute), true, waitFirst},
		{"an open session whose close was lost stops silencing after 12 h",
			open, waitRecord{}, t0.Add(13 * time.Hour), 600, t0.Add(13 * time.Hour), true, waitFirst},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			est := events.WaitEstimated{Meta: events.Meta{OccurredAt: tt.estAt}, WaitSeconds: tt.wait}
			send, reason := decideWait(tt.session, tt.sent, est, tt.now, rules)
			if send != tt.send || reason != tt.reason {
				t.Errorf("decideWait = %v, %q; want %v, %q", send, reason, tt.send, tt.reason)
			}
		})
	}
}

func TestKeysAreValidAndDoNotRevealIDs(t *testing.T) {
	id := "wx-evt-oyORnuP8q7ou2gfYjqLzSIWZf0rs-1399197672-kf_create_session-test1@test"
	for _, key := range []string{causeKey(id), customerKey("oyORnuP8q7ou2gfYjqLzSIWZf0rs")} {
		for _, r := range key {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.') {
				t.Errorf("key %q has %q, which KV keys do not allow", key, r)
			}
		}
	}
	if causeKey(id) == causeKey(id+"x") {
		t.Error("different causes share a key")
	}
}

// A customer record written when the notifier kept the session state in
// it still throttles: its wait fields read, the session fields (now in
// internal/customers) are ignored.
func TestWaitRecordReadsTheEarlierCustomerRecord(t *testing.T) {
	old := `{"session":"open","session_at":"2026-03-02T10:00:00Z","wait_sent_at":"2026-03-02T09:58:00Z","wait_seconds":600}`
	var w waitRecord
	if err := json.Unmarshal([]byte(old), &w); err != nil {
		t.Fatal(err)
	}
	if !w.SentAt.Equal(t0.Add(-2*time.Minute)) || w.WaitSeconds != 600 {
		t.Errorf("%+v", w)
	}
	if data, _ := json.Marshal(w); string(data) != `{"wait_sent_at":"2026-03-02T09:58:00Z","wait_seconds":600}` {
		t.Errorf("encoded %s", data)
	}
}
