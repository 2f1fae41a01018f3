package wechat_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

const fakeAppID, fakeSecret = "wxclientfaketest01", "fake-secret"

func newFake(t testing.TB) (*wechattest.Server, string) {
	t.Helper()
	fake, err := wechattest.New(wechattest.Config{AppID: fakeAppID, AppSecret: fakeSecret, Token: "tok", IgnoreTransferReplies: true, HistoryLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(fake)
	t.Cleanup(func() { hs.Close(); fake.Close() })
	return fake, hs.URL
}

func fakeClient(t testing.TB, base string, tokens wechat.TokenSource) *wechat.Client {
	t.Helper()
	if tokens == nil {
		mem, err := wechat.NewMemoryTokenSource(&wechat.StableTokenFetcher{BaseURL: base, AppID: fakeAppID, Secret: fakeSecret}, wechat.TokenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tokens = mem
	}
	c, err := wechat.NewClient(wechat.ClientConfig{BaseURL: base, AppID: fakeAppID, Secret: fakeSecret, Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The client against the stateful fake: every endpoint of WeChat's 多客服 API documentation, end to end.
func TestClientAgainstTheFakeWeChat(t *testing.T) {
	fake, base := newFake(t)
	c := fakeClient(t, base, nil)
	ctx := context.Background()
	if err := c.AddKfAccount(ctx, wechat.KfAccountInput{KfAccount: "test1@test", Nickname: "客服1", Password: "pass"}); err != nil {
		t.Fatal(err)
	}
	if err := c.AddKfAccount(ctx, wechat.KfAccountInput{KfAccount: "test1@test", Nickname: "客服1"}); !wechat.IsPermanent(err) {
		t.Fatalf("adding an existing account: %v, want a permanent error", err)
	}
	if err := c.UpdateKfAccount(ctx, wechat.KfAccountInput{KfAccount: "test1@test", Nickname: "小王"}); err != nil {
		t.Fatal(err)
	}
	list, err := c.GetKfList(ctx)
	if err != nil || len(list) != 1 || list[0].KfNick != "小王" {
		t.Fatalf("kf list %+v %v", list, err)
	}
	fake.SetAgentStatus("test1@test", wechattest.StatusPC)
	fake.SetAutoAccept("test1@test", 1)
	online, err := c.GetOnlineKfList(ctx)
	if err != nil || len(online) != 1 || online[0].AutoAccept != 1 {
		t.Fatalf("online %+v %v", online, err)
	}
	if _, err := fake.CustomerMessage(ctx, "o-1", "人工客服"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateSession(ctx, "test1@test", "o-1", "VIP"); err != nil {
		t.Fatal(err)
	}
	fake.TransferToQueue("o-2", "")
	wait, err := c.GetWaitCase(ctx)
	if err != nil || wait.Count != 1 || wait.Cases[0].OpenID != "o-2" {
		t.Fatalf("waitcase %+v %v", wait, err)
	}
	sess, err := c.GetSession(ctx, "o-1")
	if err != nil || sess.KfAccount != "test1@test" {
		t.Fatalf("getsession %+v %v", sess, err)
	}
	items, err := c.GetSessionList(ctx, "test1@test")
	if err != nil || len(items) != 1 {
		t.Fatalf("sessionlist %+v %v", items, err)
	}
	if err := c.SendText(ctx, "o-1", "您好", "test1@test"); err != nil {
		t.Fatal(err)
	}
	var apiErr *wechat.APIError
	if err := c.CloseSession(ctx, "test1@test", "o-2", ""); !errors.As(err, &apiErr) {
		t.Fatalf("closing a waiting case: %v, want an API error", err)
	}
	if err := c.CloseSession(ctx, "test1@test", "o-1", "bye"); err != nil {
		t.Fatal(err)
	}
	// The freed slot took the waiting customer.
	if sess, err := c.GetSession(ctx, "o-2"); err != nil || sess.KfAccount != "test1@test" {
		t.Fatalf("waiting customer not assigned: %+v %v", sess, err)
	}
	if err := c.DeleteKfAccount(ctx, "test1@test"); err != nil {
		t.Fatal(err)
	}
}

// N processes sharing the kefu_token bucket fetch one token, and a token
// revoked mid-run is refreshed once while every call succeeds.
func TestConcurrentClientsShareOneTokenFromTheFake(t *testing.T) {
	fake, base := newFake(t)
	srv := natstest.Run(t, nil)
	const n = 10
	// WeChat allows one forced refresh per 30 s, so the sources do not
	// force-refresh a token younger than that: let them see time pass.
	var clockMu sync.Mutex
	now := time.Now()
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	clients := make([]*wechat.Client, n)
	for i := range clients {
		_, js := natstest.Connect(t, srv)
		kv, err := js.CreateOrUpdateKeyValue(context.Background(), jetstreamKV(bus.BucketToken))
		if err != nil {
			t.Fatal(err)
		}
		src, err := wechat.NewKVTokenSource(kv, &wechat.StableTokenFetcher{BaseURL: base, AppID: fakeAppID, Secret: fakeSecret}, wechat.TokenOptions{AppID: fakeAppID, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = fakeClient(t, base, src)
	}
	run := func() {
		var wg sync.WaitGroup
		for i, c := range clients {
			wg.Add(1)
			go func(i int, c *wechat.Client) {
				defer wg.Done()
				if _, err := c.GetOnlineKfList(context.Background()); err != nil {
					t.Errorf("client %d: %v", i, err)
				}
			}(i, c)
		}
		wg.Wait()
	}
	run()
	if got := fake.TokenFetches(); got != 1 {
		t.Fatalf("%d clients fetched %d tokens, want 1", n, got)
	}
	clockMu.Lock()
	now = now.Add(time.Minute)
	clockMu.Unlock()
	fake.InvalidateTokens()
	run()
	if got := fake.TokenFetches(); got != 2 {
		t.Fatalf("after invalidation: %d fetches in all, want 2", got)
	}
}

// BenchmarkClientAgainstFake measures calls/s of the real client against
// the fake WeChat (HTTP on loopback, token cached).
func BenchmarkClientAgainstFake(b *testing.B) {
	for _, method := range []string{"getonlinekflist", "custom_send"} {
		b.Run(method, func(b *testing.B) {
			fake, base := newFake(b)
			for i := 0; i < 5; i++ {
				fake.AddAgent(fmt.Sprintf("a%d@test", i), "agent")
				fake.SetAgentStatus(fmt.Sprintf("a%d@test", i), wechattest.StatusPC)
			}
			c := fakeClient(b, base, nil)
			ctx := context.Background()
			var mu sync.Mutex
			n := 0
			b.RunParallel(func(pb *testing.PB) {
				mu.Lock()
				n++
				openid := fmt.Sprintf("o-bench-%d", n)
				mu.Unlock()
				fake.CustomerMessage(ctx, openid, "hi")
				for pb.Next() {
					var err error
					if method == "custom_send" {
						err = c.SendText(ctx, openid, "您好", "")
						if wechat.IsPermanent(err) { // 45047 after 20 messages: the customer writes again
							fake.CustomerMessage(ctx, openid, "hi")
							err = nil
						}
					} else {
						_, err = c.GetOnlineKfList(ctx)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}

func jetstreamKV(bucket string) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: bucket}
}

// GetCallbackIP reads the fake's list; token errors and an empty list are
// errors, so a caller keeps the list it has.
func TestGetCallbackIPAgainstTheFake(t *testing.T) {
	fake, base := newFake(t)
	c := fakeClient(t, base, nil)
	ctx := context.Background()
	got, err := c.GetCallbackIP(ctx)
	if err != nil || len(got) != len(wechattest.DefaultCallbackIPs) {
		t.Fatalf("GetCallbackIP = %v, %v", got, err)
	}
	if err := fake.SetCallbackIPs([]string{"101.226.103.0/25", "203.0.113.7"}); err != nil {
		t.Fatal(err)
	}
	got, err = c.GetCallbackIP(ctx)
	if err != nil || fmt.Sprint(got) != "[101.226.103.0/25 203.0.113.7]" {
		t.Fatalf("after an update: %v, %v", got, err)
	}
	fake.InjectErrors(wechattest.MethodCallbackIP, wechattest.CodeInvalidCredential, 2)
	if _, err := c.GetCallbackIP(ctx); !wechat.IsTokenError(err) {
		t.Fatalf("a token error after the refresh must be returned: %v", err)
	}
	if err := fake.SetCallbackIPs(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetCallbackIP(ctx); !errors.Is(err, wechat.ErrMalformedResponse) {
		t.Fatalf("an empty list must be an error, not a lock-out: %v", err)
	}
}
