package kfadmin_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/httpedge"
	"github.com/kefu-io/kefu/internal/kfadmin"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

// newDesk is an env with a small desk: alice (PC, serving one customer)
// and bob (mobile) online, carol offline, two customers waiting and two
// who just wrote. Two
// desks built alike hold the same state, the groups' clock included.
func newDesk(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, true)
	kfadmin.SetGroupsClock(e.groups, e.clock.Now)
	e.agent("alice@test", wechattest.StatusPC, 3)
	e.agent("bob@test", wechattest.StatusMobile, 2)
	if err := e.fake.AddAgent("carol@test", "carol"); err != nil {
		t.Fatal(err)
	}
	e.serve("alice@test", "oServed1")
	e.clock.Advance(time.Minute)
	for _, q := range [][2]string{{"oWait1", ""}, {"oWait2", "bob@test"}} {
		if err := e.fake.TransferToQueue(q[0], q[1]); err != nil {
			t.Fatal(err)
		}
	}
	e.customer("oNew1")
	e.customer("oNew2")
	e.clock.Advance(30 * time.Second)
	return e
}

// remoteDeps serves e's admin API over real HTTP and returns Deps that
// reach e only through it: no WeChat client, no groups store.
func remoteDeps(t *testing.T, e *env) kfadmin.Deps {
	t.Helper()
	api := newAPI(t, e.deps())
	r, err := kfadmin.NewRemote(kfadmin.RemoteConfig{Server: api.base, Token: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	return kfadmin.Deps{Remote: r, Now: e.clock.Now}
}

// commandPath is the command of the table that args run ("" for none).
func commandPath(args []string) (path string, json bool) {
	var words []string
	for _, a := range args {
		if a == "--json" {
			json = true
			continue
		}
		words = append(words, a)
	}
	for _, p := range kfadmin.CommandPaths() {
		pw := strings.Fields(p)
		if len(words) >= len(pw) && slices.Equal(words[:len(pw)], pw) {
			return p, json
		}
	}
	return "", json
}

// withoutRID drops the request id WeChat appends to errmsg, different on
// every call.
func withoutRID(s string) string { return ridRE.ReplaceAllString(s, "rid: -") }

var ridRE = regexp.MustCompile(`rid: [0-9a-f-]+`)

// Every command of the table prints the same through the admin API as
// directly, with and without --json, failures included: the same script
// runs against two desks built alike, one directly, one with --server.
// A command the script does not run, both ways, fails the test.
func TestRemoteModeMatchesDirectMode(t *testing.T) {
	avatar := filepath.Join(t.TempDir(), "dave.jpg")
	if err := os.WriteFile(avatar, append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, 256)...), 0o600); err != nil {
		t.Fatal(err)
	}
	script := [][]string{
		{"account", "list"},
		{"account", "list", "--json"},
		{"account", "add", "dave@test", "--nickname", "Dave", "--password", "pw"},
		{"account", "add", "erin@test", "--nickname", "Erin", "--json"},
		{"account", "add", "dave@test", "--nickname", "Dave"}, // WeChat refuses: exists
		{"account", "update", "dave@test", "--nickname", "Dave Li"},
		{"account", "update", "erin@test", "--nickname", "Erin Wu", "--password", "pw2", "--json"},
		{"account", "invite", "dave@test", "wxid_dave"},
		{"account", "invite", "erin@test", "wxid_erin", "--json"},
		{"account", "invite", "dave@test", "wxid_other"}, // one waits already
		{"account", "avatar", "dave@test", avatar},
		{"account", "avatar", "erin@test", avatar, "--json"},
		{"account", "list"},
		{"online"},
		{"--json", "online"},
		{"waiting"},
		{"waiting", "--json"},
		{"session", "get", "oServed1"},
		{"session", "get", "oWait1", "--json"},
		{"session", "get", "oNobody"}, // WeChat: invalid openid
		{"session", "list", "--kf", "alice@test"},
		{"session", "list", "--kf", "bob@test", "--json"},
		{"group", "list"},
		{"group", "create", "sales", "--keywords", "买,price"},
		{"group", "create", "night", "--json"},
		{"group", "create", "sales"}, // exists
		{"group", "add", "sales", "alice@test", "bob@test", "dave@test"},
		{"group", "add", "night", "carol@test", "--json"},
		{"group", "add", "sales", "ghost@test"}, // not a kf account
		{"group", "list"},
		{"group", "list", "--json"},
		{"group", "keywords", "sales", "--keywords", "退款，refund"},
		{"group", "keywords", "night", "--keywords", "", "--json"},
		{"session", "create", "--openid", "oNew1", "--group", "sales", "--text", "VIP"},
		{"session", "create", "--openid", "oNew2", "--kf", "bob@test", "--json"},
		{"session", "create", "--openid", "oServed1", "--group", "night"}, // nobody online
		{"session", "create", "--openid", "oServed1", "--group", "ghost"}, // no such group
		{"session", "close", "--openid", "oServed1", "--kf", "alice@test", "--text", "bye"},
		{"session", "close", "--openid", "oNew2", "--kf", "bob@test", "--json"},
		{"session", "close", "--openid", "oServed1", "--kf", "alice@test"}, // closed already
		{"group", "remove", "sales", "alice@test", "bob@test"},
		{"group", "remove", "night", "nobody@test", "--json"},
		{"account", "delete", "dave@test"},
		{"account", "delete", "carol@test", "--json"},
		{"account", "delete", "ghost@test"}, // WeChat: invalid account
		{"group", "delete", "sales"},
		{"group", "delete", "night", "--json"},
		{"group", "delete", "night"}, // gone
		{"group", "list"},
	}
	ran := map[string]map[bool]bool{}
	for _, args := range script {
		if path, json := commandPath(args); path != "" {
			if ran[path] == nil {
				ran[path] = map[bool]bool{}
			}
			ran[path][json] = true
		}
	}
	for _, p := range kfadmin.CommandPaths() {
		if !ran[p][false] || !ran[p][true] {
			t.Errorf("kf %s is not run by the script both with and without --json", p)
		}
	}

	direct, viaAPI := newDesk(t), newDesk(t)
	remote := remoteDeps(t, viaAPI)
	failures := 0
	for _, args := range script {
		wantOut, _, wantErr := kf(t, direct.deps(), args...)
		gotOut, gotStderr, gotErr := kf(t, remote, args...)
		line := strings.Join(args, " ")
		if gotOut != wantOut {
			t.Errorf("kf %s:\n--server printed\n%s\ndirectly\n%s", line, gotOut, wantOut)
		}
		if gotStderr != "" {
			t.Errorf("kf %s --server wrote to stderr: %q", line, gotStderr)
		}
		switch {
		case (gotErr == nil) != (wantErr == nil):
			t.Errorf("kf %s: --server %v, directly %v", line, gotErr, wantErr)
		case wantErr != nil:
			failures++
			if withoutRID(gotErr.Error()) != withoutRID(wantErr.Error()) || errors.Is(gotErr, kfadmin.ErrUsage) != errors.Is(wantErr, kfadmin.ErrUsage) {
				t.Errorf("kf %s fails differently:\n--server %v\ndirectly %v", line, gotErr, wantErr)
			}
		}
	}
	if failures != 10 {
		t.Errorf("%d commands of the script failed; the script expects 10 refusals", failures)
	}
	if n := viaAPI.fake.CallCount(wechattest.MethodKFAdd); n != 3 {
		t.Errorf("kfaccount/add reached the fake %d times through the API; want 3", n)
	}
}

// A kefu behind a proxy under a path prefix is reached with that prefix in
// --server, with or without a trailing '/'; an openid or account with
// characters special in a path stays one path segment.
func TestRemoteUnderAPathPrefix(t *testing.T) {
	e := newEnv(t, true)
	e.agent("alice@test", wechattest.StatusPC, 1)
	e.serve("alice@test", "o/with?odd#chars")
	mux := http.NewServeMux()
	mux.Handle("/kefu/", http.StripPrefix("/kefu", kfadmin.NewHTTPHandler(httpedge.NewTokens(adminToken, ""), e.deps(), nil)))
	hs := httptest.NewServer(mux)
	defer hs.Close()
	for _, server := range []string{hs.URL + "/kefu", hs.URL + "/kefu/"} {
		r, err := kfadmin.NewRemote(kfadmin.RemoteConfig{Server: server, Token: adminToken})
		if err != nil {
			t.Fatal(err)
		}
		deps := kfadmin.Deps{Remote: r, Now: e.clock.Now}
		if out := mustKf(t, deps, "session", "get", "o/with?odd#chars"); !strings.HasPrefix(out, "o/with?odd#chars is served by alice@test") {
			t.Errorf("%s: session get printed %q", server, out)
		}
	}
}
