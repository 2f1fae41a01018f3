package waitmodel_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/waitmodel"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func ids(ws []waitmodel.WaitingCase) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.OpenID)
	}
	return out
}

// The listed cases form the head and leave the members; the others follow
// in join order as inferred cases, whatever order their joins arrived in.
func TestMembersFollowTheListedInJoinOrder(t *testing.T) {
	var m waitmodel.Members
	m.Join("c", "", t0.Add(3*time.Second))
	m.Join("a", "", t0.Add(1*time.Second))
	m.Join("d", "kf1@x", t0.Add(4*time.Second))
	m.Join("b", "", t0.Add(2*time.Second)) // a late join event
	if m.Join("b", "", t0.Add(9*time.Second)) {
		t.Fatal("a second join of a member counted")
	}
	snap := waitmodel.Snapshot{At: t0.Add(time.Minute), Count: 4,
		Waiting: []waitmodel.WaitingCase{{OpenID: "a", Since: t0.Add(time.Second)}}}
	got, _ := m.Complete(snap, nil)
	if want := []string{"a", "b", "c", "d"}; !slices.Equal(ids(got.Waiting), want) {
		t.Fatalf("queue %v, want %v", ids(got.Waiting), want)
	}
	if got.Waiting[0].Inferred || !got.Waiting[1].Inferred || got.Waiting[3].KfAccount != "kf1@x" {
		t.Fatalf("flags %+v", got.Waiting)
	}
	if m.Has("a") || m.Len() != 3 {
		t.Fatalf("a listed customer stays a member (%d members)", m.Len())
	}
	if len(snap.Waiting) != 1 {
		t.Fatal("Complete changed the caller's slice")
	}
}

// Only proof removes a member: someone who joined later is listed while
// the member is not (the list holds the earliest), or getwaitcase lists
// everyone. A count that leaves less room than the members is no proof
// of who left.
func TestMembersLeaveOnlyOnProof(t *testing.T) {
	var m waitmodel.Members
	for i, id := range []string{"a", "b", "c", "d", "e"} {
		m.Join(id, "", t0.Add(time.Duration(i)*10*time.Second))
	}
	// Count says one of c, d, e left; nobody knows who.
	snap := waitmodel.Snapshot{At: t0.Add(time.Minute), Count: 4,
		Waiting: []waitmodel.WaitingCase{{OpenID: "a"}, {OpenID: "b"}}}
	got, _ := m.Complete(snap, nil)
	if want := []string{"a", "b", "c", "d", "e"}; !slices.Equal(ids(got.Waiting), want) {
		t.Fatalf("queue %v, want %v (no member dropped on the count alone)", ids(got.Waiting), want)
	}
	// d (joined after c) is listed, c is not: c is gone.
	snap = waitmodel.Snapshot{At: t0.Add(2 * time.Minute), Count: 4,
		Waiting: []waitmodel.WaitingCase{{OpenID: "a"}, {OpenID: "b"}, {OpenID: "d"}}}
	got, _ = m.Complete(snap, nil)
	if want := []string{"a", "b", "d", "e"}; !slices.Equal(ids(got.Waiting), want) {
		t.Fatalf("queue %v, want %v", ids(got.Waiting), want)
	}
	// A listed member's join time still counts after it left the members:
	// f joined before d and is not listed.
	m.Join("f", "", t0.Add(25*time.Second))
	got, _ = m.Complete(snap, nil)
	if slices.Contains(ids(got.Waiting), "f") {
		t.Fatalf("f joined before the listed d and is not listed, yet kept: %v", ids(got.Waiting))
	}
	// Everyone listed: e, unlisted and joined well before the poll, is
	// gone; g, who joined within the margin, is kept.
	m.Join("g", "", t0.Add(3*time.Minute-2*time.Second))
	snap = waitmodel.Snapshot{At: t0.Add(3 * time.Minute), Count: 1, Waiting: []waitmodel.WaitingCase{{OpenID: "d"}}}
	got, _ = m.Complete(snap, nil)
	if want := []string{"d", "g"}; !slices.Equal(ids(got.Waiting), want) {
		t.Fatalf("queue %v, want %v", ids(got.Waiting), want)
	}
}

func TestMembersServedLeaveAndStateRoundTrips(t *testing.T) {
	m := waitmodel.Members{Max: 3}
	m.Join("a", "", t0)
	m.Join("b", "kf", t0.Add(time.Second))
	m.Join("c", "", t0.Add(2*time.Second))
	if m.Join("d", "", t0.Add(3*time.Second)) {
		t.Fatal("a join beyond Max accepted")
	}
	snap := waitmodel.Snapshot{At: t0.Add(time.Minute), Count: 3,
		Agents: []waitmodel.Agent{{Account: "kf", Status: 1, AutoAccept: 1, Accepted: 1, Sessions: []waitmodel.Session{{OpenID: "b", Since: t0}}}}}
	got, _ := m.Complete(snap, nil)
	if want := []string{"a", "c"}; !slices.Equal(ids(got.Waiting), want) {
		t.Fatalf("queue %v, want %v (b is served)", ids(got.Waiting), want)
	}
	b, err := json.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	var back waitmodel.Members
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	again, _ := back.Complete(snap, nil)
	if !slices.Equal(ids(again.Waiting), ids(got.Waiting)) || !again.Waiting[0].Since.Equal(t0) {
		t.Fatalf("restored queue %v", again.Waiting)
	}
	if err := back.UnmarshalJSON([]byte(`[["x",1]]`)); err == nil {
		t.Fatal("a malformed entry was accepted")
	}
}
