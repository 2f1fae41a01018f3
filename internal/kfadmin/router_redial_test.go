package kfadmin_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/kfadmin"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/nats-io/nats.go"
)

// When the server closes kefu's connection for good, the bus dials a new
// one; the router's group watcher must follow it, or keyword routing would
// keep the groups of before the redial for ever. (The watcher ends with the
// old connection and the router starts a new one on the bucket handle,
// which follows the bus to its new connection.)
func TestRouterFollowsTheGroupsAfterTheBusRedialled(t *testing.T) {
	ctx := context.Background()
	b, _ := bustest.Open(t)
	kv, err := b.KeyValue(ctx, bus.BucketGroups)
	if err != nil {
		t.Fatal(err)
	}
	groups := kfadmin.NewGroups(kv)
	agents := &stubAgents{online: nil}
	agents.online = append(agents.online, kfOnline("alice@test", 0, 5))
	r, err := kfadmin.NewRouter(kfadmin.RouterConfig{Groups: groups, Agents: agents, RefreshInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(context.Background()) })
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}

	var redialled atomic.Bool
	b.OnRedial(func() { redialled.Store(true) })
	// Over the server's 4 KB control line: it drops the connection for good.
	if err := b.PublishCore(&nats.Msg{Subject: strings.Repeat("x", 5000)}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool { return redialled.Load() && b.Ready(ctx) == nil }, "the bus dialled a new connection")

	if _, err := groups.Create(ctx, "billing", []string{"退款"}); err != nil {
		t.Fatal(err)
	}
	if _, err := groups.AddMembers(ctx, "billing", "alice@test"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool {
		return r.Route(ctx, "o-1", "我要退款") == "alice@test"
	}, "the group created after the redial routes")
}
