package kfadmin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/kfadmin"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

func TestAccountCommands(t *testing.T) {
	e := newEnv(t, false)
	deps := e.deps()

	out := mustKf(t, deps, "account", "add", "alice@test", "--nickname", "Alice", "--password", "secret")
	if out != "kf account alice@test added\n" {
		t.Errorf("add printed %q", out)
	}
	var sent map[string]string
	if err := json.Unmarshal(e.body("customservice/kfaccount/add"), &sent); err != nil {
		t.Fatal(err)
	}
	if sent["password"] != wechat.PasswordMD5("secret") || sent["nickname"] != "Alice" {
		t.Errorf("kfaccount/add got %v; want the password as its MD5", sent)
	}
	// Flags before the positional argument work too.
	mustKf(t, deps, "account", "add", "--nickname", "Bob", "bob@test")

	out = mustKf(t, deps, "account", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ACCOUNT") ||
		!strings.Contains(out, "alice@test") || !strings.Contains(out, "Alice") || !strings.Contains(out, "Bob") {
		t.Errorf("account list table:\n%s", out)
	}

	mustKf(t, deps, "account", "update", "alice@test", "--nickname", "Alice Wang")
	var list kfadmin.AccountList
	decodeOne(t, mustKf(t, deps, "account", "list", "--json"), &list)
	nicks := map[string]string{}
	for _, a := range list.Accounts {
		nicks[a.KfAccount] = a.KfNick
	}
	if len(list.Accounts) != 2 || nicks["alice@test"] != "Alice Wang" || nicks["bob@test"] != "Bob" {
		t.Errorf("account list --json: %+v", list)
	}

	img := filepath.Join(t.TempDir(), "alice.jpg")
	if err := os.WriteFile(img, append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 64)...), 0o600); err != nil {
		t.Fatal(err)
	}
	var outcome kfadmin.Outcome
	decodeOne(t, mustKf(t, deps, "account", "avatar", "alice@test", img, "--json"), &outcome)
	if outcome.Action != "account.avatar_uploaded" || outcome.KfAccount != "alice@test" {
		t.Errorf("avatar outcome %+v", outcome)
	}
	if !agentState(t, e, "alice@test").HasHeadImg {
		t.Error("the fake has no avatar for alice")
	}
	if _, _, err := kf(t, deps, "account", "avatar", "alice@test", filepath.Join(t.TempDir(), "missing.jpg")); err == nil || errors.Is(err, kfadmin.ErrUsage) {
		t.Errorf("missing avatar file: %v; want a failure that is not a usage error", err)
	}

	mustKf(t, deps, "account", "delete", "bob@test")
	if st := e.fake.Snapshot(); len(st.Agents) != 1 || st.Agents[0].Account != "alice@test" {
		t.Errorf("after delete the fake has %+v", st.Agents)
	}
}

// tableRow returns the table line starting with first, its columns
// separated by single spaces.
func tableRow(table, first string) string {
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == first {
			return strings.Join(f, " ")
		}
	}
	return ""
}

func agentState(t *testing.T, e *env, account string) wechattest.AgentState {
	t.Helper()
	for _, a := range e.fake.Snapshot().Agents {
		if a.Account == account {
			return a
		}
	}
	t.Fatalf("no agent %s", account)
	return wechattest.AgentState{}
}

// WeChat's refusals are failures (exit 1) showing errcode and errmsg, never
// usage errors.
func TestWeChatRefusalsShowErrcode(t *testing.T) {
	e := newEnv(t, false)
	deps := e.deps()
	e.agent("alice@test", wechattest.StatusPC, 1)
	e.customer("oWaiting")
	tests := []struct {
		name    string
		args    []string
		errcode int
	}{
		{"adding an existing account", []string{"account", "add", "alice@test", "--nickname", "A"}, wechattest.CodeKFAccountExists},
		{"an account WeChat finds malformed", []string{"account", "add", "much_too_long_prefix@test", "--nickname", "A"}, wechattest.CodeIllegalKFAccount},
		{"deleting an unknown account", []string{"account", "delete", "ghost@test", "--json"}, wechattest.CodeInvalidKFAccount},
		{"closing a session nobody serves", []string{"session", "close", "--openid", "oWaiting", "--kf", "alice@test"}, wechattest.CodeNoSession},
		{"an unknown customer", []string{"session", "get", "oNobody"}, wechattest.CodeInvalidOpenID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := kf(t, deps, tt.args...)
			var apiErr *wechat.APIError
			if !errors.As(err, &apiErr) || apiErr.ErrCode != tt.errcode || errors.Is(err, kfadmin.ErrUsage) {
				t.Fatalf("got %v; want a non-usage error with errcode %d", err, tt.errcode)
			}
			if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("errcode %d", tt.errcode)) || strings.Contains(msg, "\n") {
				t.Errorf("message %q: want one line with the errcode", msg)
			}
			if out != "" {
				t.Errorf("a failure printed %q on stdout", out)
			}
		})
	}
	e.fake.SetUpgraded(false)
	if _, _, err := kf(t, deps, "online"); err == nil || !strings.Contains(err.Error(), "errcode 65400") {
		t.Errorf("not upgraded: %v", err)
	}
}

func TestUsageMistakes(t *testing.T) {
	e := newEnv(t, true)
	deps := e.deps()
	tests := []struct {
		name string
		args []string
	}{
		{"no command", nil},
		{"unknown command", []string{"frobnicate"}},
		{"group word without subcommand", []string{"account"}},
		{"unknown subcommand", []string{"session", "open"}},
		{"missing account", []string{"account", "add", "--nickname", "A"}},
		{"missing required flag", []string{"account", "add", "a@test"}},
		{"empty required flag", []string{"account", "update", "a@test", "--nickname", ""}},
		{"flag without its value", []string{"account", "add", "a@test", "--nickname"}},
		{"unknown flag", []string{"account", "list", "--all"}},
		{"extra argument", []string{"account", "delete", "a@test", "b@test"}},
		{"argument to a command that takes none", []string{"online", "now"}},
		{"malformed account", []string{"account", "delete", "alice"}},
		{"avatar without file", []string{"account", "avatar", "a@test"}},
		{"session get without openid", []string{"session", "get"}},
		{"session list without --kf", []string{"session", "list"}},
		{"session create with neither --kf nor --group", []string{"session", "create", "--openid", "o1"}},
		{"session create with both --kf and --group", []string{"session", "create", "--openid", "o1", "--kf", "a@test", "--group", "g"}},
		{"session create without --openid", []string{"session", "create", "--kf", "a@test"}},
		{"session close without --kf", []string{"session", "close", "--openid", "o1"}},
		{"group create without name", []string{"group", "create"}},
		{"group name that is not a KV token", []string{"group", "create", "a.b"}},
		{"group add without accounts", []string{"group", "add", "sales"}},
		{"group remove with a malformed account", []string{"group", "remove", "sales", "bob"}},
		{"bad --json value", []string{"online", "--json=maybe"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := kf(t, deps, tt.args...)
			if !errors.Is(err, kfadmin.ErrUsage) {
				t.Fatalf("got %v; want ErrUsage", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("message is not one line: %q", err)
			}
			if out != "" {
				t.Errorf("stdout %q", out)
			}
		})
	}
	if calls := e.fake.CallCounts(); len(calls) != 0 {
		t.Errorf("usage mistakes called WeChat: %v", calls)
	}
	if list, _ := e.groups.List(context.Background()); len(list) != 0 {
		t.Errorf("usage mistakes created groups: %+v", list)
	}
}

func TestHelpIsNotAnError(t *testing.T) {
	deps := kfadmin.Deps{}
	for _, args := range [][]string{{"help"}, {"--help"}, {"account", "-h"}, {"session", "create", "-h"}} {
		out, _, err := kf(t, deps, args...)
		if err != nil || !strings.Contains(out, "kefu kf") {
			t.Errorf("%v: %v, stdout %q", args, err, out)
		}
	}
}

func TestOnlineAndWaiting(t *testing.T) {
	e := newEnv(t, false)
	deps := e.deps()

	if out := mustKf(t, deps, "waiting"); out != "no customer is waiting\n" {
		t.Errorf("empty queue: %q", out)
	}
	// 101 customers queue while nobody is online: WeChat lists 100.
	for i := range 101 {
		if err := e.fake.TransferToQueue(fmt.Sprintf("o%03d", i), ""); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Second)
	}
	out := mustKf(t, deps, "waiting")
	if !strings.HasPrefix(out, "101 customers waiting; WeChat lists only the 100 who have waited longest\n") {
		t.Errorf("waiting table does not note count > listed:\n%.300s", out)
	}
	if row := tableRow(out, "o000"); row != "o000 any agent 2025-03-01T09:00:00Z 1m41s" {
		t.Errorf("first row (waited 101 s for any agent) missing:\n%.300s", out)
	}
	var w kfadmin.WaitingList
	decodeOne(t, mustKf(t, deps, "--json", "waiting"), &w)
	if w.Count != 101 || w.Listed != 100 || len(w.Cases) != 100 || w.Cases[0].OpenID != "o000" {
		t.Errorf("waiting --json: count %d listed %d cases %d", w.Count, w.Listed, len(w.Cases))
	}

	if out := mustKf(t, deps, "online"); out != "no agent is online\n" {
		t.Errorf("nobody online: %q", out)
	}
	e.agent("alice@test", wechattest.StatusBoth, 3) // takes three customers from the queue
	e.agent("bob@test", wechattest.StatusMobile, 0)
	out = mustKf(t, deps, "online")
	for _, want := range []string{"ACCOUNT", "alice@test", "pc+mobile", "bob@test", "mobile"} {
		if !strings.Contains(out, want) {
			t.Errorf("online table lacks %q:\n%s", want, out)
		}
	}
	var online kfadmin.OnlineList
	decodeOne(t, mustKf(t, deps, "online", "--json"), &online)
	got := map[string]kfadmin.OnlineAgent{}
	for _, a := range online.Online {
		got[a.KfAccount] = a
	}
	if a := got["alice@test"]; a.Status != 3 || a.AutoAccept != 3 || a.AcceptedCase != 3 {
		t.Errorf("alice: %+v", a)
	}
	if b := got["bob@test"]; b.Status != 2 || b.AcceptedCase != 0 {
		t.Errorf("bob: %+v", b)
	}
}

func TestSessionCommands(t *testing.T) {
	e := newEnv(t, false)
	deps := e.deps()
	e.agent("alice@test", wechattest.StatusPC, 0)
	e.customer("oCustomer")

	out := mustKf(t, deps, "session", "create", "--openid", "oCustomer", "--kf", "alice@test", "--text", "VIP")
	if out != "session created: oCustomer → alice@test\n" {
		t.Errorf("create printed %q", out)
	}
	var sent map[string]string
	json.Unmarshal(e.body("customservice/kfsession/create"), &sent)
	if sent["text"] != "VIP" {
		t.Errorf("kfsession/create body %v", sent)
	}
	e.clock.Advance(90 * time.Second)

	if out := mustKf(t, deps, "session", "get", "oCustomer"); out != "oCustomer is served by alice@test since 2025-03-01T09:00:00Z (1m30s)\n" {
		t.Errorf("session get printed %q", out)
	}
	var st kfadmin.SessionState
	decodeOne(t, mustKf(t, deps, "session", "get", "oCustomer", "--json"), &st)
	if st.KfAccount != "alice@test" || st.CreateTime != testStart.Unix() {
		t.Errorf("session get --json %+v", st)
	}
	out = mustKf(t, deps, "session", "list", "--kf", "alice@test")
	if !strings.HasPrefix(out, "OPENID") || tableRow(out, "oCustomer") != "oCustomer 2025-03-01T09:00:00Z 1m30s" {
		t.Errorf("session list table:\n%s", out)
	}
	var sl kfadmin.SessionList
	decodeOne(t, mustKf(t, deps, "session", "list", "--kf", "alice@test", "--json"), &sl)
	if len(sl.Sessions) != 1 || sl.Sessions[0].OpenID != "oCustomer" {
		t.Errorf("session list --json %+v", sl)
	}

	mustKf(t, deps, "session", "close", "--openid", "oCustomer", "--kf", "alice@test")
	if out := mustKf(t, deps, "session", "get", "oCustomer"); !strings.Contains(out, "not served") {
		t.Errorf("after close: %q", out)
	}
	if out := mustKf(t, deps, "session", "list", "--kf", "alice@test"); out != "alice@test serves no session\n" {
		t.Errorf("empty session list: %q", out)
	}
}

func TestSessionCreateForAGroup(t *testing.T) {
	e := newEnv(t, true)
	deps := e.deps()
	e.agent("alice@test", wechattest.StatusPC, 0)
	e.agent("bob@test", wechattest.StatusPC, 0)
	e.agent("carol@test", wechattest.StatusPC, 0)
	e.serve("alice@test", "o1", "o2")
	e.serve("bob@test", "o3")
	// carol is the least loaded but not in the group.
	mustKf(t, deps, "group", "create", "sales")
	mustKf(t, deps, "group", "add", "sales", "alice@test", "bob@test")
	e.customer("oNew")

	var outcome kfadmin.Outcome
	decodeOne(t, mustKf(t, deps, "session", "create", "--openid", "oNew", "--group", "sales", "--json"), &outcome)
	if outcome.KfAccount != "bob@test" || outcome.Group != "sales" || outcome.Picked == nil || outcome.Picked.AcceptedCase != 1 {
		t.Errorf("outcome %+v; want bob, who serves fewer", outcome)
	}
	if s, err := e.client.GetSession(context.Background(), "oNew"); err != nil || s.KfAccount != "bob@test" {
		t.Errorf("oNew is served by %q (%v)", s.KfAccount, err)
	}

	// Nobody of the group online: a failure naming the group, no create.
	if err := e.fake.AddAgent("dave@test", "dave"); err != nil { // offline
		t.Fatal(err)
	}
	mustKf(t, deps, "group", "create", "night")
	mustKf(t, deps, "group", "add", "night", "dave@test")
	creates := e.fake.CallCount(wechattest.MethodSessionCreate)
	e.customer("oLate")
	_, _, err := kf(t, deps, "session", "create", "--openid", "oLate", "--group", "night")
	if !errors.Is(err, kfadmin.ErrNobodyOnline) || errors.Is(err, kfadmin.ErrUsage) || !strings.Contains(err.Error(), "group night") {
		t.Errorf("nobody online: %v; want ErrNobodyOnline naming the group", err)
	}
	if e.fake.CallCount(wechattest.MethodSessionCreate) != creates {
		t.Error("kfsession/create was called although nobody was online")
	}
	if _, _, err := kf(t, deps, "session", "create", "--openid", "oLate", "--group", "ghost"); !errors.Is(err, kfadmin.ErrGroupNotFound) {
		t.Errorf("unknown group: %v", err)
	}
}

func TestGroupCommands(t *testing.T) {
	e := newEnv(t, true)
	deps := e.deps()
	if out := mustKf(t, deps, "group", "list"); out != "no groups\n" {
		t.Errorf("empty list: %q", out)
	}
	out := mustKf(t, deps, "group", "create", "billing", "--keywords", "退款，refund, invoice")
	if !strings.HasPrefix(out, "group billing created\n") || !strings.Contains(out, "退款,refund,invoice") {
		t.Errorf("create printed:\n%s", out)
	}
	mustKf(t, deps, "account", "add", "alice@test", "--nickname", "Alice")
	mustKf(t, deps, "account", "add", "bob@test", "--nickname", "Bob")
	mustKf(t, deps, "group", "add", "billing", "bob@test", "alice@test")
	var grp kfadmin.Group
	decodeOne(t, mustKf(t, deps, "group", "remove", "billing", "bob@test", "--json"), &grp)
	if grp.Name != "billing" || len(grp.Members) != 1 || grp.Members[0] != "alice@test" || len(grp.Keywords) != 3 {
		t.Errorf("after remove: %+v", grp)
	}
	decodeOne(t, mustKf(t, deps, "group", "keywords", "billing", "--keywords", "发票", "--json"), &grp)
	if len(grp.Keywords) != 1 || grp.Keywords[0] != "发票" {
		t.Errorf("after keywords: %+v", grp)
	}
	if _, _, err := kf(t, deps, "group", "create", "billing"); !errors.Is(err, kfadmin.ErrGroupExists) || errors.Is(err, kfadmin.ErrUsage) {
		t.Errorf("duplicate create: %v", err)
	}
	mustKf(t, deps, "group", "create", "tech")

	// --json anywhere on the line.
	for _, args := range [][]string{{"--json", "group", "list"}, {"group", "--json", "list"}, {"group", "list", "--json"}} {
		var list kfadmin.GroupList
		decodeOne(t, mustKf(t, deps, args...), &list)
		if len(list.Groups) != 2 || list.Groups[0].Name != "billing" || list.Groups[1].Name != "tech" {
			t.Errorf("%v: %+v", args, list)
		}
	}
	out = mustKf(t, deps, "group", "list")
	groupTable, memberTable, _ := strings.Cut(out, "\n\n") // the members' table follows
	if !strings.Contains(tableRow(memberTable, "alice@test"), "Alice") {
		t.Errorf("member table:\n%s", memberTable)
	}
	if lines := strings.Split(strings.TrimSpace(groupTable), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "GROUP") ||
		!strings.Contains(lines[1], "alice@test") {
		t.Errorf("group list table:\n%s", out)
	}
	if out := mustKf(t, deps, "group", "delete", "tech"); out != "group tech deleted\n" {
		t.Errorf("delete printed %q", out)
	}
	if _, _, err := kf(t, deps, "group", "delete", "tech"); !errors.Is(err, kfadmin.ErrGroupNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

func TestCommandsWithoutTheirBackend(t *testing.T) {
	noNATS := kfadmin.Deps{Client: newEnv(t, false).client}
	for _, args := range [][]string{{"group", "list"}, {"group", "create", "g"}, {"session", "create", "--openid", "o", "--group", "g"}} {
		_, _, err := kf(t, noNATS, args...)
		if !errors.Is(err, kfadmin.ErrNotConfigured) || errors.Is(err, kfadmin.ErrUsage) ||
			!strings.Contains(err.Error(), "KEFU_NATS_URL") || !strings.Contains(err.Error(), "KEFU_DATA_DIR") {
			t.Errorf("%v without NATS: %v", args, err)
		}
	}
	groups, _ := newGroups(t)
	noWeChat := kfadmin.Deps{Groups: groups}
	if _, _, err := kf(t, noWeChat, "account", "list"); !errors.Is(err, kfadmin.ErrNotConfigured) || !strings.Contains(err.Error(), "KEFU_WECHAT_APPID") {
		t.Errorf("account list without WeChat: %v", err)
	}
	// Groups alone need no WeChat.
	mustKf(t, noWeChat, "group", "create", "g")
}
