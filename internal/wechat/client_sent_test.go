package wechat_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kefu-io/kefu/internal/bus"
	"github.com/kefu-io/kefu/internal/natstest"
	"github.com/kefu-io/kefu/internal/wechat"
	"github.com/kefu-io/kefu/internal/wechat/wechattest"
)

// tlsFake serves the fake over TLS, reached through NetFaults, as the real
// API is reached over HTTPS.
func tlsFake(t *testing.T) (*wechattest.Server, string, *wechattest.NetFaults, *http.Client) {
	t.Helper()
	fake, err := wechattest.New(wechattest.Config{AppID: fakeAppID, AppSecret: fakeSecret, Token: "tok", IgnoreTransferReplies: true, HistoryLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewTLSServer(fake)
	t.Cleanup(func() { hs.Close(); fake.Close() })
	nf := &wechattest.NetFaults{}
	hc := &http.Client{Timeout: 300 * time.Millisecond, Transport: nf.Transport(hs.Client().Transport.(*http.Transport))}
	return fake, hs.URL, nf, hc
}

// Each failure is classified by whether the message could have reached
// WeChat, and the fake's record of sent messages agrees.
func TestClientSaysWhetherARequestCouldHaveReachedWeChat(t *testing.T) {
	const openid = "o-sent-1"
	cases := []struct {
		name string
		// inject breaks the next send; the client makes no in-call retry
		// (MaxRetries -1), so the first failure is what the caller sees.
		inject      func(fake *wechattest.Server, nf *wechattest.NetFaults)
		wantVerdict wechat.Verdict
		wantReason  string // for VerdictUnknown
		wantSent    int    // messages the fake carried out
	}{
		{"dial refused", func(_ *wechattest.Server, nf *wechattest.NetFaults) { nf.FailDials(1) }, wechat.VerdictRetry, "", 0},
		{"connect timeout", func(_ *wechattest.Server, nf *wechattest.NetFaults) { nf.StallDials(1) }, wechat.VerdictRetry, "", 0},
		{"TLS handshake failure", func(_ *wechattest.Server, nf *wechattest.NetFaults) { nf.FailHandshakes(1) }, wechat.VerdictRetry, "", 0},
		{"HTTP 429", func(f *wechattest.Server, _ *wechattest.NetFaults) {
			f.InjectFault(wechattest.MethodCustomSend, wechattest.FaultTooManyRequests, 1)
		}, wechat.VerdictRetry, "", 0},
		{"-1 system busy", func(f *wechattest.Server, _ *wechattest.NetFaults) {
			f.InjectErrors(wechattest.MethodCustomSend, wechattest.CodeSystemBusy, 1)
		}, wechat.VerdictRetry, "", 0},
		{"token fetch timeout", func(f *wechattest.Server, _ *wechattest.NetFaults) {
			f.ExpireTokens()
			f.InjectFault(wechattest.MethodStableToken, wechattest.FaultHangAfterHandling, 1)
		}, wechat.VerdictRetry, "", 0},
		{"45015 outside the window", func(f *wechattest.Server, _ *wechattest.NetFaults) {
			f.InjectErrors(wechattest.MethodCustomSend, wechattest.CodeReplyTimeLimit, 1)
		}, wechat.VerdictRefused, "", 0},
		{"timeout after the request was written", func(f *wechattest.Server, _ *wechattest.NetFaults) {
			f.InjectFault(wechattest.MethodCustomSend, wechattest.FaultHangAfterHandling, 1)
		}, wechat.VerdictUnknown, wechat.UnknownTimeout, 1},
		{"connection dropped after the request was written", func(f *wechattest.Server, _ *wechattest.NetFaults) {
			f.InjectFault(wechattest.MethodCustomSend, wechattest.FaultResetAfterHandling, 1)
		}, wechat.VerdictUnknown, wechat.UnknownConnection, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake, base, nf, hc := tlsFake(t)
			reg := prometheus.NewRegistry()
			metrics := wechat.NewMetrics(reg)
			tokens, err := wechat.NewMemoryTokenSource(&wechat.StableTokenFetcher{BaseURL: base, AppID: fakeAppID, Secret: fakeSecret, HTTPClient: hc}, wechat.TokenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			c, err := wechat.NewClient(wechat.ClientConfig{BaseURL: base, Tokens: tokens, HTTPClient: hc, MaxRetries: -1, Metrics: metrics})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := fake.CustomerMessage(ctx, openid, "hi"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.GetOnlineKfList(ctx); err != nil { // a token, a warm connection
				t.Fatal(err)
			}
			hc.Transport.(*http.Transport).CloseIdleConnections() // the next send dials
			tc.inject(fake, nf)
			err = c.SendText(ctx, openid, "您好", "")
			if got := wechat.Classify(err); got != tc.wantVerdict {
				t.Fatalf("Classify(%v) = %v, want %v", err, got, tc.wantVerdict)
			}
			if got := wechat.NotSent(err); got != (tc.wantVerdict == wechat.VerdictRetry) {
				t.Fatalf("NotSent = %v", got)
			}
			if n := len(fake.Sent()); n != tc.wantSent {
				t.Fatalf("the fake carried out %d messages, want %d", n, tc.wantSent)
			}
			unknown := unknownOutcomes(t, reg, tc.wantReason)
			if tc.wantVerdict == wechat.VerdictUnknown {
				if got := wechat.UnknownReason(err); got != tc.wantReason {
					t.Fatalf("UnknownReason = %q, want %q", got, tc.wantReason)
				}
				if unknown != 1 {
					t.Fatalf("kefu_wechat_api_unknown_outcome_total{reason=%q} = %v, want 1", tc.wantReason, unknown)
				}
			}
			// What certainly did not reach WeChat succeeds when repeated.
			if tc.wantVerdict == wechat.VerdictRetry {
				if err := c.SendText(ctx, openid, "您好", ""); err != nil {
					t.Fatalf("repeat: %v", err)
				}
				if n := len(fake.Sent()); n != 1 {
					t.Fatalf("after the repeat the fake carried out %d messages, want 1", n)
				}
			}
		})
	}
}

// unknownOutcomes reads kefu_wechat_api_unknown_outcome_total for
// custom_send and reason ("" reads "other", which must stay 0).
func unknownOutcomes(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	if reason == "" {
		reason = wechat.UnknownOther
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range families {
		if f.GetName() != "kefu_wechat_api_unknown_outcome_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == "custom_send" && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
			found = true
		}
	}
	if !found {
		t.Fatal("kefu_wechat_api_unknown_outcome_total is not exported")
	}
	return 0
}

// A limiter wait that cannot end before the deadline, and a context that
// ends before the request is written, send nothing.
func TestClientLimiterAndContextFailuresAreNotSent(t *testing.T) {
	fake, base, _, hc := tlsFake(t)
	tokens, err := wechat.NewMemoryTokenSource(&wechat.StableTokenFetcher{BaseURL: base, AppID: fakeAppID, Secret: fakeSecret, HTTPClient: hc}, wechat.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := wechat.NewClient(wechat.ClientConfig{BaseURL: base, Tokens: tokens, HTTPClient: hc, MaxRetries: -1, RateLimit: 0.01, RateBurst: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := fake.CustomerMessage(ctx, "o-1", "hi"); err != nil {
		t.Fatal(err)
	}
	if err := c.SendText(ctx, "o-1", "first", ""); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err = c.SendText(tctx, "o-1", "second", "")
	if !wechat.NotSent(err) || wechat.Classify(err) != wechat.VerdictRetry {
		t.Fatalf("limiter deadline: %v, want not sent", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	c2, err := wechat.NewClient(wechat.ClientConfig{BaseURL: base, Tokens: tokens, HTTPClient: hc, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.SendText(cctx, "o-1", "third", ""); !wechat.NotSent(err) {
		t.Fatalf("cancelled before sending: %v, want not sent", err)
	}
	if n := len(fake.Sent()); n != 1 {
		t.Fatalf("the fake carried out %d messages, want 1", n)
	}
}

// The 40001 race: another system force-refreshes the stable token right
// after kefu fetched it. kefu reads the current token without forcing and
// the call succeeds; the other system's token keeps working.
func TestTokenRevokedByAnotherSystemIsReplacedWithoutForcing(t *testing.T) {
	clock := wechattest.NewFakeClock(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
	fake, err := wechattest.New(wechattest.Config{AppID: fakeAppID, AppSecret: fakeSecret, Token: "tok", IgnoreTransferReplies: true, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(fake)
	t.Cleanup(func() { hs.Close(); fake.Close() })
	base := hs.URL
	srv := natstest.Run(t, nil)
	_, js := natstest.Connect(t, srv)
	kv, err := js.CreateOrUpdateKeyValue(context.Background(), jetstreamKV(bus.BucketToken))
	if err != nil {
		t.Fatal(err)
	}
	src, err := wechat.NewKVTokenSource(kv, &wechat.StableTokenFetcher{BaseURL: base, AppID: fakeAppID, Secret: fakeSecret}, wechat.TokenOptions{AppID: fakeAppID, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	c := fakeClient(t, base, src)
	ctx := context.Background()
	if err := fake.AddAgent("a1@test", "one"); err != nil {
		t.Fatal(err)
	}
	if err := fake.SetAgentStatus("a1@test", wechattest.StatusPC); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetOnlineKfList(ctx); err != nil {
		t.Fatal(err)
	}
	theirs, err := fake.ForceRefreshByOtherSystem()
	if err != nil {
		t.Fatal(err)
	}
	online, err := c.GetOnlineKfList(ctx) // what `kefu kf online` calls
	if err != nil || len(online) != 1 {
		t.Fatalf("kf online after another system's forced refresh: %v %v", online, err)
	}
	if n := fake.ForceRefreshRequests(); n != 0 {
		t.Fatalf("kefu asked for %d forced refreshes, want 0", n)
	}
	if fake.StableToken() != theirs {
		t.Fatal("the other system's token was replaced")
	}

	// WeChat rejects the token stable_token still hands out: one forced
	// refresh (WeChat's 30 s after the other system's have passed), then
	// none for 30 s whatever the callers do.
	clock.Advance(31 * time.Second)
	fake.InjectErrors(wechattest.MethodKFOnlineList, wechattest.CodeInvalidCredential, 1)
	if _, err := c.GetOnlineKfList(ctx); err != nil {
		t.Fatalf("after one forced refresh: %v", err)
	}
	if n := fake.ForceRefreshRequests(); n != 1 {
		t.Fatalf("forced refreshes = %d, want 1", n)
	}
	fake.InjectErrors(wechattest.MethodKFOnlineList, wechattest.CodeInvalidCredential, 1)
	_, err = c.GetOnlineKfList(ctx)
	if !errors.Is(err, wechat.ErrForceRefreshLimited) || !wechat.NotSent(err) {
		t.Fatalf("a second rejection within 30 s: %v, want ErrForceRefreshLimited, not sent", err)
	}
	if n := fake.ForceRefreshRequests(); n != 1 {
		t.Fatalf("forced refreshes = %d, want still 1", n)
	}
	// Another replica shares the budget through the bucket.
	src2, err := wechat.NewKVTokenSource(kv, &wechat.StableTokenFetcher{BaseURL: base, AppID: fakeAppID, Secret: fakeSecret}, wechat.TokenOptions{AppID: fakeAppID, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	c2 := fakeClient(t, base, src2)
	fake.InjectErrors(wechattest.MethodKFOnlineList, wechattest.CodeInvalidCredential, 1)
	if _, err := c2.GetOnlineKfList(ctx); !errors.Is(err, wechat.ErrForceRefreshLimited) {
		t.Fatalf("another replica within 30 s: %v, want ErrForceRefreshLimited", err)
	}
	if n := fake.ForceRefreshRequests(); n != 1 {
		t.Fatalf("forced refreshes = %d, want still 1", n)
	}
}
