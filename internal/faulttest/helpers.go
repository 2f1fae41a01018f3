package faulttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

// fakeWeChat starts a fake WeChat with the scenario's agents over HTTP.
func fakeWeChat() (*wechattest.Server, *httptest.Server, error) {
	fake, err := wechattest.New(wechattest.Config{
		AppID: appID, AppSecret: appSecret, Token: token, EncodingAESKey: aesKey,
		Mode: wechat.ModeSafe, HistoryLimit: 1 << 20,
	})
	if err != nil {
		return nil, nil, err
	}
	for i, a := range agents {
		if err := fake.AddAgent(a, []string{"小李", "小王", "小张"}[i%3]); err != nil {
			fake.Close()
			return nil, nil, fmt.Errorf("add agent %s: %w", a, err)
		}
	}
	return fake, httptest.NewServer(fake), nil
}

// runPrefix is a fresh openid prefix, so that a scenario counts only its
// own customers in the shared streams and stores.
func runPrefix(tag string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "o" + tag + hex.EncodeToString(b) + "_"
}

// waitUntil polls cond every interval until it returns true, the wait
// passes timeout without cond's note changing (no progress), or ctx ends.
func waitUntil(ctx context.Context, timeout, interval time.Duration, cond func() (bool, string)) (string, error) {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, note := cond()
		if ok {
			return note, nil
		}
		if note != last {
			last = note
			deadline = time.Now().Add(timeout)
		}
		if time.Now().After(deadline) {
			return note, fmt.Errorf("no progress for %s: %s", timeout, note)
		}
		select {
		case <-ctx.Done():
			return note, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
