package kfadmin

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kefu-io/kefu/internal/wechat"
)

// ErrNobodyOnline means no member of a group is online. Callers wrap it
// with the group's name (see pickGroupAgent).
var ErrNobodyOnline = errors.New("no member is online")

// PickAgent returns the least-loaded online agent among members:
//
//  1. the lowest load ratio accepted_case / auto_accept — how full the
//     agent's own limit is, so an agent allowing 10 sessions with 3 is
//     preferred to one allowing 2 with 1. An auto_accept of 0 (the agent
//     takes no automatic sessions) counts as 1: such an agent is still
//     eligible, but its ratio rises quickest, so it is chosen only when the
//     others are at least as full;
//  2. then the fewest sessions(kf) — a second measure of load the online
//     list does not show, such as customers already queued for that agent
//     (nil counts 0);
//  3. then the account name, so that the choice is deterministic.
//
// Members that are not in online, or whose status is 0, are ignored;
// accounts are compared case-insensitively. With no member online it
// returns ErrNobodyOnline.
func PickAgent(online []wechat.OnlineKf, members []string, sessions func(kf string) int) (wechat.OnlineKf, error) {
	want := make(map[string]bool, len(members))
	for _, m := range members {
		want[strings.ToLower(m)] = true
	}
	var best wechat.OnlineKf
	bestSessions := 0
	found := false
	for _, kf := range online {
		if kf.Status == 0 || !want[strings.ToLower(kf.KfAccount)] {
			continue
		}
		n := 0
		if sessions != nil {
			n = sessions(kf.KfAccount)
		}
		if !found || lessLoaded(kf, n, best, bestSessions) {
			best, bestSessions, found = kf, n, true
		}
	}
	if !found {
		return wechat.OnlineKf{}, ErrNobodyOnline
	}
	return best, nil
}

// lessLoaded orders agents as PickAgent documents. Ratios are compared by
// cross-multiplication, exactly, rather than as floats.
func lessLoaded(a wechat.OnlineKf, aSessions int, b wechat.OnlineKf, bSessions int) bool {
	l := a.AcceptedCase * max(b.AutoAccept, 1)
	r := b.AcceptedCase * max(a.AutoAccept, 1)
	if l != r {
		return l < r
	}
	if aSessions != bSessions {
		return aSessions < bSessions
	}
	return a.KfAccount < b.KfAccount
}

// pickGroupAgent is PickAgent for a group, with an error naming it.
func pickGroupAgent(grp Group, online []wechat.OnlineKf, sessions func(string) int) (wechat.OnlineKf, error) {
	if len(grp.Members) == 0 {
		return wechat.OnlineKf{}, fmt.Errorf("group %s has no members: %w", grp.Name, ErrNobodyOnline)
	}
	kf, err := PickAgent(online, grp.Members, sessions)
	if err != nil {
		return wechat.OnlineKf{}, fmt.Errorf("group %s: %w (members: %s)", grp.Name, err, strings.Join(grp.Members, ", "))
	}
	return kf, nil
}

// queuedFor counts the waiting customers pinned to each agent
// (getwaitcase's kf_account), the sessions measure PickAgent breaks ties
// with. Only the listed cases (at most 100) are seen.
func queuedFor(w wechat.WaitCases) map[string]int {
	n := make(map[string]int)
	for _, c := range w.Cases {
		if c.KfAccount != "" {
			n[strings.ToLower(c.KfAccount)]++
		}
	}
	return n
}
