package kfadmin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
)

// ErrNotConfigured means a command needs something the process was started
// without: WeChat credentials, or NATS for the groups. The HTTP API answers
// 503.
var ErrNotConfigured = errors.New("not configured")

// ErrWeChatNotConfigured is the ErrNotConfigured of a command that needs
// the WeChat API and has no client.
var ErrWeChatNotConfigured = fmt.Errorf("%w: the WeChat API needs KEFU_WECHAT_APPID and KEFU_WECHAT_SECRET", ErrNotConfigured)

// Deps are what the admin commands and the HTTP API work with.
type Deps struct {
	// Client calls the WeChat 多客服 API; nil makes the account, online,
	// waiting and session commands fail with ErrNotConfigured.
	Client *wechat.Client
	// Groups is the kefu_groups store; nil (no NATS) makes the group
	// commands and `session create --group` fail with ErrNotConfigured.
	Groups *Groups
	// Now is the clock for "waited" columns; default time.Now.
	Now func() time.Time
	// Remote, when set, is a running kefu's admin API: the commands go
	// through it and Client and Groups are not used (`kefu kf --server`).
	// The HTTP API ignores it.
	Remote *Remote
}

func (d Deps) client() (*wechat.Client, error) {
	if d.Client == nil {
		return nil, ErrWeChatNotConfigured
	}
	return d.Client, nil
}

func (d Deps) groups() (*Groups, error) {
	if d.Groups == nil {
		return nil, fmt.Errorf("%w: groups live in the %s KV bucket and need NATS: set KEFU_NATS_URL, or KEFU_DATA_DIR to the embedded server's store",
			ErrNotConfigured, "kefu_groups")
	}
	return d.Groups, nil
}

func (d Deps) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// The JSON documents below are what `kefu kf … --json` prints and what the
// HTTP API answers: one shape for both, with WeChat's field names where
// WeChat has one.

// Account is a kf account from getkflist.
type Account struct {
	KfAccount    string `json:"kf_account"`
	KfNick       string `json:"kf_nick"`
	KfID         string `json:"kf_id"`
	KfHeadImgURL string `json:"kf_headimgurl,omitempty"`
	// KfWx is the WeChat user bound to the account; empty until an
	// invitation is accepted.
	KfWx             string `json:"kf_wx,omitempty"`
	InviteWx         string `json:"invite_wx,omitempty"`
	InviteExpireTime int64  `json:"invite_expire_time,omitempty"`
	InviteStatus     string `json:"invite_status,omitempty"`
}

// AccountList answers `kf account list` and GET /api/kf/accounts.
type AccountList struct {
	Accounts []Account `json:"kf_list"`
}

// OnlineAgent is an agent from getonlinekflist.
type OnlineAgent struct {
	KfAccount string `json:"kf_account"`
	KfID      string `json:"kf_id"`
	// Status: 1 PC, 2 mobile, 3 both.
	Status       int `json:"status"`
	AutoAccept   int `json:"auto_accept"`
	AcceptedCase int `json:"accepted_case"`
}

// OnlineList answers `kf online` and GET /api/kf/online.
type OnlineList struct {
	Online []OnlineAgent `json:"kf_online_list"`
}

// WaitingCase is a customer in the 多客服 queue.
type WaitingCase struct {
	OpenID string `json:"openid"`
	// KfAccount is the agent the customer waits for; "" for anyone.
	KfAccount string `json:"kf_account"`
	// CreateTime is Unix seconds (createtime or latest_time, see
	// wechat.WaitCase).
	CreateTime int64 `json:"createtime"`
}

// WaitingList answers `kf waiting` and GET /api/kf/waiting. Count is
// WeChat's total; Listed how many cases WeChat listed (at most 100).
type WaitingList struct {
	Count  int           `json:"count"`
	Listed int           `json:"listed"`
	Cases  []WaitingCase `json:"waitcaselist"`
}

// SessionState answers `kf session get` and GET /api/kf/sessions/{openid}.
type SessionState struct {
	OpenID string `json:"openid"`
	// KfAccount serves the customer; "" means nobody does.
	KfAccount  string `json:"kf_account"`
	CreateTime int64  `json:"createtime"`
}

// SessionItem is one session an agent serves.
type SessionItem struct {
	OpenID     string `json:"openid"`
	CreateTime int64  `json:"createtime"`
}

// SessionList answers `kf session list` and GET /api/kf/sessions?kf=.
type SessionList struct {
	KfAccount string        `json:"kf_account"`
	Sessions  []SessionItem `json:"sessionlist"`
}

// GroupList answers `kf group list` and GET /api/kf/groups. MemberStatus
// describes every member of the listed groups, in account order, when the
// WeChat API is configured.
type GroupList struct {
	Groups       []Group        `json:"groups"`
	MemberStatus []MemberStatus `json:"member_status,omitempty"`
}

// Outcome reports a change that has no other result to show.
type Outcome struct {
	// Action is what was done: account.added, account.updated,
	// account.deleted, account.avatar_uploaded, account.invited, session.created,
	// session.closed, group.deleted.
	Action    string `json:"action"`
	KfAccount string `json:"kf_account,omitempty"`
	OpenID    string `json:"openid,omitempty"`
	Group     string `json:"group,omitempty"`
	// Picked is the agent chosen for `session create --group`.
	Picked *OnlineAgent `json:"picked,omitempty"`
	// InviteWx is the WeChat user invited (account.invited).
	InviteWx string `json:"invite_wx,omitempty"`
	// RemovedFromGroups names the groups a deleted account was taken out
	// of (account.deleted).
	RemovedFromGroups []string `json:"removed_from_groups,omitempty"`
	// Warning says what could not be done alongside the change.
	Warning string `json:"warning,omitempty"`
}

// SessionRequest creates a session: for one agent (KfAccount) or for the
// least-loaded online member of a group (Group), exactly one of the two.
type SessionRequest struct {
	OpenID    string
	KfAccount string
	Group     string
	Text      string
}

// admin carries out the operations shared by the CLI and the HTTP API.
type admin struct{ deps Deps }

func (a admin) accounts(ctx context.Context) (AccountList, error) {
	c, err := a.deps.client()
	if err != nil {
		return AccountList{}, err
	}
	list, err := c.GetKfList(ctx)
	if err != nil {
		return AccountList{}, fmt.Errorf("list kf accounts: %w", err)
	}
	out := AccountList{Accounts: make([]Account, 0, len(list))}
	for _, k := range list {
		out.Accounts = append(out.Accounts, Account{
			KfAccount: k.KfAccount, KfNick: k.KfNick, KfID: k.KfID, KfHeadImgURL: k.KfHeadImgURL,
			KfWx: k.KfWx, InviteWx: k.InviteWx, InviteExpireTime: k.InviteExpireTime, InviteStatus: k.InviteStatus,
		})
	}
	return out, nil
}

// saveAccount adds (update false) or updates an account. The client sends
// the password as its MD5, as the API wants.
func (a admin) saveAccount(ctx context.Context, update bool, in wechat.KfAccountInput) (Outcome, error) {
	c, err := a.deps.client()
	if err != nil {
		return Outcome{}, err
	}
	if err := ValidateAccount(in.KfAccount); err != nil {
		return Outcome{}, err
	}
	if strings.TrimSpace(in.Nickname) == "" {
		return Outcome{}, fmt.Errorf("%w: nickname is required", ErrInvalidInput)
	}
	if update {
		if err := c.UpdateKfAccount(ctx, in); err != nil {
			return Outcome{}, fmt.Errorf("update kf account %s: %w", in.KfAccount, err)
		}
		return Outcome{Action: "account.updated", KfAccount: in.KfAccount}, nil
	}
	if err := c.AddKfAccount(ctx, in); err != nil {
		return Outcome{}, fmt.Errorf("add kf account %s: %w", in.KfAccount, err)
	}
	return Outcome{Action: "account.added", KfAccount: in.KfAccount}, nil
}

func (a admin) deleteAccount(ctx context.Context, account string) (Outcome, error) {
	c, err := a.deps.client()
	if err != nil {
		return Outcome{}, err
	}
	if err := ValidateAccount(account); err != nil {
		return Outcome{}, err
	}
	if err := c.DeleteKfAccount(ctx, account); err != nil {
		return Outcome{}, fmt.Errorf("delete kf account %s: %w", account, err)
	}
	out := Outcome{Action: "account.deleted", KfAccount: account}
	// The account is gone: a group naming it would route to nobody.
	if a.deps.Groups == nil {
		out.Warning = "groups not checked (no NATS): remove " + account + " from its groups with `kefu kf group remove`"
		return out, nil
	}
	removed, err := a.removeFromGroups(ctx, account)
	out.RemovedFromGroups = removed
	if err != nil {
		out.Warning = "the account is deleted, but " + err.Error()
	}
	return out, nil
}

func (a admin) uploadAvatar(ctx context.Context, account, filename string, img io.Reader) (Outcome, error) {
	c, err := a.deps.client()
	if err != nil {
		return Outcome{}, err
	}
	if err := ValidateAccount(account); err != nil {
		return Outcome{}, err
	}
	if err := c.UploadKfAvatar(ctx, account, filename, img); err != nil {
		return Outcome{}, fmt.Errorf("upload avatar of %s: %w", account, err)
	}
	return Outcome{Action: "account.avatar_uploaded", KfAccount: account}, nil
}

func (a admin) online(ctx context.Context) (OnlineList, error) {
	c, err := a.deps.client()
	if err != nil {
		return OnlineList{}, err
	}
	list, err := c.GetOnlineKfList(ctx)
	if err != nil {
		return OnlineList{}, fmt.Errorf("list online agents: %w", err)
	}
	out := OnlineList{Online: make([]OnlineAgent, 0, len(list))}
	for _, k := range list {
		out.Online = append(out.Online, onlineAgent(k))
	}
	return out, nil
}

func onlineAgent(k wechat.OnlineKf) OnlineAgent {
	return OnlineAgent{KfAccount: k.KfAccount, KfID: k.KfID, Status: k.Status, AutoAccept: k.AutoAccept, AcceptedCase: k.AcceptedCase}
}

func (a admin) waiting(ctx context.Context) (WaitingList, error) {
	c, err := a.deps.client()
	if err != nil {
		return WaitingList{}, err
	}
	w, err := c.GetWaitCase(ctx)
	if err != nil {
		return WaitingList{}, fmt.Errorf("list waiting customers: %w", err)
	}
	out := WaitingList{Count: w.Count, Listed: len(w.Cases), Cases: make([]WaitingCase, 0, len(w.Cases))}
	for _, c := range w.Cases {
		out.Cases = append(out.Cases, WaitingCase{OpenID: c.OpenID, KfAccount: c.KfAccount, CreateTime: c.CreateTime})
	}
	return out, nil
}

func (a admin) session(ctx context.Context, openid string) (SessionState, error) {
	c, err := a.deps.client()
	if err != nil {
		return SessionState{}, err
	}
	if strings.TrimSpace(openid) == "" {
		return SessionState{}, fmt.Errorf("%w: openid is required", ErrInvalidInput)
	}
	s, err := c.GetSession(ctx, openid)
	if err != nil {
		return SessionState{}, fmt.Errorf("get session: %w", err)
	}
	return SessionState{OpenID: openid, KfAccount: s.KfAccount, CreateTime: s.CreateTime}, nil
}

func (a admin) sessions(ctx context.Context, account string) (SessionList, error) {
	c, err := a.deps.client()
	if err != nil {
		return SessionList{}, err
	}
	if err := ValidateAccount(account); err != nil {
		return SessionList{}, err
	}
	list, err := c.GetSessionList(ctx, account)
	if err != nil {
		return SessionList{}, fmt.Errorf("list sessions of %s: %w", account, err)
	}
	out := SessionList{KfAccount: account, Sessions: make([]SessionItem, 0, len(list))}
	for _, s := range list {
		out.Sessions = append(out.Sessions, SessionItem{OpenID: s.OpenID, CreateTime: s.CreateTime})
	}
	return out, nil
}

// createSession assigns the customer to an agent with kfsession/create.
// With a group it first picks the least-loaded online member (PickAgent,
// ties broken by the customers already queued for each agent).
func (a admin) createSession(ctx context.Context, req SessionRequest) (Outcome, error) {
	c, err := a.deps.client()
	if err != nil {
		return Outcome{}, err
	}
	switch {
	case strings.TrimSpace(req.OpenID) == "":
		return Outcome{}, fmt.Errorf("%w: openid is required", ErrInvalidInput)
	case (req.KfAccount == "") == (req.Group == ""):
		return Outcome{}, fmt.Errorf("%w: give exactly one of kf account and group", ErrInvalidInput)
	}
	out := Outcome{Action: "session.created", OpenID: req.OpenID, KfAccount: req.KfAccount, Group: req.Group}
	if req.Group != "" {
		groups, err := a.deps.groups()
		if err != nil {
			return Outcome{}, err
		}
		grp, err := groups.Get(ctx, req.Group)
		if err != nil {
			return Outcome{}, fmt.Errorf("create session: %w", err)
		}
		online, err := c.GetOnlineKfList(ctx)
		if err != nil {
			return Outcome{}, fmt.Errorf("create session for group %s: %w", req.Group, err)
		}
		queue, err := c.GetWaitCase(ctx)
		if err != nil {
			return Outcome{}, fmt.Errorf("create session for group %s: %w", req.Group, err)
		}
		queued := queuedFor(queue)
		kf, err := pickGroupAgent(grp, online, func(kf string) int { return queued[strings.ToLower(kf)] })
		if err != nil {
			return Outcome{}, fmt.Errorf("create session: %w", err)
		}
		picked := onlineAgent(kf)
		out.KfAccount, out.Picked = kf.KfAccount, &picked
	} else if err := ValidateAccount(req.KfAccount); err != nil {
		return Outcome{}, err
	}
	if err := c.CreateSession(ctx, out.KfAccount, req.OpenID, req.Text); err != nil {
		return Outcome{}, fmt.Errorf("create session with %s: %w", out.KfAccount, err)
	}
	return out, nil
}

func (a admin) closeSession(ctx context.Context, openid, account, text string) (Outcome, error) {
	c, err := a.deps.client()
	if err != nil {
		return Outcome{}, err
	}
	if strings.TrimSpace(openid) == "" {
		return Outcome{}, fmt.Errorf("%w: openid is required", ErrInvalidInput)
	}
	if err := ValidateAccount(account); err != nil {
		return Outcome{}, err
	}
	if err := c.CloseSession(ctx, account, openid, text); err != nil {
		return Outcome{}, fmt.Errorf("close session with %s: %w", account, err)
	}
	return Outcome{Action: "session.closed", OpenID: openid, KfAccount: account}, nil
}

func (a admin) listGroups(ctx context.Context) (GroupList, error) {
	g, err := a.deps.groups()
	if err != nil {
		return GroupList{}, err
	}
	list, err := g.List(ctx)
	if err != nil {
		return GroupList{}, err
	}
	if list == nil {
		list = []Group{}
	}
	status, err := a.memberStatus(ctx, list)
	if err != nil {
		return GroupList{}, err
	}
	return GroupList{Groups: list, MemberStatus: status}, nil
}

func (a admin) getGroup(ctx context.Context, name string) (Group, error) {
	g, err := a.deps.groups()
	if err != nil {
		return Group{}, err
	}
	return g.Get(ctx, name)
}

func (a admin) createGroup(ctx context.Context, name string, keywords, members []string) (Group, error) {
	g, err := a.deps.groups()
	if err != nil {
		return Group{}, err
	}
	if err := a.checkMembers(ctx, members); err != nil {
		return Group{}, fmt.Errorf("create group %s: %w", name, err)
	}
	return g.create(ctx, name, keywords, members)
}

func (a admin) addMembers(ctx context.Context, name string, accounts []string) (Group, error) {
	g, err := a.deps.groups()
	if err != nil {
		return Group{}, err
	}
	if err := a.checkMembers(ctx, accounts); err != nil {
		return Group{}, fmt.Errorf("add members to group %s: %w", name, err)
	}
	return g.AddMembers(ctx, name, accounts...)
}

func (a admin) removeMembers(ctx context.Context, name string, accounts []string) (Group, error) {
	g, err := a.deps.groups()
	if err != nil {
		return Group{}, err
	}
	return g.RemoveMembers(ctx, name, accounts...)
}

func (a admin) setKeywords(ctx context.Context, name string, keywords []string) (Group, error) {
	g, err := a.deps.groups()
	if err != nil {
		return Group{}, err
	}
	return g.SetKeywords(ctx, name, keywords)
}

func (a admin) deleteGroup(ctx context.Context, name string) (Outcome, error) {
	g, err := a.deps.groups()
	if err != nil {
		return Outcome{}, err
	}
	if err := g.Delete(ctx, name); err != nil {
		return Outcome{}, err
	}
	return Outcome{Action: "group.deleted", Group: name}, nil
}
