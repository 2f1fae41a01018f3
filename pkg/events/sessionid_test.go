package events_test

import (
	"testing"
	"time"

	"github.com/kefu-io/kefu/pkg/events"
)

func TestSessionIDIsStableAndDistinct(t *testing.T) {
	at := time.Unix(1767225600, 0)
	id := events.SessionID("oUser1", "kf2001@account", at)
	// Fixed here (computed independently with printf | sha256sum | base64)
	// so that a change of the rule, which would orphan every link already
	// sent, cannot pass unnoticed.
	if id != "ks1__ocO6SEbRx5_4RYXtW2LLA" {
		t.Errorf("SessionID = %s, want ks1__ocO6SEbRx5_4RYXtW2LLA", id)
	}
	if want := events.SessionID("oUser1", "kf2001@account", at.Add(999*time.Millisecond)); id != want {
		t.Errorf("fractions of a second changed the id: %s vs %s", id, want)
	}
	if len(id) != events.SessionIDLength || !events.IsSessionID(id) {
		t.Fatalf("SessionID = %q: not a session id", id)
	}
	for name, other := range map[string]string{
		"another customer": events.SessionID("oUser2", "kf2001@account", at),
		"another agent":    events.SessionID("oUser1", "kf2002@account", at),
		"another second":   events.SessionID("oUser1", "kf2001@account", at.Add(time.Second)),
		"shifted fields":   events.SessionID("oUser1kf2001", "@account", at),
	} {
		if other == id {
			t.Errorf("%s gives the same id %s", name, id)
		}
	}
	ev := events.SessionClosed{WeChatSource: events.WeChatSource{OpenID: "oUser1", CreateTime: at.Unix()}, KfAccount: "kf2001@account"}
	ev.OccurredAt = at.Add(3 * time.Second) // CreateTime wins
	if ev.SessionID() != id {
		t.Errorf("SessionClosed.SessionID() = %s, want %s", ev.SessionID(), id)
	}
	ev.CreateTime = 0
	if ev.SessionID() != events.SessionID("oUser1", "kf2001@account", at.Add(3*time.Second)) {
		t.Error("without CreateTime the id does not follow OccurredAt")
	}
}

func TestIsSessionID(t *testing.T) {
	for s, want := range map[string]bool{
		events.SessionID("o", "k@a", time.Unix(1, 0)): true,
		"":                           false,
		"ks1_short":                  false,
		"ks2_AAAAAAAAAAAAAAAAAAAAAA": false,
		"ks1_AAAAAAAAAAAAAAAAAAAAA=": false,
		"ks1_AAAAAAAAAAAAAAAAAAAA-_": true,
	} {
		if got := events.IsSessionID(s); got != want {
			t.Errorf("IsSessionID(%q) = %v, want %v", s, got, want)
		}
	}
}
