package customers

import (
	"context"
	"testing"

	"github.com/kefu-io/kefu/pkg/events"
)

// The questions the other services ask, answered from stored records.
func TestRules(t *testing.T) {
	m := openTestStore(t)
	ctx := context.Background()
	set := func(openid string, ops ...op) {
		t.Helper()
		if _, _, err := m.Update(ctx, openid, func(st *State) bool {
			for _, o := range ops {
				o(st)
			}
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	set("oWaiting", message(sec(0), 1, false), seenWaiting(sec(5), sec(0), 3))
	set("oServed", created(wang, sec(30), 3))
	set("oLeft", message(sec(0), 1, false), seenWaiting(sec(5), sec(0), 3), message(sec(60), 2, true), left(sec(60), 2, sec(0)))
	set("oStale", created(wang, sec(30), 3), staleClosing(wang, sec(30)), closed(wang, sec(2000), 4))
	leave, err := NewLeaveDetector(DefaultLeavePhrases)
	if err != nil {
		t.Fatal(err)
	}
	gate := LeaveGate{Leave: leave, Customers: m}

	tests := []struct {
		name                   string
		openid                 string
		served, left           bool
		quietWait, quietClosed bool
		holdLeavePhrase        bool
	}{
		{"a waiting customer hears about the queue and may leave it", "oWaiting", false, false, false, false, true},
		{"a served customer's leave phrase reaches their agent", "oServed", true, false, true, false, false},
		{"a customer who left hears nothing more", "oLeft", false, true, true, true, true},
		{"kefu's own stale close is not announced again", "oStale", false, false, false, true, true},
		{"an unknown customer is announced and may leave", "oNobody", false, false, false, false, true},
		{"a malformed openid is answered as nobody, and its message goes on", "o.bad", false, false, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if served, _ := m.Served(ctx, tt.openid); served != tt.served {
				t.Errorf("Served = %v", served)
			}
			if got := m.Left(ctx, tt.openid); got != tt.left {
				t.Errorf("Left = %v", got)
			}
			if got, err := m.SuppressNotice(ctx, events.NotifyWaitEstimated, tt.openid); err != nil || got != tt.quietWait {
				t.Errorf("SuppressNotice(wait) = %v, %v", got, err)
			}
			if got, err := m.SuppressNotice(ctx, events.NotifySessionClosed, tt.openid); err != nil || got != tt.quietClosed {
				t.Errorf("SuppressNotice(closed) = %v, %v", got, err)
			}
			if got := gate.HoldTransfer(ctx, tt.openid, "不等了！"); got != tt.holdLeavePhrase {
				t.Errorf("HoldTransfer(leave phrase) = %v", got)
			}
			if gate.HoldTransfer(ctx, tt.openid, "我想问一下订单") {
				t.Error("HoldTransfer held an ordinary message")
			}
		})
	}
}

// A state that cannot be read is an error for the notifier, which retries
// rather than risk a second goodbye.
func TestSuppressNoticeReportsAnUnreadableState(t *testing.T) {
	m := openTestStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.SuppressNotice(ctx, events.NotifySessionClosed, "oSomeone"); err == nil {
		t.Error("SuppressNotice on a cancelled read: no error")
	}
}
