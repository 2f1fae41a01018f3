package kfadmin_test

import (
	"errors"
	"testing"

	"github.com/kefu-io/kefu/internal/kfadmin"
	"github.com/kefu-io/kefu/internal/wechat"
)

func kfOnline(account string, accepted, autoAccept int) wechat.OnlineKf {
	return wechat.OnlineKf{KfAccount: account, Status: 1, AcceptedCase: accepted, AutoAccept: autoAccept}
}

func TestPickAgent(t *testing.T) {
	offline := kfOnline("zed@test", 0, 5)
	offline.Status = 0
	tests := []struct {
		name     string
		online   []wechat.OnlineKf
		members  []string
		sessions map[string]int
		want     string
	}{
		{"lowest accepted/auto_accept ratio wins, not the fewest sessions",
			[]wechat.OnlineKf{kfOnline("a@test", 3, 10), kfOnline("b@test", 1, 2)}, []string{"a@test", "b@test"}, nil, "a@test"},
		{"an idle agent beats a busy one",
			[]wechat.OnlineKf{kfOnline("a@test", 2, 5), kfOnline("b@test", 0, 5)}, []string{"a@test", "b@test"}, nil, "b@test"},
		{"auto_accept 0 counts as 1: idle is still ratio 0",
			[]wechat.OnlineKf{kfOnline("a@test", 1, 2), kfOnline("b@test", 0, 0)}, []string{"a@test", "b@test"}, nil, "b@test"},
		{"auto_accept 0 counts as 1: one session makes it full",
			[]wechat.OnlineKf{kfOnline("a@test", 1, 2), kfOnline("b@test", 1, 0)}, []string{"a@test", "b@test"}, nil, "a@test"},
		{"equal ratios go to the agent with fewer queued sessions",
			[]wechat.OnlineKf{kfOnline("a@test", 2, 4), kfOnline("b@test", 1, 2)}, []string{"a@test", "b@test"},
			map[string]int{"a@test": 3, "b@test": 1}, "b@test"},
		{"full ties go to the account name",
			[]wechat.OnlineKf{kfOnline("b@test", 1, 2), kfOnline("a@test", 1, 2)}, []string{"a@test", "b@test"}, nil, "a@test"},
		{"offline members are ignored",
			[]wechat.OnlineKf{offline, kfOnline("a@test", 4, 5)}, []string{"a@test", "zed@test"}, nil, "a@test"},
		{"agents outside the group are ignored, however idle",
			[]wechat.OnlineKf{kfOnline("idle@test", 0, 5), kfOnline("a@test", 4, 5)}, []string{"a@test"}, nil, "a@test"},
		{"accounts compare case-insensitively",
			[]wechat.OnlineKf{kfOnline("Alice@Test", 0, 5)}, []string{"alice@test"}, nil, "Alice@Test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kfadmin.PickAgent(tt.online, tt.members, func(kf string) int { return tt.sessions[kf] })
			if err != nil || got.KfAccount != tt.want {
				t.Fatalf("got %q, %v; want %q", got.KfAccount, err, tt.want)
			}
		})
	}
}

func TestPickAgentWithNobodyOnline(t *testing.T) {
	offline := kfOnline("a@test", 0, 5)
	offline.Status = 0
	tests := []struct {
		name    string
		online  []wechat.OnlineKf
		members []string
	}{
		{"nobody online at all", nil, []string{"a@test"}},
		{"the only member is offline", []wechat.OnlineKf{offline}, []string{"a@test"}},
		{"only non-members are online", []wechat.OnlineKf{kfOnline("b@test", 0, 5)}, []string{"a@test"}},
		{"a group without members", []wechat.OnlineKf{kfOnline("b@test", 0, 5)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := kfadmin.PickAgent(tt.online, tt.members, nil); !errors.Is(err, kfadmin.ErrNobodyOnline) {
				t.Fatalf("got %q, %v; want ErrNobodyOnline", got.KfAccount, err)
			}
		})
	}
}
