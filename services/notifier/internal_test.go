package notifier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat"
)

// The notifier's expectations of wechat.Classify, the verdict it acts on.
func TestClassify(t *testing.T) {
	dial := &url.Error{Op: "Post", URL: "https://api.weixin.qq.com", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}
	reset := &url.Error{Op: "Post", URL: "https://api.weixin.qq.com", Err: &net.OpError{Op: "read", Err: errors.New("connection reset")}}
	api := func(code int) error {
		return fmt.Errorf("send: %w", &wechat.APIError{Method: "custom_send", ErrCode: code})
	}
	tests := []struct {
		name string
		err  error
		want wechat.Verdict
	}{
		{"no error is sent", nil, wechat.VerdictDone},
		{"45015 outside the 48 hours is refused", api(45015), wechat.VerdictRefused},
		{"45047 over the reply limit is refused", api(45047), wechat.VerdictRefused},
		{"65400 kf codes are refused", api(65400), wechat.VerdictRefused},
		{"-1 system busy is retried", api(-1), wechat.VerdictRetry},
		{"a token error is retried", api(40001), wechat.VerdictRetry},
		{"a quota code is retried later", api(45011), wechat.VerdictRetry},
		{"a refused connection is retried: nothing was sent", dial, wechat.VerdictRetry},
		{"a reset connection leaves the outcome unknown", reset, wechat.VerdictUnknown},
		{"a timeout leaves the outcome unknown", context.DeadlineExceeded, wechat.VerdictUnknown},
		{"a gateway 502 leaves the outcome unknown", &wechat.HTTPStatusError{Method: "custom_send", StatusCode: 502}, wechat.VerdictUnknown},
		{"a gateway 429 sent nothing", &wechat.HTTPStatusError{Method: "custom_send", StatusCode: 429}, wechat.VerdictRetry},
		{"an invalid request is refused", wechat.ErrInvalidRequest, wechat.VerdictRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wechat.Classify(tt.err); got != tt.want {
				t.Errorf("Classify = %v, want %v", got, tt.want)
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
	// A caller reads the clock when it looks at the cache: the one that
	// fetches twice (before and after taking the fetch), each other once
	// before it waits. The fetch is held until all of them have looked.
	var looked atomic.Int32
	now := func() time.Time { looked.Add(1); return time.Now() }
	names := newNicknames(stub, 10*time.Minute, now, zap.NewNop())
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = names.Lookup(context.Background(), "wang@gh")
		}()
	}
	natstest.Eventually(t, 10*time.Second, func() bool { return looked.Load() >= int32(len(got)+1) },
		"all %d callers at the empty cache during the fetch", len(got))
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
