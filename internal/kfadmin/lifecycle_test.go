package kfadmin_test

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/kefu-io/kefu/internal/kfadmin"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

// wantErrcode checks that err is WeChat's refusal with code, a failure
// rather than a usage mistake.
func wantErrcode(t *testing.T, what string, err error, code int) {
	t.Helper()
	var apiErr *wechat.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrCode != code || errors.Is(err, kfadmin.ErrUsage) {
		t.Errorf("%s: %v; want WeChat's errcode %d", what, err, code)
	}
}

// account reads `kf account list --json` afresh and returns name's entry.
func account(t *testing.T, deps kfadmin.Deps, name string) kfadmin.Account {
	t.Helper()
	var list kfadmin.AccountList
	decodeOne(t, mustKf(t, deps, "account", "list", "--json"), &list)
	for _, a := range list.Accounts {
		if a.KfAccount == name {
			return a
		}
	}
	t.Fatalf("account list has no %s: %+v", name, list)
	return kfadmin.Account{}
}

func TestInvitationThroughTheCLI(t *testing.T) {
	e := newEnv(t, false)
	deps := e.deps()
	mustKf(t, deps, "account", "add", "alice@test", "--nickname", "Alice")
	mustKf(t, deps, "account", "add", "bob@test", "--nickname", "Bob")

	out := mustKf(t, deps, "account", "invite", "alice@test", "alice_wx1")
	if !strings.Contains(out, "alice@test") || !strings.Contains(out, "alice_wx1") {
		t.Errorf("invite printed %q", out)
	}
	if got := string(e.body(wechattest.MethodKFInviteWorker)); got != `{"kf_account":"alice@test","invite_wx":"alice_wx1"}` {
		t.Errorf("inviteworker body %s", got)
	}
	a := account(t, deps, "alice@test")
	if a.InviteWx != "alice_wx1" || a.InviteStatus != "waiting" || a.KfWx != "" ||
		a.InviteExpireTime != testStart.Add(wechattest.InviteValidity).Unix() {
		t.Errorf("after the invitation alice is %+v; want waiting for alice_wx1 for 7 days", a)
	}
	if tbl := mustKf(t, deps, "account", "list"); !strings.Contains(tableRow(tbl, "alice@test"), "alice_wx1 (waiting until 2025-03-08T09:00:00Z)") {
		t.Errorf("account list table:\n%s", tbl)
	}

	// WeChat's refusals, with their real codes.
	_, _, err := kf(t, deps, "account", "invite", "alice@test", "other_wx1")
	wantErrcode(t, "second invitation to a waiting account", err, wechattest.CodeInvitePending)
	_, _, err = kf(t, deps, "account", "invite", "bob@test", "alice_wx1")
	wantErrcode(t, "the same user invited to another account", err, wechattest.CodeInviteAlreadySent)
	_, _, err = kf(t, deps, "account", "invite", "bob@test", "9digits_first")
	wantErrcode(t, "not a WeChat id", err, wechattest.CodeInviteInvalidWx)
	_, _, err = kf(t, deps, "account", "invite", "ghost@test", "ghost_wx1")
	wantErrcode(t, "no such account", err, wechattest.CodeInvalidKFAccount)
	// Mistakes on the command line never reach WeChat.
	calls := e.fake.CallCount(wechattest.MethodKFInviteWorker)
	for _, args := range [][]string{{"account", "invite", "bob@test"}, {"account", "invite", "bob@test", "a b"}, {"account", "invite", "bob", "bob_wx1"}} {
		if _, _, err := kf(t, deps, args...); !errors.Is(err, kfadmin.ErrUsage) {
			t.Errorf("%v: %v; want a usage error", args, err)
		}
	}
	if n := e.fake.CallCount(wechattest.MethodKFInviteWorker); n != calls {
		t.Errorf("usage mistakes called inviteworker %d times", n-calls)
	}

	// The user accepts (the fake's control API, as WeChat's app would).
	resp, err := http.Post(e.url+"/_control/invitations/alice@test/accept", "application/json", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("accept: %v %v", resp, err)
	}
	resp.Body.Close()
	if a := account(t, deps, "alice@test"); a.KfWx != "alice_wx1" || a.InviteStatus != "" {
		t.Errorf("after accepting alice is %+v; want bound to alice_wx1", a)
	}
	_, _, err = kf(t, deps, "account", "invite", "alice@test", "other_wx1")
	wantErrcode(t, "invitation to a bound account", err, wechattest.CodeInviteBound)
	_, _, err = kf(t, deps, "account", "invite", "bob@test", "alice_wx1")
	wantErrcode(t, "invitation to someone already an agent", err, wechattest.CodeInviteAlreadyWorker)

	// An invitation nobody answers expires, and may then be sent again.
	mustKf(t, deps, "account", "invite", "bob@test", "bob_wx01")
	e.clock.Advance(wechattest.InviteValidity)
	if b := account(t, deps, "bob@test"); b.InviteStatus != "expired" {
		t.Errorf("a week later bob's invitation is %q; want expired", b.InviteStatus)
	}
	mustKf(t, deps, "account", "invite", "bob@test", "bob_wx02")
	if b := account(t, deps, "bob@test"); b.InviteWx != "bob_wx02" || b.InviteStatus != "waiting" {
		t.Errorf("after a new invitation bob is %+v", b)
	}
	if err := e.fake.RejectInvitation("bob@test"); err != nil {
		t.Fatal(err)
	}
	if b := account(t, deps, "bob@test"); b.InviteStatus != "rejected" || b.KfWx != "" {
		t.Errorf("after rejecting bob is %+v", b)
	}
}

func TestGroupHygieneThroughTheCLI(t *testing.T) {
	e := newEnv(t, true)
	deps := e.deps()
	e.agent("alice@test", wechattest.StatusPC, 3)
	e.fake.AddAgent("bob@test", "Bob") // offline
	e.serve("alice@test", "o1")
	if err := e.fake.AcceptInvitation("alice@test"); err == nil {
		t.Fatal("accepting an invitation that was never sent must fail")
	}
	mustKf(t, deps, "account", "invite", "alice@test", "alice_wx1")
	if err := e.fake.AcceptInvitation("alice@test"); err != nil {
		t.Fatal(err)
	}

	// Members are checked against getkflist: a typo is refused, and
	// nothing is written.
	mustKf(t, deps, "group", "create", "sales")
	_, _, err := kf(t, deps, "group", "add", "sales", "alice@test", "alcie@test")
	if !errors.Is(err, kfadmin.ErrInvalidInput) || errors.Is(err, kfadmin.ErrUsage) || !strings.Contains(err.Error(), "alcie@test") ||
		strings.Contains(err.Error(), "alice@test,") {
		t.Errorf("unknown member: %v; want a failure naming alcie@test only", err)
	}
	if g, err := e.groups.Get(t.Context(), "sales"); err != nil || len(g.Members) != 0 {
		t.Errorf("after the refused add sales is %+v (%v); want no members", g, err)
	}
	mustKf(t, deps, "group", "add", "sales", "alice@test", "bob@test")
	mustKf(t, deps, "group", "create", "night")
	mustKf(t, deps, "group", "add", "night", "bob@test")

	// Groups are listed with their members' state and load.
	var list kfadmin.GroupList
	decodeOne(t, mustKf(t, deps, "group", "list", "--json"), &list)
	want := []kfadmin.MemberStatus{
		{KfAccount: "alice@test", Known: true, KfNick: "alice", KfID: "1001", Status: 1, AutoAccept: 3, AcceptedCase: 1, Bound: true},
		{KfAccount: "bob@test", Known: true, KfNick: "Bob", KfID: "1002"},
	}
	if !slices.Equal(list.MemberStatus, want) {
		t.Errorf("member status\n got %+v\nwant %+v", list.MemberStatus, want)
	}
	tbl := mustKf(t, deps, "group", "list")
	if r := tableRow(tbl, "alice@test"); !strings.Contains(r, "pc 1 3") {
		t.Errorf("alice's row %q; want online on pc serving 1 of 3", r)
	}
	if r := tableRow(tbl, "bob@test"); !strings.Contains(r, "offline") || !strings.Contains(r, "no WeChat user bound") {
		t.Errorf("bob's row %q; want offline and unbound", r)
	}

	// Deleting an account takes it out of every group.
	var outcome kfadmin.Outcome
	decodeOne(t, mustKf(t, deps, "account", "delete", "bob@test", "--json"), &outcome)
	if !slices.Equal(outcome.RemovedFromGroups, []string{"night", "sales"}) || outcome.Warning != "" {
		t.Errorf("delete outcome %+v; want bob removed from night and sales", outcome)
	}
	for name, members := range map[string][]string{"sales": {"alice@test"}, "night": {}} {
		g, err := e.groups.Get(t.Context(), name)
		if err != nil || !slices.Equal(g.Members, members) && !(len(g.Members) == 0 && len(members) == 0) {
			t.Errorf("group %s after the delete: %+v (%v); want members %v", name, g, err, members)
		}
	}
	// A member deleted in WeChat's own console shows as unknown.
	mustKf(t, deps, "group", "add", "night", "alice@test")
	if err := e.client.DeleteKfAccount(t.Context(), "alice@test"); err != nil {
		t.Fatal(err)
	}
	list = kfadmin.GroupList{}
	decodeOne(t, mustKf(t, deps, "group", "list", "--json"), &list)
	if len(list.MemberStatus) != 1 || list.MemberStatus[0].Known || list.MemberStatus[0].Status != 0 {
		t.Errorf("after alice vanished from getkflist: %+v", list.MemberStatus)
	}
	if r := tableRow(mustKf(t, deps, "group", "list"), "alice@test"); !strings.Contains(r, "not a kf account") {
		t.Errorf("alice's row %q; want her marked unknown", r)
	}
}

// The same lifecycle through the admin HTTP API.
func TestLifecycleThroughTheHTTPAPI(t *testing.T) {
	e := newEnv(t, true)
	api := newAPI(t, e.deps())
	e.agent("alice@test", wechattest.StatusPC, 2)
	status, body := api.do("POST", "/api/kf/accounts/alice@test/invite", map[string]string{"invite_wx": "alice_wx1"})
	if status != 200 || body["action"] != "account.invited" || body["invite_wx"] != "alice_wx1" {
		t.Fatalf("invite: %d %v", status, body)
	}
	status, body = api.do("POST", "/api/kf/accounts/alice@test/invite", map[string]string{"invite_wx": "alice_wx2"})
	if status != 502 || body["errcode"] != float64(wechattest.CodeInvitePending) {
		t.Errorf("second invite: %d %v; want 502 with 65411", status, body)
	}
	if status, body = api.do("POST", "/api/kf/groups", map[string]any{"name": "sales", "members": []string{"alice@test", "ghost@test"}}); status != 400 ||
		!strings.Contains(body["error"].(string), "ghost@test") {
		t.Errorf("create with an unknown member: %d %v", status, body)
	}
	if status, body = api.do("POST", "/api/kf/groups", map[string]any{"name": "sales", "members": []string{"alice@test"}}); status != 201 {
		t.Fatalf("create: %d %v", status, body)
	}
	status, body = api.do("GET", "/api/kf/groups", nil)
	ms, _ := body["member_status"].([]any)
	if status != 200 || len(ms) != 1 {
		t.Fatalf("list: %d %v", status, body)
	}
	if m := ms[0].(map[string]any); m["kf_account"] != "alice@test" || m["status"] != float64(1) || m["auto_accept"] != float64(2) || m["known"] != true {
		t.Errorf("alice's status %v", m)
	}
	status, body = api.do("DELETE", "/api/kf/accounts/alice@test", nil)
	if groups, _ := body["removed_from_groups"].([]any); status != 200 || len(groups) != 1 || groups[0] != "sales" {
		t.Errorf("delete: %d %v; want alice removed from sales", status, body)
	}
}
