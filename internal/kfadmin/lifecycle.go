package kfadmin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kefu-io/kefu/internal/wechat"
)

// Agents' lifecycle: an account is added (kfaccount/add), bound to a WeChat
// user by invitation (kfaccount/inviteworker; the user accepts in WeChat),
// put into groups, and finally deleted, which also takes it out of every
// group. Group members are checked against getkflist whenever the WeChat
// API is configured, so a typo cannot put a ghost into a group; groups are
// listed with their members' online state and load.

// MemberStatus is one group member as WeChat sees it: known (in
// getkflist), its nickname and 工号, whether it is online and how loaded.
type MemberStatus struct {
	KfAccount string `json:"kf_account"`
	// Known is false for a member getkflist does not list (the account
	// was deleted in WeChat's console, or added before kefu checked).
	Known  bool   `json:"known"`
	KfNick string `json:"kf_nick,omitempty"`
	KfID   string `json:"kf_id,omitempty"`
	// Status: 0 offline, 1 PC, 2 mobile, 3 both (getonlinekflist).
	Status       int `json:"status"`
	AutoAccept   int `json:"auto_accept"`
	AcceptedCase int `json:"accepted_case"`
	// Bound is false while no WeChat user has accepted an invitation to
	// the account: nobody can log in to serve as it.
	Bound bool `json:"bound"`
}

// inviteWorker invites a WeChat user to bind account.
func (a admin) inviteWorker(ctx context.Context, account, wx string) (Outcome, error) {
	c, err := a.deps.client()
	if err != nil {
		return Outcome{}, err
	}
	if err := ValidateAccount(account); err != nil {
		return Outcome{}, err
	}
	if err := ValidateWeChatID(wx); err != nil {
		return Outcome{}, err
	}
	if err := c.InviteWorker(ctx, account, wx); err != nil {
		return Outcome{}, fmt.Errorf("invite %s to bind kf account %s: %w", wx, account, err)
	}
	return Outcome{Action: "account.invited", KfAccount: account, InviteWx: wx}, nil
}

// ValidateWeChatID checks the form of a WeChat id: 1–64 characters of
// A–Z a–z 0–9 '_' '-' (WeChat's own ids are 6–20 and start with a
// letter; WeChat itself answers 65409 for one that does not exist).
func ValidateWeChatID(wx string) error {
	if wx == "" || len(wx) > 64 {
		return fmt.Errorf("%w: WeChat id must be 1–64 characters", ErrInvalidInput)
	}
	for _, r := range wx {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("%w: WeChat id %q may hold only letters, digits, '_' and '-'", ErrInvalidInput, wx)
		}
	}
	return nil
}

// checkMembers refuses accounts getkflist does not list. Without the
// WeChat API configured only their form is checked (the groups work with
// NATS alone).
func (a admin) checkMembers(ctx context.Context, accounts []string) error {
	if a.deps.Client == nil || len(accounts) == 0 {
		return nil
	}
	list, err := a.deps.Client.GetKfList(ctx)
	if err != nil {
		return fmt.Errorf("check members against the kf accounts: %w", err)
	}
	known := make(map[string]bool, len(list))
	for _, k := range list {
		known[strings.ToLower(k.KfAccount)] = true
	}
	var unknown []string
	for _, m := range accounts {
		if !known[strings.ToLower(m)] {
			unknown = append(unknown, m)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("%w: not a kf account of this official account (getkflist): %s; add it first with `kefu kf account add`",
			ErrInvalidInput, strings.Join(unknown, ", "))
	}
	return nil
}

// memberStatus describes every member of groups from getkflist and
// getonlinekflist, in account order; nil without the WeChat API.
func (a admin) memberStatus(ctx context.Context, groups []Group) ([]MemberStatus, error) {
	if a.deps.Client == nil {
		return nil, nil
	}
	var members []string
	for _, g := range groups {
		for _, m := range g.Members {
			if !slices.Contains(members, m) {
				members = append(members, m)
			}
		}
	}
	if len(members) == 0 {
		return nil, nil
	}
	slices.Sort(members)
	list, err := a.deps.Client.GetKfList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list kf accounts for the groups' members: %w", err)
	}
	online, err := a.deps.Client.GetOnlineKfList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list online agents for the groups' members: %w", err)
	}
	info := make(map[string]wechat.KfInfo, len(list))
	for _, k := range list {
		info[strings.ToLower(k.KfAccount)] = k
	}
	on := make(map[string]wechat.OnlineKf, len(online))
	for _, k := range online {
		on[strings.ToLower(k.KfAccount)] = k
	}
	out := make([]MemberStatus, 0, len(members))
	for _, m := range members {
		ms := MemberStatus{KfAccount: m}
		if k, ok := info[strings.ToLower(m)]; ok {
			ms.Known, ms.KfNick, ms.KfID, ms.Bound = true, k.KfNick, k.KfID, k.KfWx != ""
		}
		if o, ok := on[strings.ToLower(m)]; ok {
			ms.Status, ms.AutoAccept, ms.AcceptedCase = o.Status, o.AutoAccept, o.AcceptedCase
			if ms.KfID == "" {
				ms.KfID = o.KfID
			}
		}
		out = append(out, ms)
	}
	return out, nil
}

// removeFromGroups takes account out of every group that names it and
// returns those groups' names.
func (a admin) removeFromGroups(ctx context.Context, account string) ([]string, error) {
	g := a.deps.Groups
	list, err := g.List(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, grp := range list {
		i := slices.IndexFunc(grp.Members, func(m string) bool { return strings.EqualFold(m, account) })
		if i < 0 {
			continue
		}
		_, err := g.RemoveMembers(ctx, grp.Name, grp.Members[i])
		if errors.Is(err, ErrGroupNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return removed, fmt.Errorf("remove %s from group %s: %w", account, grp.Name, err)
		}
		removed = append(removed, grp.Name)
	}
	return removed, nil
}
