package kfadmin_test

import (
	"context"
	"slices"
	"testing"

	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

// DELETE /api/kf/groups/{name}/members?account=…&account=… takes several
// members out in one write of the group, as `kefu kf group remove` does
// directly; the accounts are checked like the single-member path's.
func TestAdminAPIRemovesSeveralMembersInOneChange(t *testing.T) {
	e := newEnv(t, true)
	api := newAPI(t, e.deps())
	for _, a := range []string{"a@test", "b@test", "c@test"} {
		e.agent(a, wechattest.StatusOffline, 0)
	}
	if status, body := api.do("POST", "/api/kf/groups", map[string]any{"name": "g", "members": []string{"a@test", "b@test", "c@test"}}); status != 201 {
		t.Fatalf("create: %d %v", status, body)
	}
	revision := func() uint64 {
		entry, err := e.kv.Get(context.Background(), "g")
		if err != nil {
			t.Fatal(err)
		}
		return entry.Revision()
	}
	before := revision()
	status, body := api.do("DELETE", "/api/kf/groups/g/members?account=a@test&account=c@test&account=nobody@test", nil)
	members, _ := body["members"].([]any)
	if status != 200 || !slices.Equal(members, []any{"b@test"}) {
		t.Fatalf("remove a and c: %d %v", status, body)
	}
	if after := revision(); after != before+1 {
		t.Errorf("the group was written %d times; want once", after-before)
	}
	for _, tt := range []struct {
		name, path string
		status     int
	}{
		{"no account", "/api/kf/groups/g/members", 400},
		{"a malformed account", "/api/kf/groups/g/members?account=bob", 400},
		{"no such group", "/api/kf/groups/ghost/members?account=a@test", 404},
	} {
		if status, _ := api.do("DELETE", tt.path, nil); status != tt.status {
			t.Errorf("%s: %d; want %d", tt.name, status, tt.status)
		}
	}
	if got := revision(); got != before+1 {
		t.Errorf("a refused removal wrote the group")
	}
}
