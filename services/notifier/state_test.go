package notifier

import (
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func TestDecideWait(t *testing.T) {
	rules := WaitRules{MinInterval: 3 * time.Minute, MinChange: 2 * time.Minute, MinChangeRatio: 0.3, MaxAge: 2 * time.Minute}
	sentAt := func(d time.Duration, wait int64) customerState {
		return customerState{WaitSentAt: t0.Add(d), WaitSeconds: wait}
	}
	tests := []struct {
		name   string
		st     customerState
		estAt  time.Time
		wait   int64
		now    time.Time
		send   bool
		reason string
	}{
		{"entering the queue is announced", customerState{}, t0, 600, t0, true, waitFirst},
		{"an estimate older than MaxAge is never told", customerState{}, t0, 600, t0.Add(3 * time.Minute), false, waitStale},
		{"nothing within MinInterval, however large the change", sentAt(0, 600), t0.Add(2 * time.Minute), 60, t0.Add(2 * time.Minute), false, waitTooSoon},
		{"a change of at least 2 min and 30 % after MinInterval is told", sentAt(0, 600), t0.Add(4 * time.Minute), 300, t0.Add(4 * time.Minute), true, waitChanged},
		{"a change under 2 minutes is not told", sentAt(0, 600), t0.Add(4 * time.Minute), 500, t0.Add(4 * time.Minute), false, waitUnchanged},
		{"a change under 30 % is not told", sentAt(0, 1200), t0.Add(4 * time.Minute), 1500, t0.Add(4 * time.Minute), false, waitUnchanged},
		{"a rise counts like a fall", sentAt(0, 300), t0.Add(4 * time.Minute), 600, t0.Add(4 * time.Minute), true, waitChanged},
		{"never while a session is open",
			customerState{Session: sessionOpen, SessionAt: t0}, t0.Add(time.Minute), 600, t0.Add(time.Minute), false, waitInSession},
		{"an estimate made before the session closed is not told",
			customerState{Session: sessionClosed, SessionAt: t0}, t0.Add(-time.Second), 600, t0, false, waitBeforeClose},
		{"queueing again after a closed session is a new visit",
			customerState{Session: sessionClosed, SessionAt: t0, WaitSentAt: t0.Add(-10 * time.Minute), WaitSeconds: 600}, t0.Add(time.Minute), 600, t0.Add(time.Minute), true, waitFirst},
		{"an open session whose close was lost stops silencing after 12 h",
			customerState{Session: sessionOpen, SessionAt: t0}, t0.Add(13 * time.Hour), 600, t0.Add(13 * time.Hour), true, waitFirst},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			est := events.WaitEstimated{Meta: events.Meta{OccurredAt: tt.estAt}, WaitSeconds: tt.wait}
			send, reason := decideWait(tt.st, est, tt.now, rules)
			if send != tt.send || reason != tt.reason {
				t.Errorf("decideWait = %v, %q; want %v, %q", send, reason, tt.send, tt.reason)
			}
		})
	}
}

func TestApplySession(t *testing.T) {
	open := customerState{Session: sessionOpen, SessionAt: t0}
	closed := customerState{Session: sessionClosed, SessionAt: t0}
	tests := []struct {
		name    string
		st      customerState
		kind    string
		at      time.Time
		want    string
		changed bool
	}{
		{"created opens the session", customerState{}, events.NotifySessionCreated, t0, sessionOpen, true},
		{"switched keeps it open", customerState{}, events.NotifySessionSwitched, t0, sessionOpen, true},
		{"closed closes it", open, events.NotifySessionClosed, t0.Add(time.Second), sessionClosed, true},
		{"an older event handled late changes nothing", closed, events.NotifySessionCreated, t0.Add(-time.Second), sessionClosed, false},
		{"in the same second an open session wins over a close", open, events.NotifySessionClosed, t0, sessionOpen, false},
		{"in the same second a create after a close opens", closed, events.NotifySessionCreated, t0, sessionOpen, true},
		{"the same event twice is a no-op", open, events.NotifySessionCreated, t0, sessionOpen, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := applySession(tt.st, tt.kind, tt.at)
			if got.Session != tt.want || changed != tt.changed {
				t.Errorf("applySession = %q, %v; want %q, %v", got.Session, changed, tt.want, tt.changed)
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
