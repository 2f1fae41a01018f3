package wechat_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat"
)

// tokenBucket starts a JetStream server with the kefu_token bucket.
func tokenBucket(t *testing.T) (*server.Server, jetstream.KeyValue) {
	t.Helper()
	srv := natstest.Run(t, nil)
	_, js := natstest.Connect(t, srv)
	kv, err := js.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: bus.BucketToken})
	if err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return srv, kv
}

// processKV opens the bucket over a connection of its own, as another
// replica would.
func processKV(t *testing.T, srv *server.Server) jetstream.KeyValue {
	t.Helper()
	_, js := natstest.Connect(t, srv)
	kv, err := js.KeyValue(context.Background(), bus.BucketToken)
	if err != nil {
		t.Fatalf("open bucket: %v", err)
	}
	return kv
}

func newKVSource(t *testing.T, kv jetstream.KeyValue, appID string, f wechat.TokenFetcher, clock *fakeClock) *wechat.KVTokenSource {
	t.Helper()
	src, err := wechat.NewKVTokenSource(kv, f, wechat.TokenOptions{AppID: appID, Now: clock.Now, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestKVTokenSourceContract(t *testing.T) {
	srv, _ := tokenBucket(t)
	var n atomic.Int32
	testTokenSourceContract(t, func(t *testing.T, f wechat.TokenFetcher, clock *fakeClock) wechat.TokenSource {
		// A fresh key per case; the bucket and server are shared.
		return newKVSource(t, processKV(t, srv), fmt.Sprintf("wxcontract%d", n.Add(1)), f, clock)
	})
}

func TestKVTokenSourceManyProcessesStartingTogetherFetchOnce(t *testing.T) {
	srv, _ := tokenBucket(t)
	clock := newFakeClock()
	f := &countingFetcher{delay: 50 * time.Millisecond}
	const processes = 20
	sources := make([]*wechat.KVTokenSource, processes)
	for i := range sources {
		sources[i] = newKVSource(t, processKV(t, srv), "wxapp", f, clock)
	}
	start := make(chan struct{})
	tokens := make([]string, processes)
	errs := make([]error, processes)
	var wg sync.WaitGroup
	for i, src := range sources {
		wg.Go(func() {
			<-start
			tokens[i], errs[i] = src.Token(context.Background())
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d: %v", i, err)
		}
		if tokens[i] != "tok-1" {
			t.Fatalf("process %d got %q, want tok-1", i, tokens[i])
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
}

// revokingFetcher hands out the stable token (sticky) and tells the API
// server that a newly forced token is the only valid one, as WeChat does on
// a forced refresh.
type revokingFetcher struct {
	countingFetcher
	valid *atomic.Value // string
}

func (f *revokingFetcher) FetchToken(ctx context.Context, force bool) (wechat.FetchedToken, error) {
	tok, err := f.countingFetcher.FetchToken(ctx, force)
	if err == nil && (force || f.valid.Load().(string) == "") {
		f.valid.Store(tok.AccessToken)
	}
	return tok, err
}

func TestKVTokenSourceTokenRevokedMidRunIsRefreshedOnce(t *testing.T) {
	natsSrv, _ := tokenBucket(t)
	clock := newFakeClock()
	var valid atomic.Value
	valid.Store("")
	api := newAPIServer(t, func(_ int, req apiRequest) apiReply {
		if tok := req.Query.Get("access_token"); tok == "" || tok != valid.Load().(string) {
			return replyBadToken
		}
		return apiReply{body: `{"count":0}`}
	})
	f := &revokingFetcher{valid: &valid, countingFetcher: countingFetcher{sticky: true, delay: 20 * time.Millisecond}}
	const processes = 20
	clients := make([]*wechat.Client, processes)
	for i := range clients {
		clients[i] = newTestClient(t, api, newKVSource(t, processKV(t, natsSrv), "wxapp", f, clock), &sleepRecorder{})
	}
	runAll := func() {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, processes)
		for i, c := range clients {
			wg.Go(func() { _, errs[i] = c.GetWaitCase(context.Background()) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("process %d: %v", i, err)
			}
		}
	}
	runAll()
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("fetches after start = %d, want 1", n)
	}

	clock.Advance(time.Minute)
	// WeChat no longer accepts tok-1 but stable_token still hands it out:
	// only a forced refresh helps, and twenty processes force once.
	valid.Store("revoked-elsewhere")
	runAll()
	if n := f.calls.Load(); n != 3 {
		t.Fatalf("fetches after revocation = %d, want 3 (one read, one forced refresh)", n)
	}
	if got := f.forcedFlags(); fmt.Sprint(got) != "[false false true]" {
		t.Fatalf("force_refresh flags = %v, want [false false true]", got)
	}
}

func TestKVTokenSourceSharesARefreshBeforeExpiry(t *testing.T) {
	srv, _ := tokenBucket(t)
	clock := newFakeClock()
	f := &countingFetcher{}
	a := newKVSource(t, processKV(t, srv), "wxapp", f, clock)
	b := newKVSource(t, processKV(t, srv), "wxapp", f, clock)
	if tok := mustToken(t, a); tok != "tok-1" {
		t.Fatalf("a: %s", tok)
	}
	if tok := mustToken(t, b); tok != "tok-1" {
		t.Fatalf("b read %s, want the shared tok-1", tok)
	}
	clock.Advance(2*time.Hour - 4*time.Minute) // inside the margin, still valid
	if tok := mustToken(t, b); tok != "tok-2" {
		t.Fatalf("b: %s, want the refreshed tok-2", tok)
	}
	if tok := mustToken(t, a); tok != "tok-2" {
		t.Fatalf("a: %s, want b's tok-2", tok)
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
}

func TestKVTokenSourceLeaseHeldByAnotherProcess(t *testing.T) {
	srv, kv := tokenBucket(t)
	clock := newFakeClock()
	f := &countingFetcher{}
	src := newKVSource(t, processKV(t, srv), "wxapp", f, clock)
	mustToken(t, src) // tok-1, expires in 2 h

	clock.Advance(2*time.Hour - 4*time.Minute)
	// Another process takes the refresh lease for an hour, then hangs.
	lease, _ := json.Marshal(map[string]any{"owner": "other", "expires_at": clock.Now().Add(time.Hour)})
	if _, err := kv.Put(context.Background(), "wxapp.lease", lease); err != nil {
		t.Fatal(err)
	}
	if tok := mustToken(t, src); tok != "tok-1" {
		t.Fatalf("inside the margin with a refresh under way: %s, want the old tok-1", tok)
	}

	clock.Advance(10 * time.Minute) // tok-1 expired, lease still held
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := src.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want to wait for the lease holder until the deadline", err)
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("fetched %d times while another process held the lease", n)
	}

	clock.Advance(time.Hour) // the holder's lease expired: it crashed
	if tok := mustToken(t, src); tok != "tok-2" {
		t.Fatalf("after the lease expired: %s, want a new tok-2", tok)
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
	if _, err := kv.Get(context.Background(), "wxapp.lease"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("lease not released after the refresh: %v", err)
	}
}

func TestNewKVTokenSourceNeedsAppID(t *testing.T) {
	_, kv := tokenBucket(t)
	if _, err := wechat.NewKVTokenSource(kv, &countingFetcher{}, wechat.TokenOptions{}); err == nil {
		t.Fatal("want an error naming AppID")
	}
}
