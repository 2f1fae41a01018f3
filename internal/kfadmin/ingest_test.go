package kfadmin_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/kfadmin"
	"github.com/kefu-io/kefu/internal/natstest/bustest"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
	"github.com/kefu-io/kefu/pkg/events"
	"github.com/kefu-io/kefu/services/ingest"
)

// A customer's keyword, through a real ingest, ends in a
// transfer_customer_service reply naming the group's least-loaded online
// agent, and the fake WeChat queues the customer for that agent.
func TestIngestTransfersToTheRoutedAgent(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, false)
	e.agent("alice@test", wechattest.StatusPC, 5)
	e.agent("bob@test", wechattest.StatusPC, 5)
	e.agent("carol@test", wechattest.StatusPC, 5)
	e.serve("alice@test", "o1", "o2")
	e.serve("bob@test", "o3")

	b, _ := bustest.Open(t, bustest.Streams(events.StreamWeChat))
	kv, err := b.KeyValue(ctx, bus.BucketGroups)
	if err != nil {
		t.Fatal(err)
	}
	groups := kfadmin.NewGroups(kv)
	if _, err := groups.Create(ctx, "billing", []string{"退款"}); err != nil {
		t.Fatal(err)
	}
	if _, err := groups.AddMembers(ctx, "billing", "alice@test", "bob@test"); err != nil {
		t.Fatal(err)
	}

	router, err := kfadmin.NewRouter(kfadmin.RouterConfig{Groups: groups, Agents: e.client, RefreshInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := router.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { router.Stop(context.Background()) })
	if err := router.Refresh(ctx); err != nil {
		t.Fatal(err)
	}

	svc, err := ingest.New(ingest.Config{AppID: testAppID, Token: testToken, Transfer: true},
		ingest.Deps{Publisher: b, Router: router, Now: e.clock.Now}) // the fake WeChat signs with its clock
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Routes(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	e.fake.SetCallbackURL(hs.URL + "/wechat/callback")

	d, err := e.fake.CustomerMessage(ctx, "oRefund", "你好，我要退款")
	if err != nil {
		t.Fatal(err)
	}
	if d.ReplyMsgType != "transfer_customer_service" || d.ReplyKfAccount != "bob@test" || d.ReplyError != "" {
		t.Fatalf("reply %q (type %q, TransInfo/KfAccount %q, error %q); want a transfer to bob, the least-loaded member",
			d.Reply, d.ReplyMsgType, d.ReplyKfAccount, d.ReplyError)
	}
	if s, err := e.client.GetSession(ctx, "oRefund"); err != nil || s.KfAccount != "bob@test" {
		t.Fatalf("WeChat gave oRefund to %q (%v), want bob", s.KfAccount, err)
	}

	d, err = e.fake.CustomerMessage(ctx, "oHello", "你好")
	if err != nil {
		t.Fatal(err)
	}
	if d.ReplyMsgType != "transfer_customer_service" || d.ReplyKfAccount != "" {
		t.Fatalf("no keyword: reply type %q to %q; want a transfer to any agent", d.ReplyMsgType, d.ReplyKfAccount)
	}
}
