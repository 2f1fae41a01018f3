package notifier

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/wechat"
)

func TestLinkTokens(t *testing.T) {
	now := t0
	signer := &linkSigner{key: []byte("0123456789abcdef"), ttl: time.Hour, now: func() time.Time { return now }}
	token := signer.Token("o-customer-1")
	payload, sig, _ := strings.Cut(token, ".")
	forged, _ := base64.RawURLEncoding.DecodeString(payload)
	otherPayload := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(forged), "o-customer-1", "o-customer-2", 1)))
	otherKey := &linkSigner{key: []byte("fedcba9876543210"), ttl: time.Hour, now: signer.now}

	tests := []struct {
		name    string
		token   string
		at      time.Time
		want    string
		wantErr error
	}{
		{"a fresh token gives its openid", token, t0, "o-customer-1", nil},
		{"a token is valid until its expiry", token, t0.Add(time.Hour), "o-customer-1", nil},
		{"after the expiry it is expired", token, t0.Add(time.Hour + time.Second), "", ErrExpiredToken},
		{"another openid under the old signature is refused", otherPayload + "." + sig, t0, "", ErrBadToken},
		{"a token signed with another key is refused", otherKey.Token("o-customer-1"), t0, "", ErrBadToken},
		{"a token without signature is refused", payload, t0, "", ErrBadToken},
		{"garbage is refused", "%%%.###", t0, "", ErrBadToken},
		{"an oversized token is refused", strings.Repeat("a", 2000) + "." + sig, t0, "", ErrBadToken},
		{"a forged expired token is bad, not expired", otherPayload + "." + sig, t0.Add(2 * time.Hour), "", ErrBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = tt.at
			got, err := signer.Verify(tt.token)
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify = %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	if strings.ContainsAny(token, "+/=?&#") {
		t.Errorf("token %q is not URL-safe", token)
	}
}

func TestLinkKeyDerivation(t *testing.T) {
	derived := linkKey(Config{WeChatSecret: "wechat-secret"})
	if string(derived) == "wechat-secret" || len(derived) != 32 {
		t.Errorf("the WeChat secret must not be used as the key itself")
	}
	if string(linkKey(Config{WeChatSecret: "other"})) == string(derived) {
		t.Error("different secrets give the same key")
	}
	if got := linkKey(Config{FeedbackLinkSecret: "explicit-secret-123", WeChatSecret: "wechat-secret"}); string(got) != "explicit-secret-123" {
		t.Error("an explicit link secret must win")
	}
}

func TestClassify(t *testing.T) {
	dial := &url.Error{Op: "Post", URL: "https://api.weixin.qq.com", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}
	reset := &url.Error{Op: "Post", URL: "https://api.weixin.qq.com", Err: &net.OpError{Op: "read", Err: errors.New("connection reset")}}
	api := func(code int) error {
		return fmt.Errorf("send: %w", &wechat.APIError{Method: "custom_send", ErrCode: code})
	}
	tests := []struct {
		name string
		err  error
		want verdict
	}{
		{"no error is sent", nil, verdictSent},
		{"45015 outside the 48 hours is refused", api(45015), verdictRefused},
		{"45047 over the reply limit is refused", api(45047), verdictRefused},
		{"65400 kf codes are refused", api(65400), verdictRefused},
		{"-1 system busy is retried", api(-1), verdictRetry},
		{"a token error is retried", api(40001), verdictRetry},
		{"a quota code is retried later", api(45011), verdictRetry},
		{"a refused connection is retried: nothing was sent", dial, verdictRetry},
		{"a reset connection leaves the outcome unknown", reset, verdictUnknown},
		{"a timeout leaves the outcome unknown", context.DeadlineExceeded, verdictUnknown},
		{"a gateway 502 leaves the outcome unknown", &wechat.HTTPStatusError{Method: "custom_send", StatusCode: 502}, verdictUnknown},
		{"a gateway 429 sent nothing", &wechat.HTTPStatusError{Method: "custom_send", StatusCode: 429}, verdictRetry},
		{"an invalid request is refused", wechat.ErrInvalidRequest, verdictRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify = %v, want %v", got, tt.want)
			}
		})
	}
}

type kfListStub struct {
	mu    sync.Mutex
	list  []wechat.KfInfo
	err   error
	calls int
}

func (k *kfListStub) SendText(context.Context, string, string, string) error { return nil }

func (k *kfListStub) GetKfList(context.Context) ([]wechat.KfInfo, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	return k.list, k.err
}

func TestNicknames(t *testing.T) {
	now := t0
	stub := &kfListStub{list: []wechat.KfInfo{{KfAccount: "wang@gh", KfNick: "小王"}}}
	names := newNicknames(stub, 10*time.Minute, func() time.Time { return now }, zap.NewNop())
	ctx := context.Background()

	if got := names.Lookup(ctx, "wang@gh"); got != "小王" || stub.calls != 1 {
		t.Fatalf("first lookup %q after %d fetches", got, stub.calls)
	}
	names.Lookup(ctx, "wang@gh")
	if stub.calls != 1 {
		t.Errorf("a fresh list must be served from the cache, fetched %d times", stub.calls)
	}
	if got := names.Lookup(ctx, "li@gh"); got != "li@gh" {
		t.Errorf("an unknown agent reads as its account, got %q", got)
	}
	if stub.calls != 1 {
		t.Errorf("an unknown account right after a fetch must not fetch again (%d)", stub.calls)
	}
	stub.list = append(stub.list, wechat.KfInfo{KfAccount: "li@gh", KfNick: "小李"})
	now = now.Add(2 * time.Minute)
	if got := names.Lookup(ctx, "li@gh"); got != "小李" || stub.calls != 2 {
		t.Errorf("a new agent is found by an early refresh: %q after %d fetches", got, stub.calls)
	}
	stub.err = errors.New("getkflist down")
	now = now.Add(11 * time.Minute)
	if got := names.Lookup(ctx, "wang@gh"); got != "小王" {
		t.Errorf("a failed refresh keeps the old list, got %q", got)
	}
	calls := stub.calls
	for range 5 {
		names.Lookup(ctx, "wang@gh")
	}
	if stub.calls != calls {
		t.Errorf("failures must not turn every lookup into a fetch: %d more", stub.calls-calls)
	}
}

// blockingKfList holds getkflist until released.
type blockingKfList struct {
	kfListStub
	release chan struct{}
}

func (b *blockingKfList) GetKfList(ctx context.Context) ([]wechat.KfInfo, error) {
	<-b.release
	return b.kfListStub.GetKfList(ctx)
}

func TestNicknamesCallersDuringTheFirstFetchWaitForIt(t *testing.T) {
	stub := &blockingKfList{kfListStub: kfListStub{list: []wechat.KfInfo{{KfAccount: "wang@gh", KfNick: "小王"}}}, release: make(chan struct{})}
	names := newNicknames(stub, 10*time.Minute, time.Now, zap.NewNop())
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = names.Lookup(context.Background(), "wang@gh")
		}()
	}
	time.Sleep(20 * time.Millisecond) // let them all arrive during the fetch
	close(stub.release)
	wg.Wait()
	for i, g := range got {
		if g != "小王" {
			t.Errorf("caller %d got %q", i, g)
		}
	}
	if stub.calls != 1 {
		t.Errorf("%d fetches, want 1", stub.calls)
	}
}
